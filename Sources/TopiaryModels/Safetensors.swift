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
        let file = try SafetensorsFile(path: path)
        var tensors: [String: Tensor] = [:]
        for name in file.names { tensors[name] = try file.tensor(named: name) }
        return (tensors, file.metadata)
    }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsEntry: Sendable, Equatable {
    public enum DType: String, Sendable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16"
        var width: Int { self == .f32 ? 4 : 2 }
    }
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range of the data, relative to the start of the data section.
    public let start: Int
    public let end: Int
    public var count: Int { shape.reduce(1, *) }
}

/// A safetensors file mapped into memory: the header is read and checked when it is opened (every entry's dtype,
/// shape and byte range, ranges inside the file and not overlapping), and each tensor is converted to fp32 only when it
/// is asked for, after which its pages leave resident memory. Reading a model tensor by tensor so never holds more than
/// the fp32 result and one tensor's source bytes.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let metadata: [String: String]
    /// Tensor names in the order of their data.
    public let names: [String]
    private let entries: [String: SafetensorsEntry]
    private let file: MappedFile
    private let dataStart: Int

    /// The largest header the reader accepts (a header lists names, shapes and offsets: a few MB at most).
    public static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        self.path = path
        do { file = try MappedFile(path: path) } catch MappedFile.MapError.notFound {
            throw SafetensorsError.notFound(path: path)
        }
        let size = file.size
        guard size >= 8 else { throw SafetensorsError.truncated(path: path, detail: "\(size) bytes, no header length") }
        let n = file.bytes(offset: 0, count: 8).loadUnaligned(as: UInt64.self).littleEndian
        guard n <= UInt64(size - 8), n <= UInt64(Self.maxHeaderBytes) else {
            throw SafetensorsError.truncated(path: path, detail: "header of \(n) bytes but the file has \(size)")
        }
        let headerData = Data(file.bytes(offset: 8, count: Int(n)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw SafetensorsError.badHeader(path: path, detail: "not a JSON object")
        }
        dataStart = 8 + Int(n)
        let dataBytes = size - dataStart
        var entries: [String: SafetensorsEntry] = [:]
        var meta: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" { meta = value as? [String: String] ?? [:]; continue }
            guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
                let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2,
                shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[1] >= offsets[0]
            else { throw SafetensorsError.badHeader(path: path, detail: "entry '\(name)' lacks dtype, shape or data_offsets") }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let r = acc.0.multipliedReportingOverflow(by: d)
                return (r.partialValue, acc.1 || r.overflow)
            }
            guard !overflow, shape.count <= 8, count <= size else {
                throw SafetensorsError.badHeader(path: path, detail: "'\(name)' has shape \(shape), more elements than the file can hold")
            }
            guard let dtype = SafetensorsEntry.DType(rawValue: dtypeName) else {
                throw SafetensorsError.unsupportedType(path: path, tensor: name, dtype: dtypeName)
            }
            guard offsets[1] - offsets[0] == count * dtype.width else {
                throw SafetensorsError.badHeader(
                    path: path,
                    detail: "'\(name)' has data_offsets \(offsets) (\(offsets[1] - offsets[0]) bytes) for shape \(shape) of \(dtypeName), "
                        + "which needs \(count * dtype.width)")
            }
            guard offsets[1] <= dataBytes else {
                throw SafetensorsError.truncated(
                    path: path,
                    detail: "tensor '\(name)' ends at byte \(dataStart + offsets[1]) of \(size) (its data_offsets are \(offsets))")
            }
            entries[name] = SafetensorsEntry(name: name, dtype: dtype, shape: shape, start: offsets[0], end: offsets[1])
        }
        let ordered = entries.values.sorted { ($0.start, $0.end, $0.name) < ($1.start, $1.end, $1.name) }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.start < a.end && b.end > b.start {
            throw SafetensorsError.badHeader(
                path: path, detail: "the data of '\(a.name)' (bytes \(a.start)..<\(a.end)) and '\(b.name)' (from \(b.start)) overlap")
        }
        self.entries = entries
        names = ordered.map(\.name)
        metadata = meta
    }

    public func entry(named name: String) -> SafetensorsEntry? { entries[name] }

    /// The tensor as fp32 (F16 and BF16 widened exactly). The source is converted in chunks whose mapped pages are released
    /// as soon as they are read, so that even the largest tensor (an embedding) never has its source and its fp32 copy
    /// resident at once.
    public func tensor(named name: String) throws -> Tensor {
        guard let e = entries[name] else { throw SafetensorsError.missingTensor(path: path, name: name) }
        let count = e.count, width = e.dtype.width
        let t = Tensor(uninitialized: e.shape)
        let raw = file.bytes(offset: dataStart + e.start, count: e.end - e.start)
        if count > 0, let src = raw.baseAddress {
            let chunk = 1 << 22
            for first in stride(from: 0, to: count, by: chunk) {
                let n = min(chunk, count - first)
                let from = src + first * width, to = t.pointer + first
                switch e.dtype {
                case .f32:
                    memcpy(to, from, n * 4)
                case .f16:
                    for i in 0..<n { to[i] = Float(Float16(bitPattern: from.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                case .bf16:
                    for i in 0..<n { to[i] = Float(bitPattern: UInt32(from.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
                }
                file.releasePages(offset: dataStart + e.start + first * width, count: n * width)
            }
        }
        file.releasePages(offset: dataStart + e.start, count: e.end - e.start)
        return t
    }
}
