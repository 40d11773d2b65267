import Foundation
import TopiaryCore

/// Errors reading or writing safetensors files. Each names the file.
public enum SafetensorsError: Error, LocalizedError, Equatable {
    case notFound(path: String)
    case truncated(path: String, detail: String)
    case badHeader(path: String, detail: String)
    case unsupportedType(path: String, tensor: String, dtype: String)
    case missingTensor(path: String, name: String)

    public var errorDescription: String? {
        switch self {
        case let .notFound(path): return "\(path): no such file"
        case let .truncated(path, d): return "\(path): truncated file (\(d))"
        case let .badHeader(path, d): return "\(path): invalid safetensors header (\(d))"
        case let .unsupportedType(path, t, dtype):
            return "\(path): tensor '\(t)' has unsupported dtype \(dtype) (supported: F32, F16, BF16)"
        case let .missingTensor(path, name): return "\(path): missing tensor '\(name)'"
        }
    }
}

/// The safetensors format: 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets}}`, then the raw little-endian data.
public enum Safetensors {
    /// Writes fp32 tensors (in the given order) atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for (name, t) in tensors {
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + t.count * 4]]
            offset += t.count * 4
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (json.count + 8) % 8 != 0 { json.append(0x20) }  // pad with spaces to align the data
        try AtomicFile.write(to: path) { handle in
            var length = UInt64(json.count).littleEndian
            try handle.write(contentsOf: Data(bytes: &length, count: 8))
            try handle.write(contentsOf: json)
            for (_, t) in tensors {
                try handle.write(contentsOf: Data(bytesNoCopy: t.pointer, count: t.count * 4, deallocator: .none))
            }
        }
    }

    /// Reads every tensor as fp32 (F16/BF16 are widened).
    public static func read(path: String) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard let data = readWholeFile(path) else { throw SafetensorsError.notFound(path: path) }
        guard data.count >= 8 else { throw SafetensorsError.truncated(path: path, detail: "\(data.count) bytes, no header length") }
        let n = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n <= UInt64(data.count - 8), n <= 100_000_000 else {
            throw SafetensorsError.truncated(path: path, detail: "header of \(n) bytes but the file has \(data.count)")
        }
        let headerData = data.subdata(in: 8..<(8 + Int(n)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw SafetensorsError.badHeader(path: path, detail: "not a JSON object")
        }
        let base = 8 + Int(n)
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" { metadata = value as? [String: String] ?? [:]; continue }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2,
                shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[1] >= offsets[0]
            else { throw SafetensorsError.badHeader(path: path, detail: "entry '\(name)' lacks dtype, shape or data_offsets") }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let r = acc.0.multipliedReportingOverflow(by: d)
                return (r.partialValue, acc.1 || r.overflow)
            }
            guard !overflow, shape.count <= 8, count <= data.count else {
                throw SafetensorsError.badHeader(path: path, detail: "'\(name)' has shape \(shape), more elements than the file can hold")
            }
            let width: Int
            switch dtype {
            case "F32": width = 4
            case "F16", "BF16": width = 2
            default: throw SafetensorsError.unsupportedType(path: path, tensor: name, dtype: dtype)
            }
            guard offsets[1] - offsets[0] == count * width else {
                throw SafetensorsError.badHeader(path: path, detail: "'\(name)' has \(offsets[1] - offsets[0]) bytes for shape \(shape)")
            }
            guard offsets[1] <= data.count - base else {
                throw SafetensorsError.truncated(path: path, detail: "tensor '\(name)' ends at byte \(base + offsets[1]) of \(data.count)")
            }
            let t = Tensor(uninitialized: shape)
            data.withUnsafeBytes { raw in
                let src = raw.baseAddress! + base + offsets[0]
                switch dtype {
                case "F32":
                    memcpy(t.pointer, src, count * 4)
                case "F16":
                    for i in 0..<count { t[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                default:
                    for i in 0..<count {
                        t[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
                    }
                }
            }
            tensors[name] = t
        }
        return (tensors, metadata)
    }
}
