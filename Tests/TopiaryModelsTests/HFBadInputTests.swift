import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryTokenizers
import XCTest

/// A tiny Hugging Face model directory made here (LLaMA layout, random weights, a SentencePiece-style tokenizer):
/// the loader reads it, and each kind of damage gives one error naming the file.
final class HFBadInputTests: XCTestCase {
    static let config: ModelConfig = {
        ModelConfig(
            architecture: "llama", vocabSize: 12, hiddenSize: 16, headDim: 8, heads: [2, 2], kvHeads: [1, 1],
            intermediateSizes: [24, 24], ropeTheta: 10_000, rmsNormEps: 1e-5, contextLength: 64, tieWordEmbeddings: true)
    }()

    static let vocabulary: TokenizerVocabulary = {
        let tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "▁", "a", "b", "▁a", "ab", "▁ab", "<0x0A>", "\n\n"]
        var v = TokenizerVocabulary(model: .sentencePiece, tokens: tokens, tokenTypes: [3, 3, 3, 2, 1, 1, 1, 1, 1, 1, 6, 4])
        v.scores = [0, 0, 0, 0, -1, -2, -3, -4, -5, -6, 0, 0]
        v.bosTokenID = 2
        v.eosTokenID = 1
        v.unknownTokenID = 3
        v.addBOS = true
        return v
    }()

    static func weights() -> [String: Tensor] {
        var rng = SplitMix64(seed: 3)
        var w: [String: Tensor] = [:]
        let c = config
        for name in HFModelLoader.tensorNames(c) {
            let shape: [Int]
            switch name {
            case "model.embed_tokens.weight": shape = [c.vocabSize, c.hiddenSize]
            case let n where n.hasSuffix("norm.weight"): shape = [c.hiddenSize]
            case let n where n.contains("q_proj"): shape = [c.heads[0] * c.headDim, c.hiddenSize]
            case let n where n.contains("k_proj") || n.contains("v_proj"): shape = [c.kvHeads[0] * c.headDim, c.hiddenSize]
            case let n where n.contains("o_proj"): shape = [c.hiddenSize, c.heads[0] * c.headDim]
            case let n where n.contains("down_proj"): shape = [c.hiddenSize, c.intermediateSizes[0]]
            default: shape = [c.intermediateSizes[0], c.hiddenSize]
            }
            w[name] = Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in rng.nextFloat(-0.4, 0.4) })
        }
        return w
    }

    /// Writes the tiny model to a fresh directory: one `model.safetensors`, or two shards and an index.
    func directory(_ name: String, sharded: Bool = false) throws -> String {
        let dir = NSTemporaryDirectory() + "topiary-hf-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let config = try XCTUnwrap(try LlamaFamily().hfConfig(Self.config, tokenizer: Self.vocabulary.ggufMetadata))
        try config.write(to: URL(fileURLWithPath: dir + "/config.json"))
        for (file, data) in try Self.vocabulary.huggingFaceFiles() { try data.write(to: URL(fileURLWithPath: dir + "/" + file)) }
        let tensors = Self.weights().sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) }
        if sharded {
            let half = tensors.count / 2
            let parts = [Array(tensors[..<half]), Array(tensors[half...])]
            var map: [String: String] = [:]
            for (i, part) in parts.enumerated() {
                let file = "model-0000\(i + 1)-of-00002.safetensors"
                try Safetensors.write(part, to: dir + "/" + file)
                for t in part { map[t.name] = file }
            }
            let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": map]
            try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: dir + "/" + HFWeights.indexFile))
        } else {
            try Safetensors.write(tensors, to: dir + "/model.safetensors")
        }
        return dir
    }

    func assertError(
        _ path: String, mentions parts: [String], file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try ModelLoader.load(path: path), file: file, line: line) { error in
            let message = error.localizedDescription
            for p in parts { XCTAssertTrue(message.contains(p), "'\(message)' does not mention \(p)", file: file, line: line) }
        }
    }

    func testATinyDirectoryLoadsWithItsWeightsAndTokenizer() throws {
        let reference = try DecoderModel(config: Self.config, weights: Self.weights())
        let ids: [Int32] = [2, 7, 5, 6, 9, 4, 8]
        let expected = try reference.forward(Graph(recording: false), tokens: ids).value.array
        for sharded in [false, true] {
            let loaded = try ModelLoader.load(path: try directory("ok-\(sharded)", sharded: sharded))
            XCTAssertEqual(loaded.model.config, Self.config)
            XCTAssertEqual(try loaded.model.forward(Graph(recording: false), tokens: ids).value.array, expected)
            XCTAssertEqual(loaded.tokenizer.encode("ab a\n\nb", addSpecialTokens: true, parseSpecial: false), [2, 8, 7, 11, 6])
            XCTAssertEqual(loaded.sourceTensorTypes["model.norm.weight"], "F32")
            XCTAssertEqual(loaded.metadata["tokenizer.ggml.model"]?.string, "llama")
        }
    }

    func testASafetensorsHeaderThatLiesAboutOffsetsIsNamed() throws {
        let dir = try directory("lying-header")
        let path = dir + "/model.safetensors"
        let file = try SafetensorsFile(path: path)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        var header: [String: Any] = [:]
        for name in file.names {
            let e = try XCTUnwrap(file.entry(named: name))
            header[name] = ["dtype": "F32", "shape": e.shape, "data_offsets": [e.start, e.end]]
        }
        func rewrite(_ change: (inout [String: Any]) -> Void) throws {
            var h = header
            change(&h)
            var json = try JSONSerialization.data(withJSONObject: h)
            while json.count % 8 != 0 { json.append(0x20) }
            var length = UInt64(json.count).littleEndian
            var data = Data(bytes: &length, count: 8)
            data.append(json)
            data.append(Data(count: size))
            try data.write(to: URL(fileURLWithPath: path))
        }
        // Past the end of the file.
        try rewrite { $0["model.norm.weight"] = ["dtype": "F32", "shape": [16], "data_offsets": [size * 2, size * 2 + 64]] }
        assertError(dir, mentions: [path, "model.norm.weight", "ends at byte"])
        // A byte count that is not the shape's.
        try rewrite { $0["model.norm.weight"] = ["dtype": "F32", "shape": [16], "data_offsets": [0, 60]] }
        assertError(dir, mentions: [path, "model.norm.weight", "data_offsets"])
        // Two tensors on the same bytes.
        try rewrite { $0["model.norm.weight"] = ["dtype": "F32", "shape": [16], "data_offsets": [0, 64]] }
        assertError(dir, mentions: [path, "overlap"])
    }

    func testAMissingShardIsNamed() throws {
        let dir = try directory("missing-shard", sharded: true)
        try FileManager.default.removeItem(atPath: dir + "/model-00002-of-00002.safetensors")
        assertError(dir, mentions: [dir + "/model-00002-of-00002.safetensors", "missing shard", HFWeights.indexFile])
    }

    func testAnIndexNamingATensorItsShardLacksIsNamed() throws {
        let dir = try directory("index-lies", sharded: true)
        let indexPath = dir + "/" + HFWeights.indexFile
        var index = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as? [String: Any])
        var map = try XCTUnwrap(index["weight_map"] as? [String: String])
        let moved = try XCTUnwrap(map.first { $0.value.hasPrefix("model-00002") }?.key)
        map[moved] = "model-00001-of-00002.safetensors"
        index["weight_map"] = map
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        assertError(dir, mentions: [dir + "/model-00001-of-00002.safetensors", "'\(moved)'", HFWeights.indexFile])
        // An index that leaves out a tensor the model needs.
        map[moved] = nil
        index["weight_map"] = map
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        assertError(dir, mentions: [indexPath, "missing tensor '\(moved)'"])
    }

    func testAnUnknownModelTypeIsNamed() throws {
        let dir = try directory("mamba")
        var config = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        config["model_type"] = "mamba"
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        assertError(dir, mentions: [dir + "/config.json", "unsupported model_type 'mamba'", "llama, qwen2, gemma3_text"])
        config["model_type"] = "llama"
        config["rope_scaling"] = ["rope_type": "llama3", "factor": 8.0]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        assertError(dir, mentions: [dir + "/config.json", "RoPE scaling 'llama3'"])
    }

    func testATokenizerOfAnUnsupportedModelTypeIsNamed() throws {
        let dir = try directory("unigram")
        let path = dir + "/tokenizer.json"
        let unigram: [String: Any] = ["model": ["type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 0], "added_tokens": []]
        try JSONSerialization.data(withJSONObject: unigram).write(to: URL(fileURLWithPath: path))
        assertError(dir, mentions: [path, "tokenizer model 'Unigram' is not supported"])
        try FileManager.default.removeItem(atPath: path)
        assertError(dir, mentions: [path])
    }
}
