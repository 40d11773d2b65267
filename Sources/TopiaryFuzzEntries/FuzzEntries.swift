import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryGGUF
import TopiaryModels
import TopiaryPipeline
import TopiaryTokenizers

/// "Parse these bytes" entry points, one per format that Topiary reads from outside, for fuzzing and for
/// replaying saved fuzz inputs in tests. Each one feeds the bytes to the same code that reads a user's file
/// and ignores the thrown error: the only failures are a crash, a hang or a huge allocation.
///
/// ```swift
/// FuzzTarget.gguf.run(Data(contentsOf: url))   // must return, whatever the bytes
/// ```
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A GGUF file: header, metadata, tensor table, then the model and tokenizer built from it.
    case gguf
    /// A safetensors file.
    case safetensors
    /// A Hugging Face `config.json` as a Topiary checkpoint holds it.
    case config
    /// A Hugging Face `tokenizer.json`.
    case tokenizer
    /// An HDF5 file as `HDF5Export` writes it.
    case hdf5
    /// A YAML recipe.
    case recipe
    /// A zero-shot task file; the first byte chooses the task.
    case tasks

    /// Inputs larger than this are cut: the formats' interesting structure is in their first bytes.
    public static let maxInput = 1 << 20

    /// Runs the parser on `data`; returns a short outcome ("ok" or the error's message) for logs and tests.
    @discardableResult
    public func run(_ data: Data) -> String {
        let data = data.count > Self.maxInput ? data.prefix(Self.maxInput) : data
        do {
            switch self {
            case .gguf: try Self.gguf(data)
            case .safetensors: try Self.withFile(data, suffix: ".safetensors") { _ = try Safetensors.read(path: $0) }
            case .config:
                let config = try JSONDecoder().decode(ModelConfig.self, from: data)
                try config.validate()
            case .tokenizer:
                let t = try TokenizerVocabulary(huggingFaceJSON: data, source: "fuzz/tokenizer.json").makeTokenizer(source: "fuzz")
                let ids = t.encode("Hello, world! 123 héllo", addSpecialTokens: true, parseSpecial: true)
                _ = t.decode(ids)
            case .hdf5:
                try Self.withFile(data, suffix: ".h5") { path in
                    for name in ["model.norm.weight", "model.embed_tokens.weight"] { _ = try HDF5Export.read(path: path, tensor: name) }
                }
            case .recipe:
                _ = try Recipe.parse(String(decoding: data, as: UTF8.self), file: "/nonexistent/fuzz.yaml", checkFiles: false)
            case .tasks:
                guard let selector = data.first else { return "empty" }
                let task = ZeroShotTasks.all[Int(selector) % ZeroShotTasks.all.count]
                try Self.withFile(data.dropFirst(), suffix: ".jsonl") { _ = try task.items(from: $0, limit: nil) }
            }
            return "ok"
        } catch {
            return (error as? LocalizedError)?.errorDescription ?? "\(error)"
        }
    }

    /// The GGUF reader, every tensor's dequantization, the model loader and the tokenizer built from the metadata.
    static func gguf(_ data: Data) throws {
        try withFile(data, suffix: ".gguf") { path in
            let file = try GGUFFile(path: path)
            for t in file.tensors where t.type.canDequantize { _ = try? file.dequantize(t) }
            if let t = try? GGUFModelLoader.tokenizerFromMetadata(file.metadata, name: "fuzz.gguf") {
                _ = t.decode(t.encode("Hello, world! 123", addSpecialTokens: true, parseSpecial: true))
            }
            _ = try GGUFModelLoader.load(path: path)
        }
    }

    /// Writes `data` to a private temporary file for parsers that read a path.
    static func withFile(_ data: Data, suffix: String, _ body: (String) throws -> Void) throws {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = dir + "/topiary-fuzz-\(getpid())" + suffix
        guard FileManager.default.createFile(atPath: path, contents: data) else { throw CocoaError(.fileWriteUnknown) }
        defer { unlink(path) }
        try body(path)
    }
}
