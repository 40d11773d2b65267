import Foundation
import TopiaryCore
import TopiaryGGUF
import TopiaryModels

/// Writes a model as Hugging Face transformers loads it with `LlamaForCausalLM.from_pretrained`:
/// `model.safetensors` (fp32, HF tensor names, `q_proj`/`k_proj` in HF's rotate-half layout) and a
/// complete `config.json`. Transformers' `LlamaConfig` has one head count and one FFN width for all
/// layers, so a model whose layers differ cannot be described; it is then written as a Topiary
/// checkpoint (per-layer arrays in `config.json`) and the report says so.
///
/// The directory is also a Topiary checkpoint (`tokenizer_metadata.json`, `manifest.json`), so
/// `--model DIR` reads it back.
public enum HFExporter {
    @discardableResult
    public static func export(model input: DecoderModel, sourceMetadata: [String: GGUFValue], to directory: String) throws -> ExportReport {
        let (model, merged) = try ExportWeights.plain(input)
        let config = model.config
        let family = try Architectures.family(of: config, path: directory)
        guard family.writesHFConfig else {
            throw ExportError.unsupportedModel(
                family.hfExportLimitation(config) ?? "safetensors-hf export cannot write a \(family.modelType) model")
        }
        var notes: [String] = []
        if merged > 0 { notes.append("merged \(merged) LoRA adapters into the weights") }
        let tensors = model.parameters.map { ExportedTensor(name: $0.name, dimensions: $0.shape, type: "F32", note: nil) }
        if !config.isUniform {
            notes.insert(
                "layers differ (\(config.shapeSummary)): transformers' LlamaConfig has a single head count and FFN width for "
                    + "all layers, so \(directory) is a Topiary checkpoint (config.json with per-layer arrays) that transformers cannot "
                    + "load; "
                    + "use --format gguf to run it in llama.cpp", at: 0)
            try Checkpoint.save(model: model, tokenizerMetadata: sourceMetadata, to: directory)
            return ExportReport(
                format: "topiary", path: directory, architecture: "\(family.modelType) (Topiary per-layer config)", type: "F32",
                uniform: false, bytes: directorySize(directory), bitsPerWeight: 32, tensors: tensors, fallbacks: [], notes: notes,
                mergedAdapters: merged)
        }
        try Checkpoint.save(
            model: model, tokenizerMetadata: sourceMetadata, to: directory,
            configJSON: try family.hfConfig(config, tokenizer: sourceMetadata))
        notes.append("no tokenizer files for transformers: load the tokenizer of the source model (the vocabulary is unchanged)")
        return ExportReport(
            format: "safetensors-hf", path: directory, architecture: family.hfClassName, type: "F32", uniform: true,
            bytes: directorySize(directory), bitsPerWeight: 32, tensors: tensors, fallbacks: [], notes: notes,
            mergedAdapters: merged)
    }

    static func directorySize(_ dir: String) -> Int {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).reduce(0) {
            $0 + ((try? fm.attributesOfItem(atPath: dir + "/" + $1)[.size] as? Int) ?? 0)
        }
    }
}
