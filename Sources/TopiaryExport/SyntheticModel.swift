import CTopiaryKernels
import Foundation
import TopiaryCore
import TopiaryGGUF

/// A model with the shapes of a GGUF header and random weights: what memory and time a model would take in
/// Topiary before (or without) downloading its weights. Only the header is read (the first part of a split
/// download is enough); the metadata (tokenizer included) and tensor table are kept, the data is new.
public enum SyntheticModel {
    /// The storage type a synthetic tensor gets for a source type: 4–5-bit types become Q4_0 (4.5 bits per weight,
    /// as Q4_K), 6–8-bit types Q8_0, F16/F32 stay.
    public static func storageType(for source: GGMLType) -> GGMLType {
        switch source {
        case .f32: return .f32
        case .f16, .bf16: return .f16
        case .q6_K, .q8_0, .q8_K, .q8_1: return .q8_0
        default: return .q4_0
        }
    }

    /// Writes the synthetic model to `path` (atomically) and returns its size in bytes. Matrices are uniform with
    /// the variance of a 1/fan-in initialisation, norm weights 1, biases and embeddings small.
    @discardableResult
    public static func write(like header: GGUFFile, to path: String, seed: UInt64 = 0) throws -> Int {
        var w = GGUFWriter()
        for key in header.metadataKeys where key != "general.alignment" && key != "general.file_type" {
            w.set(key, header.metadata[key]!)
        }
        w.set("general.file_type", .uint32(2))  // mostly Q4_0
        for (i, info) in header.tensors.sorted(by: { $0.offset < $1.offset }).enumerated() {
            var type = storageType(for: info.type)
            if info.dimensions[0] % type.blockSize != 0 { type = .f16 }
            let name = info.name
            try w.addTensor(name: name, dimensions: info.dimensions, type: type) {
                let t = Tensor(uninitialized: info.shape)
                let limit: Float
                if name.hasSuffix("norm.weight") {
                    limit = 0
                } else if name.hasSuffix(".bias") || name == "token_embd.weight" {
                    limit = 0.1
                } else {
                    limit = (3 / Float(info.dimensions[0])).squareRoot()
                }
                if limit == 0 {
                    t.pointer.update(repeating: 1, count: t.count)
                } else {
                    tk_fill_uniform(t.pointer, t.count, seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15, -limit, limit)
                }
                return try GGUFWriter.encode(t, as: type, name: name)
            }
        }
        try w.write(to: path)
        return w.fileSize
    }
}
