import Foundation
import TopiaryCore
import TopiaryGGUF
import TopiaryModels
import TopiaryTokenizers

/// Writes a model as a Hugging Face model directory that transformers loads with `AutoModelForCausalLM.from_pretrained`
/// and `AutoTokenizer.from_pretrained` (and Topiary with `--model DIR`):
/// - `config.json` for the family's class (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Gemma3ForCausalLM`);
/// - `model.safetensors` (fp32, transformers' tensor names, `q_proj`/`k_proj` in its rotate-half layout, Gemma's norm
///   weights as `w` for its `1 + w`);
/// - `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` built from the source's tokenizer
///   (``TokenizerVocabulary``: a GGUF's `tokenizer.ggml.*` keys or the source directory's own files).
///
/// transformers has one head count and one FFN width for all layers, so a model whose layers differ cannot be written;
/// the export is refused with a message naming the formats that can carry it, unless `allowTopiaryFormat` asks for a
/// Topiary checkpoint (per-layer arrays in `config.json`) instead.
public enum HFExporter {
    @discardableResult
    public static func export(
        model input: DecoderModel, sourceMetadata: [String: GGUFValue], to directory: String, allowTopiaryFormat: Bool = false
    ) throws -> ExportReport {
        let (model, merged) = try ExportWeights.plain(input)
        let config = model.config
        let family = try Architectures.family(of: config, path: directory)
        var notes: [String] = []
        if merged > 0 { notes.append("merged \(merged) LoRA adapters into the weights") }
        if let limitation = family.hfExportLimitation(config) {
            guard allowTopiaryFormat else {
                throw ExportError.inexpressible(
                    "\(limitation), so no Hugging Face directory can hold this model; formats that carry it: \(family.perLayerFormats) "
                        + "(pass --allow-topiary-format to write one to \(directory))")
            }
            notes.insert(
                "\(limitation): \(directory) is a Topiary checkpoint (config.json with per-layer arrays), which transformers cannot "
                    + "load and Topiary reads with --model; for llama.cpp use --format gguf", at: 0)
            try Checkpoint.save(model: model, tokenizerMetadata: sourceMetadata, to: directory)
            return ExportReport(
                format: "topiary", path: directory, architecture: "\(family.modelType) (Topiary per-layer config)", type: "F32",
                uniform: config.isUniform, bytes: sizeOnDisk(directory), bitsPerWeight: 32, tensors: tensorList(model), fallbacks: [],
                notes: notes,
                mergedAdapters: merged)
        }
        guard let configJSON = try family.hfConfig(config, tokenizer: sourceMetadata) else {
            throw ExportError.unsupportedModel("safetensors-hf export cannot describe this \(family.modelType) model")
        }
        guard sourceMetadata["tokenizer.ggml.tokens"] != nil else {
            throw ExportError.unsupportedModel(
                "the source has no tokenizer (tokenizer.ggml.* metadata), from which tokenizer.json would be written")
        }
        let vocabulary = try TokenizerVocabulary(ggufMetadata: sourceMetadata, name: "the source's tokenizer")
        let tokenizerFiles = try vocabulary.huggingFaceFiles()
        let offset = family.hfNormOffset
        try Checkpoint.writeDirectory(directory, what: "the Hugging Face export") { tmp in
            try AtomicFile.write(configJSON, to: tmp + "/config.json")
            let tensors = model.parameters.map { p -> (name: String, tensor: Tensor) in
                guard offset != 0 && HFModelLoader.isNorm(p.name) else { return (p.name, p.value) }
                let t = p.value.copy()
                for i in 0..<t.count { t.pointer[i] -= offset }
                return (p.name, t)
            }
            try Safetensors.write(tensors, metadata: ["format": "pt", "producer": "topiary"], to: tmp + "/model.safetensors")
            for (name, data) in tokenizerFiles.sorted(by: { $0.key < $1.key }) { try AtomicFile.write(data, to: tmp + "/" + name) }
        }
        if offset != 0 { notes.append("norm weights written as w for transformers' (1 + w) scale") }
        return ExportReport(
            format: "safetensors-hf", path: directory, architecture: family.hfClassName, type: "F32", uniform: true,
            bytes: sizeOnDisk(directory), bitsPerWeight: 32, tensors: tensorList(model), fallbacks: [], notes: notes,
            mergedAdapters: merged)
    }

    static func tensorList(_ model: DecoderModel) -> [ExportedTensor] {
        model.parameters.map { ExportedTensor(name: $0.name, dimensions: $0.shape, type: "F32", note: nil) }
    }
}
