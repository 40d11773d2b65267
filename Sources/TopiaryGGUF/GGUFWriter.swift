import CTopiaryKernels
import Foundation
import TopiaryCore

/// Writes GGUF v3 files: metadata of any type and tensors given as raw block bytes, as fp32 (quantized
/// on the way out), or as a producer called only while the file is written (so a large model is
/// streamed tensor by tensor instead of held in memory twice). The file goes to a temporary name
/// and is renamed when complete.
public struct GGUFWriter {
    /// One tensor of the file: its table entry and where its bytes come from.
    public struct PendingTensor {
        public let name: String
        /// Dimensions in ggml order (`ne[0]` first).
        public let dimensions: [Int]
        public let type: GGMLType
        public let byteCount: Int
        let bytes: () throws -> Data
    }

    public var metadata: [(String, GGUFValue)] = []
    public private(set) var tensors: [PendingTensor] = []
    public var alignment = 32

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.0 == key }) { metadata[i].1 = value } else { metadata.append((key, value)) }
    }

    /// Bytes that a tensor of `dimensions` (ggml order) takes in `type`, or nil when its rows do not
    /// hold whole blocks.
    public static func byteCount(dimensions: [Int], type: GGMLType) -> Int? {
        guard let ne0 = dimensions.first, dimensions.allSatisfy({ $0 >= 1 }), ne0 % type.blockSize == 0 else { return nil }
        return dimensions.reduce(1, *) / type.blockSize * type.bytesPerBlock
    }

    /// Adds a tensor whose bytes are already in `type`'s block layout. `dimensions` in ggml order.
    public mutating func addTensor(name: String, dimensions: [Int], type: GGMLType, data: Data) {
        tensors.append(PendingTensor(name: name, dimensions: dimensions, type: type, byteCount: data.count, bytes: { data }))
    }

    /// Adds a tensor whose bytes (in `type`'s block layout) are produced when the file is written.
    public mutating func addTensor(name: String, dimensions: [Int], type: GGMLType, producer: @escaping () throws -> Data) throws {
        guard let bytes = Self.byteCount(dimensions: dimensions, type: type) else {
            throw GGUFError.invalidTensorInfo(
                path: "(writer)", tensor: name,
                detail: "shape \(dimensions) does not hold whole \(type) blocks of \(type.blockSize)")
        }
        tensors.append(PendingTensor(name: name, dimensions: dimensions, type: type, byteCount: bytes, bytes: producer))
    }

    /// Adds an fp32 tensor (row-major `shape`), converted to `type` (a type ``encode(_:as:name:)`` writes).
    public mutating func addTensor(name: String, tensor: Tensor, type: GGMLType = .f32) throws {
        let data = try Self.encode(tensor, as: type, name: name)
        tensors.append(PendingTensor(name: name, dimensions: tensor.shape.reversed(), type: type, byteCount: data.count, bytes: { data }))
    }

    /// Types ``encode(_:as:name:)`` writes.
    public static let writableTypes: Set<GGMLType> = [.f32, .f16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// The bytes of an fp32 tensor (row-major) in `type` (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or
    /// Q6_K), rows quantized along the last axis (ggml's `ne[0]`), groups of rows side by side on the BLAS threads.
    public static func encode(_ tensor: Tensor, as type: GGMLType, name: String = "(tensor)") throws -> Data {
        let n = tensor.count
        guard let cols = tensor.shape.last, cols % type.blockSize == 0 else {
            throw GGUFError.invalidTensorInfo(
                path: "(writer)", tensor: name,
                detail: "row length \(tensor.shape.last ?? 0) is not a multiple of \(type.blockSize) for \(type)")
        }
        guard writableTypes.contains(type) else {
            throw GGUFError.unsupportedTensorType(path: "(writer)", tensor: name, type: "\(type) (writing)")
        }
        let rows = cols > 0 ? n / cols : 0, rowBytes = cols / type.blockSize * type.bytesPerBlock
        var data = Data(count: rows * rowBytes)
        guard !data.isEmpty else { return data }
        data.withUnsafeMutableBytes { raw in
            let out = Unchecked(raw.baseAddress!)
            withExtendedLifetime(tensor) {
                // The K-quants search their scales (~100 operations a weight): split rows over the threads.
                Parallel.ranges(rows, minimum: max(1, (1 << 16) / max(cols, 1))) { range, _ in
                    _ = tq_quantize(
                        type.rawValue, tensor.pointer + range.lowerBound * cols, out.value + range.lowerBound * rowBytes,
                        range.count * cols)
                }
            }
        }
        return data
    }

    /// Everything before the tensor data: header, metadata, tensor table, padding.
    public func header() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { let b = Array(s.utf8); u64(UInt64(b.count)); out.append(contentsOf: b) }
        func value(_ v: GGUFValue) {
            switch v {
            case let .uint8(x): out.append(x)
            case let .int8(x): out.append(UInt8(bitPattern: x))
            case let .uint16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .int16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .uint32(x): u32(x)
            case let .int32(x): u32(UInt32(bitPattern: x))
            case let .float32(x): u32(x.bitPattern)
            case let .bool(b): out.append(b ? 1 : 0)
            case let .string(s): str(s)
            case let .array(items):
                u32(items.first?.typeCode ?? 4)
                u64(UInt64(items.count))
                items.forEach(value)
            case let .uint64(x): u64(x)
            case let .int64(x): u64(UInt64(bitPattern: x))
            case let .float64(x): u64(x.bitPattern)
            }
        }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        var md = metadata
        if alignment != 32, !md.contains(where: { $0.0 == "general.alignment" }) {
            md.append(("general.alignment", .uint32(UInt32(alignment))))
        }
        u64(UInt64(md.count))
        for (k, v) in md { str(k); u32(v.typeCode); value(v) }
        var offset = 0
        for t in tensors {
            str(t.name)
            u32(UInt32(t.dimensions.count))
            t.dimensions.forEach { u64(UInt64($0)) }
            u32(t.type.rawValue)
            u64(UInt64(offset))
            offset += padded(t.byteCount)
        }
        while out.count % alignment != 0 { out.append(0) }
        return out
    }

    private func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Size of the complete file in bytes.
    public var fileSize: Int { header().count + tensors.reduce(0) { $0 + padded($1.byteCount) } }

    /// The complete file as bytes.
    public func encoded() throws -> Data {
        var out = header()
        for t in tensors {
            let data = try t.bytes()
            guard data.count == t.byteCount else { throw sizeMismatch(t, data.count) }
            out.append(data)
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }

    private func sizeMismatch(_ t: PendingTensor, _ found: Int) -> GGUFError {
        .invalidTensorInfo(path: "(writer)", tensor: t.name, detail: "produced \(found) bytes, expected \(t.byteCount)")
    }

    /// Writes the file atomically (temporary file, then rename), one tensor in memory at a time.
    public func write(to path: String) throws {
        let head = header()
        try AtomicFile.write(to: path) { handle in
            try handle.write(contentsOf: head)
            for t in tensors {
                let data = try t.bytes()
                guard data.count == t.byteCount else { throw sizeMismatch(t, data.count) }
                try handle.write(contentsOf: data)
                let pad = padded(data.count) - data.count
                if pad > 0 { try handle.write(contentsOf: Data(count: pad)) }
            }
        }
    }
}
