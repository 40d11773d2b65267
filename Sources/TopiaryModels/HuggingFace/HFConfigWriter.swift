import Foundation
import TopiaryGGUF

/// The keys every family's transformers `config.json` shares (uniform layers only: transformers has one head count and
/// one FFN width for all layers).
enum HFConfigWriter {
    /// Through the shortest decimal form, so that 1e-5 is written 1e-05 and not 9.999999747378752e-06.
    static func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }

    static func common(_ c: ModelConfig, className: String, modelType: String, tokenizer md: [String: GGUFValue]) -> [String: Any] {
        var json: [String: Any] = [
            "architectures": [className],
            "model_type": modelType,
            "vocab_size": c.vocabSize,
            "hidden_size": c.hiddenSize,
            "intermediate_size": c.intermediateSizes[0],
            "num_hidden_layers": c.layerCount,
            "num_attention_heads": c.heads[0],
            "num_key_value_heads": c.kvHeads[0],
            "head_dim": c.headDim,
            "max_position_embeddings": c.contextLength,
            "rms_norm_eps": decimal(c.rmsNormEps),
            "rope_theta": decimal(c.ropeTheta),
            "rope_scaling": NSNull(),
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "tie_word_embeddings": c.tieWordEmbeddings,
            "torch_dtype": "float32",
            "use_cache": true,
        ]
        if let bos = md["tokenizer.ggml.bos_token_id"]?.int { json["bos_token_id"] = bos }
        if let eos = md["tokenizer.ggml.eos_token_id"]?.int { json["eos_token_id"] = eos }
        if let pad = md["tokenizer.ggml.padding_token_id"]?.int { json["pad_token_id"] = pad }
        return json
    }

    static func data(_ json: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
