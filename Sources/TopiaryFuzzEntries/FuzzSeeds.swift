import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryGGUF
import TopiaryModels

/// Seed inputs for the fuzz targets, made by Topiary itself (a tiny model saved in each format) or taken from
/// real files (the shipped recipes, the first lines of each task file), each with a few truncations.
public enum FuzzSeeds {
    /// A tiny random LLaMA: 2 layers, hidden 32, GQA 4/2 heads of 8, FFN 32 (layer 1: 3 heads, 16 channels), vocab 64.
    public static func tinyModel(uniform: Bool = false) throws -> DecoderModel {
        var rng = SplitMix64(seed: 7)
        let hidden = 32, headDim = 8, vocab = 64
        let heads = uniform ? [4, 4] : [4, 2], kv = uniform ? [2, 2] : [2, 1], ffn = uniform ? [32, 32] : [32, 16]
        let config = ModelConfig(
            architecture: LlamaFamily().modelType, vocabSize: vocab, hiddenSize: hidden, headDim: headDim, heads: heads,
            kvHeads: kv, intermediateSizes: ffn, ropeTheta: 10_000, rmsNormEps: 1e-5, contextLength: 64,
            tieWordEmbeddings: true)
        func random(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in rng.nextFloat(-0.5, 0.5) })
        }
        var weights: [String: Tensor] = ["model.embed_tokens.weight": random([vocab, hidden]), "model.norm.weight": random([hidden])]
        for l in 0..<2 {
            let q = heads[l] * headDim, k = kv[l] * headDim, f = ffn[l]
            let shapes = [
                [hidden], [q, hidden], [k, hidden], [k, hidden], [hidden, q], [hidden], [f, hidden], [f, hidden], [hidden, f],
            ]
            for (name, shape) in zip(DecoderModel.parameterNames(layer: l), shapes) { weights[name] = random(shape) }
        }
        return try DecoderModel(config: config, weights: weights)
    }

    /// GGUF tokenizer metadata of a tiny byte-level BPE vocabulary (the 64 tokens of the tiny model).
    public static func tinyTokenizerMetadata() -> [(String, GGUFValue)] {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789 .,!?ĠĊ")
        var tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + letters.map { String($0) }
        tokens += ["Ġt", "he", "Ġthe", "in", "er", "an", "on", "Ġa", "re", "at", "en", "ed", "Ġw", "or", "es", "is", "it", "Ġs"]
        while tokens.count < 64 { tokens.append("x\(tokens.count)") }
        let merges = [
            "Ġ t", "h e", "Ġt he", "i n", "e r", "a n", "o n", "Ġ a", "r e", "a t", "e n", "e d",
            "Ġ w", "o r", "e s", "i s", "i t", "Ġ s",
        ]
        return [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("smollm")),
            ("tokenizer.ggml.tokens", .array(tokens.map(GGUFValue.string))),
            ("tokenizer.ggml.token_type", .array(tokens.indices.map { .int32($0 < 3 ? 3 : 1) })),
            ("tokenizer.ggml.merges", .array(merges.map(GGUFValue.string))),
            ("tokenizer.ggml.bos_token_id", .uint32(1)), ("tokenizer.ggml.eos_token_id", .uint32(2)),
            ("tokenizer.ggml.add_bos_token", .bool(false)),
        ]
    }

    /// The tiny model as a GGUF file (llama.cpp names and layout, `deci` per-layer arrays when layers differ).
    public static func tinyGGUF(type: GGMLType = .f32) throws -> Data {
        let model = try tinyModel(uniform: true)
        let c = model.config
        var w = GGUFWriter()
        w.set("general.architecture", .string(LlamaFamily().modelType))
        w.set("general.name", .string("tiny"))
        w.set("llama.block_count", .uint32(UInt32(c.layerCount)))
        w.set("llama.embedding_length", .uint32(UInt32(c.hiddenSize)))
        w.set("llama.attention.head_count", .uint32(UInt32(c.heads[0])))
        w.set("llama.attention.head_count_kv", .uint32(UInt32(c.kvHeads[0])))
        w.set("llama.feed_forward_length", .uint32(UInt32(c.intermediateSizes[0])))
        w.set("llama.context_length", .uint32(64))
        w.set("llama.rope.freq_base", .float32(10_000))
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        for (k, v) in tinyTokenizerMetadata() { w.set(k, v) }
        let names = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.value) })
        try w.addTensor(name: "token_embd.weight", tensor: params["model.embed_tokens.weight"]!, type: type)
        for l in 0..<c.layerCount {
            for (gguf, hf) in zip(names, DecoderModel.parameterNames(layer: l)) {
                let t = params[hf]!
                try w.addTensor(name: "blk.\(l).\(gguf).weight", tensor: t, type: t.shape.count == 1 ? .f32 : type)
            }
        }
        try w.addTensor(name: "output_norm.weight", tensor: params["model.norm.weight"]!, type: .f32)
        return try w.encoded()
    }

    /// A small Hugging Face `tokenizer.json` (byte-level BPE with individual digits, SmolLM2's pre-tokenizer).
    public static func tinyTokenizerJSON() throws -> Data {
        let md = Dictionary(uniqueKeysWithValues: tinyTokenizerMetadata())
        let tokens = md["tokenizer.ggml.tokens"]!.stringArray!
        var vocab: [String: Int] = [:]
        for (i, t) in tokens.enumerated() where i >= 3 { vocab[t] = i }
        let object: [String: Any] = [
            "version": "1.0",
            "added_tokens": (0..<3).map { ["id": $0, "content": tokens[$0], "special": true] },
            "pre_tokenizer": [
                "type": "Sequence",
                "pretokenizers": [
                    ["type": "Digits", "individual_digits": true],
                    ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
                ],
            ],
            "post_processor": ["type": "ByteLevel"],
            "model": ["type": "BPE", "vocab": vocab, "merges": md["tokenizer.ggml.merges"]!.stringArray!, "unk_token": NSNull()],
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    /// Writes seeds for every target under `directory/<target>/`. `repository` is the checkout (for `recipes/`),
    /// `data` the data folder (for the task files); either may be nil.
    public static func write(to directory: String, repository: String?, data: String?) throws {
        func save(_ target: FuzzTarget, _ name: String, _ bytes: Data, truncations: Bool = true) throws {
            let dir = directory + "/" + target.rawValue
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try bytes.write(to: URL(fileURLWithPath: dir + "/" + name))
            guard truncations else { return }
            for cut in [8, 24, 64, bytes.count / 4, bytes.count / 2, bytes.count - 1] where cut > 0 && cut < bytes.count {
                try bytes.prefix(cut).write(to: URL(fileURLWithPath: dir + "/\(name).cut\(cut)"))
            }
        }
        let tmp = NSTemporaryDirectory() + "topiary-seeds-\(getpid())"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }

        for type in [GGMLType.f32, .q8_0, .q4_1] { try save(.gguf, "tiny-\(type).gguf", try tinyGGUF(type: type)) }
        let model = try tinyModel()
        try Safetensors.write(model.parameters.map { ($0.name, $0.value) }, metadata: ["format": "pt"], to: tmp + "/m.safetensors")
        try save(.safetensors, "tiny.safetensors", try Data(contentsOf: URL(fileURLWithPath: tmp + "/m.safetensors")))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try save(.config, "pruned-config.json", try encoder.encode(model.config), truncations: false)
        try save(.config, "uniform-config.json", try encoder.encode(try tinyModel(uniform: true).config), truncations: false)
        try save(.tokenizer, "tokenizer.json", try tinyTokenizerJSON())
        try HDF5Export.write(model: model, configJSON: String(decoding: try encoder.encode(model.config), as: UTF8.self), to: tmp + "/m.h5")
        try save(.hdf5, "tiny.h5", try Data(contentsOf: URL(fileURLWithPath: tmp + "/m.h5")))
        if let repository, let names = try? FileManager.default.contentsOfDirectory(atPath: repository + "/recipes") {
            for name in names where name.hasSuffix(".yaml") {
                try save(.recipe, name, try Data(contentsOf: URL(fileURLWithPath: repository + "/recipes/" + name)), truncations: false)
            }
        }
        // Synthetic items in each task's format (these may be committed; real lines from the data folder may not).
        let synthetic: [String: String] = [
            "boolq":
                #"{"passage": "Water boils at 100 degrees at sea level.", "question": "does water boil at 100 degrees", "answer": true}"#,
            "piqa": #"{"goal": "Open a jar.", "sol1": "Twist the lid.", "sol2": "Paint the lid.", "label": 0}"#,
            "hellaswag": "A man opens a jar. He\n0\ntwists the lid off.\npaints it.\nsings.\nleaves.",
            "winogrande":
                #"{"sentence": "The cup fell off the table because _ was tilted.", "option1": "the cup", "option2": "the table", "#
                + #""answer": "2"}"#,
            "arc_easy":
                #"{"question": {"stem": "What melts ice?", "choices": [{"text": "heat", "label": "A"}, {"text": "cold", "label": "B"}]}, "#
                + #""answerKey": "A"}"#,
            "arc_challenge":
                #"{"question": {"stem": "Which is a gas?", "choices": [{"text": "steam", "label": "1"}, {"text": "ice", "label": "2"}]}, "#
                + #""answerKey": "1"}"#,
            "openbookqa":
                #"{"question": {"stem": "The sun is a", "choices": [{"text": "star", "label": "A"}, {"text": "planet", "label": "B"}]}, "#
                + #""answerKey": "A"}"#,
        ]
        for (i, task) in ZeroShotTasks.all.enumerated() {
            guard let text = synthetic[task.name] else { continue }
            try save(.tasks, "synthetic-" + task.name, Data([UInt8(i)]) + Data((text + "\n" + text + "\n").utf8), truncations: false)
        }
        if let data {
            for (i, task) in ZeroShotTasks.all.enumerated() {
                guard let h = FileHandle(forReadingAtPath: data + "/zeroshot/" + task.fileName) else { continue }
                defer { try? h.close() }
                let head = try h.read(upToCount: 40000) ?? Data()
                // Whole lines only (three JSON lines, or two HellaSwag items of six lines).
                let lines = head.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
                let keep = task.fileName.hasSuffix(".txt") ? 12 : 2
                guard lines.count > keep else { continue }
                var bytes = Data([UInt8(i)])
                for l in lines.prefix(keep) { bytes += l + Data([UInt8(ascii: "\n")]) }
                try save(.tasks, task.name + ".seed", bytes, truncations: false)
            }
        }
    }
}
