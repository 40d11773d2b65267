import CTopiaryKernels
import Foundation
import TopiaryCore

/// Writes GGUF v3 files: metadata of any type and tensors given as raw block bytes or fp32 (quantized
/// on the way out). The file goes to a temporary name and is renamed when complete.
public struct GGUFWriter {
    public var metadata: [(String, GGUFValue)] = []
    public var tensors: [(name: String, dimensions: [Int], type: GGMLType, data: Data)] = []
    public var alignment = 32

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.0 == key }) { metadata[i].1 = value } else { metadata.append((key, value)) }
    }

    /// Adds a tensor whose bytes are already in `type`'s block layout. `dimensions` in ggml order.
    public mutating func addTensor(name: String, dimensions: [Int], type: GGMLType, data: Data) {
        tensors.append((name, dimensions, type, data))
    }

    /// Adds an fp32 tensor (row-major `shape`), converted to `type` (F32, F16, Q8_0, Q4_0 or Q4_1).
    public mutating func addTensor(name: String, tensor: Tensor, type: GGMLType = .f32) throws {
        let n = tensor.count
        guard let cols = tensor.shape.last, cols % type.blockSize == 0 else {
            throw GGUFError.invalidTensorInfo(path: "(writer)", tensor: name, detail: "row length \(tensor.shape.last ?? 0) is not a multiple of \(type.blockSize) for \(type)")
        }
        var data = Data(count: n / type.blockSize * type.bytesPerBlock)
        let ok = data.withUnsafeMutableBytes { tq_quantize(type.rawValue, tensor.pointer, $0.baseAddress!, n) }
        guard ok == 0 else {
            throw GGUFError.unsupportedTensorType(path: "(writer)", tensor: name, type: "\(type) (writing)")
        }
        tensors.append((name, tensor.shape.reversed(), type, data))
    }

    /// The complete file as bytes.
    public func encoded() -> Data {
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
        if alignment != 32, !md.contains(where: { $0.0 == "general.alignment" }) { md.append(("general.alignment", .uint32(UInt32(alignment)))) }
        u64(UInt64(md.count))
        for (k, v) in md { str(k); u32(v.typeCode); value(v) }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        for (t, o) in zip(tensors, offsets) {
            str(t.name)
            u32(UInt32(t.dimensions.count))
            t.dimensions.forEach { u64(UInt64($0)) }
            u32(t.type.rawValue)
            u64(UInt64(o))
        }
        while out.count % alignment != 0 { out.append(0) }
        for t in tensors {
            out.append(t.data)
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }

    /// Writes the file atomically.
    public func write(to path: String) throws { try AtomicFile.write(encoded(), to: path) }
}
