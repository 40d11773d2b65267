import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels
import TopiaryPipeline

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, per-layer shapes, tensor types and parameter counts.")

    @OptionGroup var modelArguments: ModelArguments
    @Flag(help: "Print JSON (keys: parameters, non_embedding_parameters, config, tensor_types …).") var json = false

    struct Report: Encodable {
        let source: String
        let architecture: String
        let config: ModelConfig
        let parameters: Int
        let nonEmbeddingParameters: Int
        let tensorTypes: [String: Int]
        enum CodingKeys: String, CodingKey {
            case source, architecture, config, parameters
            case nonEmbeddingParameters = "non_embedding_parameters"
            case tensorTypes = "tensor_types"
        }
    }

    func run() throws {
        try reportingErrors {
            let loaded = try modelArguments.load()
            let c = loaded.model.config
            let total = loaded.model.parameterCount
            let embedding = c.vocabSize * c.hiddenSize
            var types: [String: Int] = [:]
            for t in loaded.sourceTensorTypes.values { types[t, default: 0] += 1 }
            let report = Report(
                source: loaded.source, architecture: c.architecture, config: c, parameters: total,
                nonEmbeddingParameters: total - embedding, tensorTypes: types)
            if json { return try printJSON(report) }
            func uniform(_ a: [Int]) -> String { Set(a).count == 1 ? "\(a[0])" : a.map(String.init).joined(separator: ",") }
            var variations: [String] = []
            if c.activation != "silu" { variations.append("activation     \(c.activation)") }
            if c.embeddingScale != 1 { variations.append("embedding ×    \(c.embeddingScale)") }
            if c.queryKeyNorm || c.postBlockNorms {
                variations.append(
                    "norms          pre" + (c.postBlockNorms ? " + post attention/FFN" : "") + (c.queryKeyNorm ? ", per-head q/k" : ""))
            }
            if c.queryPreAttentionScalar != nil { variations.append("attn scale     \(c.attentionScale)") }
            if c.slidingWindow > 0 {
                let local = (0..<c.layerCount).filter { c.isSliding($0) }.count
                let global = (0..<c.layerCount).filter { !c.isSliding($0) }.map(String.init).joined(separator: ",")
                variations.append(
                    "attention      \(local) local (window \(c.slidingWindow), rope theta \(c.localRopeTheta ?? c.ropeTheta)), global "
                        + "layers \(global)"
                )
            }
            print(
                """
                model          \(loaded.source)
                architecture   \(c.architecture)
                layers         \(c.layerCount)
                hidden         \(c.hiddenSize)
                heads          \(uniform(c.heads)) (KV heads \(uniform(c.kvHeads)), head dim \(c.headDim))
                ffn            \(uniform(c.intermediateSizes))
                vocabulary     \(c.vocabSize)
                rope theta     \(c.ropeTheta)
                rms norm eps   \(c.rmsNormEps)
                context        \(c.contextLength)
                tied output    \(c.tieWordEmbeddings)
                tensor types   \(types.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
                parameters     \(total.formatted()) (non-embedding \((total - embedding).formatted()))
                """)
            for line in variations { print(line) }
        }
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize a text file with the model's tokenizer (whole file, one string, no special tokens).")

    @OptionGroup var modelArguments: ModelArguments
    @Option(help: ArgumentHelp("Text file to tokenize.", valueName: "path")) var text: String?
    @Option(name: .customLong("file"), help: .hidden) var fileAlias: String?
    @Option(help: "How many leading ids to show.") var head: Int = 16
    @Flag(help: "Print JSON (keys: count, ids_head).") var json = false

    struct Report: Encodable {
        let count: Int
        let idsHead: [Int]
        enum CodingKeys: String, CodingKey { case count; case idsHead = "ids_head" }
    }

    func validate() throws {
        guard text != nil || fileAlias != nil else { throw ValidationError("Missing expected argument '--text <path>'") }
    }

    func run() throws {
        try reportingErrors {
            let text = try readText(self.text ?? fileAlias!)
            let loaded = try modelArguments.load()
            let ids = loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false)
            let report = Report(count: ids.count, idsHead: Array(ids.prefix(max(head, 0))))
            if json { return try printJSON(report) }
            print("\(ids.count) tokens")
            print("first ids: \(report.idsHead)")
        }
    }
}

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity over independent windows of a text file.",
        discussion: """
            The text is read whole and tokenized at once (no special tokens). It is cut into consecutive windows of \
            --window tokens from the start; each window runs on its own (positions 0…window−1, nothing prepended); \
            the logits at position t score token t+1; ppl = exp(mean NLL) over all predictions.
            The papers' protocol is --window 512 --windows 64 (or --window 128 --windows 256).
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var adapterArguments: AdapterArguments
    @OptionGroup var streaming: StreamingArguments
    @OptionGroup var dataArguments: DataArguments
    @Option(help: ArgumentHelp("Text file (overrides --dataset).", valueName: "path")) var text: String?
    @Option(
        help: ArgumentHelp(
            "wikitext2 (test), ptb (test) or ptb-valid, read from --data. PTB lines are stripped and joined by spaces, as LLM-Pruner's "
                + "loader does.")
    )
    var dataset: String = "wikitext2"
    @Option(help: "Tokens per window (≥ 2).") var window: Int = PerplexityConfig().window
    @Option(help: "At most this many windows (0: every complete window).") var windows: Int = PerplexityConfig().windows
    @Option(name: .customLong("max-windows"), help: .hidden) var maxWindowsAlias: Int?
    @Option(help: "Windows per forward pass (default: about 512 tokens per pass).") var batch: Int?
    @Option(name: .customLong("batch-size"), help: .hidden) var batchAlias: Int?

    var maxWindows: Int { maxWindowsAlias ?? windows }
    var batchSize: Int? { batch ?? batchAlias }
    @Flag(help: "Print JSON (keys: ppl, predictions, tokens, seconds …).") var json = false

    func validate() throws {
        guard window >= 2 else { throw ValidationError("--window \(window) is too small: a window needs at least 2 tokens") }
        guard PerplexityDataset(rawValue: dataset) != nil else {
            throw ValidationError("--dataset \(dataset): expected wikitext2, ptb or ptb-valid")
        }
        // Named as the user spelled them (the older spellings are hidden aliases).
        guard maxWindows >= 0 else {
            throw ValidationError("\(maxWindowsAlias == nil ? "--windows" : "--max-windows") \(maxWindows) must be ≥ 0")
        }
        if let batchSize, batchSize < 1 {
            throw ValidationError("\(batch == nil ? "--batch-size" : "--batch") \(batchSize) must be at least 1")
        }
    }

    func run() throws {
        try reportingErrors {
            let set = PerplexityDataset(rawValue: dataset)!
            let path = text ?? set.path(data: dataArguments.data)
            var content = try readText(path)
            if text == nil { content = set.prepare(content) }
            let loaded = try modelArguments.load(adapters: adapterArguments.adapters, streamLayers: streaming.streamLayers)
            try ResourceCheck.sequence(window, what: "--window \(window)", config: loaded.model.config, model: loaded.source)
            let tokens = loaded.tokenizer.encode(content, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
            let planned = min(tokens.count / window, maxWindows == 0 ? Int.max : maxWindows)
            // A streamed model reads every layer from its file once per pass: one pass over all windows by default.
            let batch = batchSize ?? (streaming.streamLayers > 0 ? max(1, planned) : nil)
            let evaluator = PerplexityEvaluator(window: window, maxWindows: maxWindows == 0 ? nil : maxWindows, batchSize: batch)
            let bar = ProgressBar("perplexity", total: planned, unit: "windows")
            let result = try evaluator.evaluate(loaded.model, tokens: tokens, source: path, progress: bar)
            if json { return try printJSON(result) }
            print(
                String(
                    format: "ppl %.4f  (mean NLL %.6f, %d predictions in %d windows of %d, %.1f s, %.0f tokens/s)",
                    result.ppl, result.meanNLL, result.predictions, result.windows, result.window, result.seconds,
                    Double(result.tokens) / result.seconds))
        }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text after a prompt (greedy unless --temperature > 0).")

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var adapterArguments: AdapterArguments
    @Option(help: "The prompt (used as is; add the chat template yourself if you want it).") var prompt: String
    @Option(name: .customLong("max-tokens"), help: "Tokens to generate.") var maxTokens: Int = 32
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (with temperature > 0).") var topP: Float = 1
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: all).") var topK: Int = 0
    @Option(help: "Random seed for sampling.") var seed: UInt64 = 0
    @Flag(name: .customLong("ignore-eos"), help: "Keep going after the end-of-sequence token.") var ignoreEOS = false
    @Flag(help: "Print JSON (keys: prompt_ids, ids, text).") var json = false

    struct Report: Encodable {
        let promptIDs: [Int]
        let ids: [Int]
        let text: String
        let tokensPerSecond: Double
        enum CodingKeys: String, CodingKey {
            case ids, text
            case promptIDs = "prompt_ids"
            case tokensPerSecond = "tokens_per_second"
        }
    }

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard !prompt.isEmpty else { throw ValidationError("--prompt is empty") }
    }

    func run() throws {
        try reportingErrors {
            let loaded = try modelArguments.load(adapters: adapterArguments.adapters)
            let promptIDs = loaded.tokenizer.encode(prompt, addSpecialTokens: true, parseSpecial: true).map(Int32.init)
            try ResourceCheck.sequence(
                promptIDs.count + min(maxTokens, Int.max - promptIDs.count),
                what: "the prompt (\(promptIDs.count) tokens) with --max-tokens \(maxTokens)",
                config: loaded.model.config, model: loaded.source)
            let options = GenerationOptions(
                maxTokens: maxTokens, temperature: temperature, topP: topP, topK: topK, seed: seed,
                stopAtEndOfSequence: !ignoreEOS)
            let generator = Generator(model: loaded.model, endOfSequence: loaded.tokenizer.eosTokenID)
            let start = Date()
            var streamed: [Int] = []
            var printedText = ""
            func emit(_ s: some StringProtocol) { FileHandle.standardOutput.write(Data(String(s).utf8)) }
            if !json { emit(prompt) }
            let ids = try generator.generate(prompt: promptIDs, options: options) { id in
                guard !json else { return }
                streamed.append(Int(id))
                let text = loaded.tokenizer.decode(streamed, skipSpecialTokens: false)
                // Print only complete characters (a token may end inside a multi-byte character).
                if !text.hasSuffix("\u{FFFD}") {
                    emit(text.dropFirst(printedText.count))
                    printedText = text
                }
            }
            let seconds = Date().timeIntervalSince(start)
            let text = loaded.tokenizer.decode(ids.map(Int.init), skipSpecialTokens: false)
            if json {
                return try printJSON(
                    Report(
                        promptIDs: promptIDs.map(Int.init), ids: ids.map(Int.init), text: text,
                        tokensPerSecond: Double(ids.count) / seconds))
            }
            emit(text.dropFirst(printedText.count) + "\n")
            FileHandle.standardError.write(
                Data(String(format: "[%d tokens, %.1f tokens/s]\n", ids.count, Double(ids.count) / seconds).utf8))
        }
    }
}
