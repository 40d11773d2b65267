import Foundation
import TopiaryCore

/// A transformers `config.json`, read key by key: every error names the file and the key.
public struct HFConfig {
    /// The file, for messages.
    public let path: String
    public let json: [String: Any]

    public init(json: [String: Any], path: String) {
        self.json = json
        self.path = path
    }

    /// Reads and parses `path`.
    public init(path: String) throws {
        guard let data = readWholeFile(path) else { throw ModelError.notFound(path: path) }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError.invalidConfig("\(path): not a JSON object")
        }
        self.init(json: object, path: path)
    }

    public var modelType: String? { json["model_type"] as? String }

    func fail(_ message: String) -> ModelError { .invalidConfig("\(path): \(message)") }

    public func int(_ key: String) throws -> Int {
        guard let v = try optionalInt(key) else { throw fail("missing key '\(key)'") }
        return v
    }

    public func optionalInt(_ key: String) throws -> Int? {
        guard let raw = json[key], !(raw is NSNull) else { return nil }
        guard let n = raw as? NSNumber, n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) < 1e15 else {
            throw fail("'\(key)' is \(raw), expected a whole number")
        }
        return n.intValue
    }

    public func float(_ key: String) throws -> Float? {
        guard let raw = json[key], !(raw is NSNull) else { return nil }
        guard let n = raw as? NSNumber, n.doubleValue.isFinite else { throw fail("'\(key)' is \(raw), expected a number") }
        return n.floatValue
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let raw = json[key], !(raw is NSNull) else { return nil }
        guard let b = raw as? Bool else { throw fail("'\(key)' is \(raw), expected true or false") }
        return b
    }

    public func string(_ key: String) throws -> String? {
        guard let raw = json[key], !(raw is NSNull) else { return nil }
        guard let s = raw as? String else { throw fail("'\(key)' is \(raw), expected a string") }
        return s
    }

    /// A per-layer size: one number for every layer, or an array of one per layer.
    public func perLayer(_ key: String, layers: Int, default d: [Int]? = nil) throws -> [Int] {
        if let v = try? optionalInt(key) { return Array(repeating: v, count: layers) }
        if let values = json[key] as? [NSNumber] {
            guard values.count == layers else { throw fail("'\(key)' has \(values.count) entries for \(layers) layers") }
            return values.map(\.intValue)
        }
        if json[key] == nil || json[key] is NSNull, let d { return d }
        throw fail(json[key] == nil ? "missing key '\(key)'" : "'\(key)' is neither a number nor an array of one per layer")
    }

    /// RoPE base of the layers of `layerType` (`full_attention`, `sliding_attention`; nil: the model's only kind):
    /// `rope_theta` (transformers 4) or `rope_parameters` (transformers 5, per layer type for Gemma 3). Scaled RoPE
    /// (linear, dynamic, YaRN, LLaMA 3) is refused: Topiary's decoder has none.
    public func ropeTheta(layerType: String? = nil) throws -> Float? {
        var params = json["rope_parameters"] as? [String: Any]
        if let layerType, let nested = params?[layerType] as? [String: Any] { params = nested }
        for scaling in [json["rope_scaling"] as? [String: Any], params].compactMap({ $0 }) {
            let kind = scaling["rope_type"] as? String ?? scaling["type"] as? String ?? "default"
            let factor = (scaling["factor"] as? NSNumber)?.doubleValue ?? 1
            if kind != "default" && !(kind == "linear" && factor == 1) {
                throw fail("RoPE scaling '\(kind)' (factor \(factor)) is not supported (Topiary runs unscaled RoPE)")
            }
        }
        if let theta = (params?["rope_theta"] as? NSNumber)?.floatValue { return theta }
        return try float("rope_theta")
    }

    /// The decoder keys every family shares (LLaMA's names): vocabulary, widths, heads, FFN, RoPE base, norm epsilon,
    /// context length and tied embeddings; per-layer sizes may be numbers or arrays.
    public func decoder(modelType: String, tiedByDefault: Bool, defaultEps: Float) throws -> ModelConfig {
        let layers = try int("num_hidden_layers")
        guard (1...ModelConfig.maxLayers).contains(layers) else {
            throw fail("'num_hidden_layers' is \(layers) (1 to \(ModelConfig.maxLayers) allowed)")
        }
        let hidden = try int("hidden_size")
        let heads = try perLayer("num_attention_heads", layers: layers)
        let kv = try perLayer("num_key_value_heads", layers: layers, default: heads)
        let ffn = try perLayer("intermediate_size", layers: layers)
        let maxHeads = max(heads.max() ?? 1, 1)
        var config = ModelConfig(
            architecture: modelType, vocabSize: try int("vocab_size"), hiddenSize: hidden,
            headDim: try optionalInt("head_dim") ?? hidden / maxHeads, heads: heads, kvHeads: kv, intermediateSizes: ffn,
            ropeTheta: try ropeTheta() ?? 10_000, rmsNormEps: try float("rms_norm_eps") ?? defaultEps,
            contextLength: try optionalInt("max_position_embeddings") ?? 2048,
            tieWordEmbeddings: try bool("tie_word_embeddings") ?? tiedByDefault)
        if try bool("mlp_bias") == true { throw fail("'mlp_bias' is true: Topiary's MLP has no biases") }
        config.attentionBias = try bool("attention_bias") ?? false
        return config
    }

    /// Checks that `key` (the activation) is `expected`.
    public func requireActivation(_ key: String, _ expected: String) throws {
        let act = try string(key) ?? expected
        guard act == expected else { throw fail("'\(key)' is '\(act)'; a \(modelType ?? "model") runs \(expected) in Topiary") }
    }

    /// Validates `config`, naming the file.
    public func validated(_ config: ModelConfig) throws -> ModelConfig {
        do { try config.validate() } catch let ModelError.invalidConfig(m) { throw fail(m) }
        return config
    }
}
