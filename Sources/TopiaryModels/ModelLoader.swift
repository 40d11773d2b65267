import Foundation

/// Loads a model from a GGUF file, a Topiary checkpoint directory or a Hugging Face model directory.
///
/// A directory is a Topiary checkpoint when it has `tokenizer_metadata.json` or `manifest.json` (Topiary writes both),
/// and a Hugging Face model directory when it has `config.json` and neither of them (``HFModelLoader``).
public enum ModelLoader {
    /// `streamLayers` > 0 keeps a GGUF model's weights in its file and dequantizes that many layers at a time
    /// (``LayerStore``); checkpoints and Hugging Face directories are always loaded whole (as fp32).
    public static func load(path: String, streamLayers: Int = 0) throws -> LoadedModel {
        var dir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &dir) else { throw ModelError.notFound(path: path) }
        if dir.boolValue {
            if HFModelLoader.isHuggingFaceDirectory(path) {
                guard streamLayers == 0 else {
                    throw ModelError.invalidConfig(
                        "\(path): layer streaming reads GGUF files; a Hugging Face directory is loaded whole (drop --stream-layers)")
                }
                return try HFModelLoader.load(directory: path)
            }
            guard Checkpoint.isCheckpoint(path) else {
                // A folder with some model files lost config.json (name it); any other folder is not a model.
                let parts = ["manifest.json", "model.safetensors", "tokenizer_metadata.json", HFWeights.indexFile, "tokenizer.json"]
                if parts.contains(where: { FileManager.default.fileExists(atPath: path + "/" + $0) }) {
                    throw ModelError.checkpoint(
                        "\(path)/config.json: missing (a Topiary checkpoint needs config.json, model.safetensors, "
                            + "tokenizer_metadata.json and manifest.json; a Hugging Face model directory config.json, the weights and "
                            + "tokenizer.json)")
                }
                throw ModelError.unrecognizedFormat(path: path)
            }
            guard streamLayers == 0 else {
                throw ModelError.invalidConfig(
                    "\(path): layer streaming reads GGUF files; a checkpoint directory is loaded whole (drop --stream-layers)")
            }
            return try Checkpoint.load(directory: path)
        }
        return try GGUFModelLoader.load(path: path, streamLayers: streamLayers)
    }
}
