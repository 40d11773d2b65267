import TopiaryGGUF

/// What `topiary export --type` (and a recipe's export stage) asks for: one storage type for the matrices, or
/// llama.cpp's Q4_K_M mix, whose type differs from tensor to tensor. Norms and other 1-D tensors are F32 under
/// every type.
///
/// The K-quant types follow llama.cpp's `quantize` (`llama_tensor_get_type` in llama-quant.cpp): the output
/// matrix — the token embedding when the output is tied to it — is Q6_K (Q8_0 when its rows do not hold whole
/// super-blocks), and a row that does not hold whole super-blocks of 256 falls back to Q5_0 (Q4_K), Q5_1 (Q5_K)
/// or Q8_0 (Q6_K), and to F16 when it does not hold whole blocks of 32 either.
///
///     let options = GGUFExportOptions(type: try GGUFExporter.parseType("q4_k_m"))
public enum GGUFExportType: String, CaseIterable, Sendable, CustomStringConvertible {
    case f32, f16, q8_0, q4_0, q4_1
    /// Q4_K matrices, the output matrix Q6_K (`general.file_type` MOSTLY_Q4_K_S, without that mix's Q5_K layers).
    case q4_k
    /// Q5_K matrices, the output matrix Q6_K (`general.file_type` MOSTLY_Q5_K_S, without that mix's Q6_K layers).
    case q5_k
    case q6_k
    /// llama.cpp's Q4_K_M: Q4_K, with Q6_K for the output matrix and for `attn_v` and `ffn_down` in the layers
    /// that llama.cpp's `use_more_bits` picks (the first and last eighth, and every third layer between).
    case q4_k_m

    /// `F32`, `Q4_K_M`, … as llama.cpp names types.
    public var description: String { rawValue.uppercased() }

    /// The storage type of most matrices.
    public var baseType: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q4_k, .q4_k_m: return .q4_K
        case .q5_k: return .q5_K
        case .q6_k: return .q6_K
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`).
    public var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q4_k: return 14  // MOSTLY_Q4_K_S
        case .q4_k_m: return 15
        case .q5_k: return 16  // MOSTLY_Q5_K_S
        case .q6_k: return 18
        }
    }

    /// True for the types whose matrices are K-quant super-blocks (llama.cpp's output and fallback rules apply).
    public var isKQuant: Bool { baseType.blockSize == 256 }

    /// The type llama.cpp stores instead of `type` when a row of `rowLength` does not hold whole blocks of it
    /// (`tensor_type_fallback`): Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16 when a row does not hold whole
    /// blocks of 32 either (Topiary's rule for the 32-blocks, where llama.cpp has none). Returns `type` when it fits.
    public static func fallback(for type: GGMLType, rowLength: Int) -> GGMLType {
        guard rowLength % type.blockSize != 0 else { return type }
        let next: GGMLType
        switch type {
        case .q4_K: next = .q5_0
        case .q5_K: next = .q5_1
        case .q6_K: next = .q8_0
        case .q3_K, .q2_K: next = .q4_0
        default: return .f16
        }
        return rowLength % next.blockSize == 0 ? next : .f16
    }
}

/// Chooses the storage type of each tensor of one export, called in the order the exporter writes them (layer by
/// layer), as llama.cpp's `llama_tensor_get_type` chooses it for a file quantized without an importance matrix.
/// It counts the `attn_v` and `ffn_down` tensors as llama.cpp does: the i-th `attn_v` of the file among all of them,
/// the i-th `ffn_down` among the model's layers.
struct TensorTypePlan {
    let requested: GGUFExportType
    let tiedEmbeddings: Bool
    /// `attn_v` tensors in the file (layers that keep attention).
    let attentionValueCount: Int
    let layerCount: Int
    private var attentionValueIndex = 0
    private var ffnDownIndex = 0

    init(requested: GGUFExportType, tiedEmbeddings: Bool, attentionValueCount: Int, layerCount: Int) {
        self.requested = requested
        self.tiedEmbeddings = tiedEmbeddings
        self.attentionValueCount = attentionValueCount
        self.layerCount = layerCount
    }

    /// llama.cpp's `use_more_bits(i, n)`: the first and last eighth of `n`, and every third index between.
    static func useMoreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }

    /// The storage type of the tensor `name` of row-major `shape` and, when it is not what the requested type
    /// stores there, why.
    mutating func type(name: String, shape: [Int]) -> (GGMLType, String?) {
        guard shape.count >= 2, let row = shape.last else { return (.f32, nil) }
        var type = requested.baseType
        var note: String?
        let isOutput = name == "output.weight" || (tiedEmbeddings && name == "token_embd.weight")
        if requested.isKQuant {
            if isOutput {
                if row % 256 != 0 {
                    type = .q8_0
                    note = "output matrix: row length \(row) is not a multiple of 256, stored Q8_0 (llama.cpp's choice)"
                } else {
                    type = .q6_K
                    if requested != .q6_k && requested != .q4_k_m {
                        note = "output matrix stored Q6_K (llama.cpp's K-quant types raise it)"
                    }
                }
            } else if requested == .q4_k_m {
                if name.hasSuffix(".attn_v.weight") {
                    if Self.useMoreBits(attentionValueIndex, attentionValueCount) { type = .q6_K }
                    attentionValueIndex += 1
                } else if name.hasSuffix(".ffn_down.weight") {
                    if Self.useMoreBits(ffnDownIndex, layerCount) { type = .q6_K }
                    ffnDownIndex += 1
                }
            }
        } else if (requested == .q4_0 || requested == .q4_1) && (name == "token_embd.weight" || name == "output.weight") {
            type = .q8_0
            note = "embedding/output matrix kept at Q8_0 in a 4-bit export (llama.cpp's quantize raises it too)"
        }
        let stored = GGUFExportType.fallback(for: type, rowLength: row)
        if stored != type {
            if stored == .f16 && type.blockSize == 256 {
                note = "row length \(row) is a multiple of neither \(type)'s super-block of 256 nor 32: stored F16"
            } else if stored == .f16 {
                note = "row length \(row) is not a multiple of \(type)'s block of \(type.blockSize): stored F16"
            } else {
                note = "row length \(row) is not a multiple of \(type)'s super-block of 256: stored \(stored) (llama.cpp's fallback)"
            }
        }
        return (stored, note)
    }
}
