import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels

struct QuickStart: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quickstart",
        abstract: "Check a model end to end: WikiText-2 perplexity on a slice and a short greedy generation, as a table.")

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var dataArguments: DataArguments
    @Option(help: "Windows of 512 tokens to evaluate.") var windows: Int = 16
    @Option(help: "Prompt for the generation.") var prompt: String = "University is"

    func validate() throws {
        guard windows >= 1 else { throw ValidationError("--windows must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let t0 = Date()
            let loaded = try modelArguments.load()
            let loadSeconds = Date().timeIntervalSince(t0)
            let text = try readText(dataArguments.wikitext)
            let tokens = loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
            let bar = ProgressBar("wikitext-2 perplexity", total: windows, unit: "windows")
            let ppl = try PerplexityEvaluator(window: 512, maxWindows: windows).evaluate(
                loaded.model, tokens: tokens,
                source: dataArguments.wikitext, progress: bar)
            let promptIDs = loaded.tokenizer.encode(prompt, addSpecialTokens: true, parseSpecial: true).map(Int32.init)
            let g0 = Date()
            let ids = try Generator(model: loaded.model, endOfSequence: loaded.tokenizer.eosTokenID)
                .generate(prompt: promptIDs, options: GenerationOptions(maxTokens: 32))
            let genSeconds = Date().timeIntervalSince(g0)
            let completion = loaded.tokenizer.decode(ids.map(Int.init), skipSpecialTokens: true)
            let rows: [(String, String)] = [
                ("model", (loaded.source as NSString).lastPathComponent),
                ("parameters", loaded.model.parameterCount.formatted()),
                ("load time", String(format: "%.2f s", loadSeconds)),
                ("WikiText-2 tokens", tokens.count.formatted()),
                ("perplexity (512 × \(ppl.windows))", String(format: "%.4f", ppl.ppl)),
                ("forward speed", String(format: "%.0f tokens/s", Double(ppl.tokens) / ppl.seconds)),
                ("generation", "\(prompt)\(completion)".replacingOccurrences(of: "\n", with: "⏎")),
                ("decode speed", String(format: "%.1f tokens/s", Double(ids.count) / genSeconds)),
                ("peak memory", String(format: "%.0f MiB", Double(peakResidentBytes()) / 1_048_576)),
            ]
            let width = rows.map(\.0.count).max()!
            let line = "+" + String(repeating: "-", count: width + 2) + "+" + String(repeating: "-", count: 62) + "+"
            print(line)
            for (k, v) in rows {
                var chunks: [String] = []
                var rest = Substring(v)
                while !rest.isEmpty { chunks.append(String(rest.prefix(60))); rest = rest.dropFirst(60) }
                for (i, chunk) in chunks.enumerated() {
                    let key = i == 0 ? k : ""
                    print(
                        "| " + key.padding(toLength: width, withPad: " ", startingAt: 0) + " | "
                            + chunk.padding(toLength: 60, withPad: " ", startingAt: 0) + " |")
                }
            }
            print(line)
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure forward, decode and training speed, GEMM efficiency and peak memory (for BENCHMARKS.md).")

    @OptionGroup var modelArguments: ModelArguments
    @Option(
        help:
            ArgumentHelp(
                "Repetitions per measurement (best is reported); for the 10×128 training figures, rounds that time the forward, "
                    + "forward+backward and Taylor pass one after the other.")
    ) var repeats: Int = 3
    @Flag(help: "Skip the forward+backward measurement.") var skipBackward = false
    @Flag(help: "Only the 10×128 training figures: forward, forward+backward and the Taylor calibration pass.")
    var trainingOnly = false
    @Flag(help: "With the training figures: seconds per op kind, forward and backward (best round), to see where the time goes.")
    var profile = false
    @Option(
        help: ArgumentHelp(
            "Also time this model's 1×512 forward and its decoding in the same run (e.g. the dense original of a pruned --model).",
            valueName: "path"))
    var baseline: String?
    @Flag(help: "Print JSON.") var json = false

    struct Report: Encodable {
        let machine: String
        let blasThreads: Int
        let figures: [ModelBenchmark.Figure]
        let forwardEfficiency: Double?
        let peakRSSMiB: Double
        let speedupOverBaseline: Double?
        /// Decode (KV cache, batch 1) tokens/s over the baseline's, timed one after the other.
        let decodeSpeedupOverBaseline: Double?
        /// forward+backward / forward and Taylor pass / forward, per round (both measured in the same round).
        let backwardRatios: [Double]?
        let taylorRatios: [Double]?
        enum CodingKeys: String, CodingKey {
            case machine, figures
            case backwardRatios = "forward_backward_over_forward"
            case taylorRatios = "taylor_over_forward"
            case speedupOverBaseline = "speedup_over_baseline"
            case decodeSpeedupOverBaseline = "decode_speedup_over_baseline"
            case blasThreads = "blas_threads"
            case forwardEfficiency = "forward_1x512_vs_sgemm"
            case peakRSSMiB = "peak_rss_mib"
        }
    }

    func validate() throws {
        guard !(trainingOnly && skipBackward) else { throw ValidationError("--training-only and --skip-backward leave nothing to measure") }
        guard !(trainingOnly && baseline != nil) else {
            throw ValidationError("--baseline times a 1×512 forward and decoding, which --training-only skips")
        }
        // Checked before the benchmark runs (it takes a while): a missing baseline fails at once.
        if let baseline, !FileManager.default.fileExists(atPath: baseline) {
            throw ValidationError("--baseline \(baseline): no such file or directory")
        }
    }

    func run() throws {
        try reportingErrors {
            let loaded = try modelArguments.load()
            var bench = ModelBenchmark(model: loaded.model, repeats: max(1, repeats))
            bench.profile = profile
            // Warm up BLAS and the allocator.
            _ = try bench.forward(batch: 1, seq: 64)
            var figures: [ModelBenchmark.Figure] = []
            var reference: ModelBenchmark.Figure?, f512: ModelBenchmark.Figure?
            if !trainingOnly {
                reference = bench.sgemmReference(batch: 1, seq: 512)
                f512 = try bench.forward(batch: 1, seq: 512)
                figures += [
                    reference!, f512!, try bench.forward(batch: 1, seq: 512, logits: .last), bench.sgemmReference(batch: 4, seq: 128),
                    try bench.forward(batch: 4, seq: 128), try bench.decode(),
                ]
            }
            let rssEval = peakResidentBytes()
            var rounds: ModelBenchmark.AutodiffRounds?
            if !skipBackward {
                // The Taylor calibration pass of `topiary prune --layers 3-27`: gradients for those layers only.
                let c = loaded.model.config
                let names = Set(
                    loaded.model.parameters.map(\.name).filter { n in
                        (3..<max(3, c.layerCount - 2)).contains { n.hasPrefix("model.layers.\($0).") && !n.hasSuffix("layernorm.weight") }
                    })
                let taylor = names.isEmpty ? nil : (names, "Taylor calibration 10×128 (layers 3–\(c.layerCount - 3), |w·g|)")
                rounds = try bench.autodiffRounds(batch: 10, seq: 128, taylor: taylor)
                figures += rounds!.figures
            }
            var speedup: Double?, decodeSpeedup: Double?
            if let baseline, let f512 {
                let other = try ModelLoader.load(path: baseline)
                let b = ModelBenchmark(model: other.model, repeats: max(1, repeats))
                _ = try b.forward(batch: 1, seq: 512)  // warm up with the baseline's own shapes
                var f = try b.forward(batch: 1, seq: 512)
                f.name = "baseline \((baseline as NSString).lastPathComponent): forward 1×512"
                // Time the model again right after, so both are measured under the same conditions.
                let again = try bench.forward(batch: 1, seq: 512)
                speedup = f.seconds / min(again.seconds, f512.seconds)
                figures.append(f)
                // Decoding likewise: the baseline's, then this model's again.
                var d = try b.decode()
                d.name = "baseline \((baseline as NSString).lastPathComponent): decode with KV cache"
                if let theirs = d.tokensPerSecond, let ours = try bench.decode().tokensPerSecond, theirs > 0 {
                    decodeSpeedup = ours / theirs
                }
                figures.append(d)
            }
            let report = Report(
                machine: machineDescription(), blasThreads: BLAS.threads, figures: figures,
                forwardEfficiency: f512.map { ($0.gflops ?? 0) / (reference?.gflops ?? 1) },
                peakRSSMiB: Double(rssEval) / 1_048_576, speedupOverBaseline: speedup, decodeSpeedupOverBaseline: decodeSpeedup,
                backwardRatios: rounds?.ratios, taylorRatios: rounds?.taylorRatios)
            if json { return try printJSON(report) }
            print("machine: \(report.machine), OpenBLAS threads \(report.blasThreads), kernels \(BLAS.kernelName)")
            print("| measurement | seconds | tokens/s | GFLOP/s | note |")
            print("|---|---:|---:|---:|---|")
            for f in figures {
                print(
                    String(
                        format: "| %@ | %.4f | %@ | %@ | %@ |", f.name, f.seconds,
                        f.tokensPerSecond.map { String(format: "%.1f", $0) } ?? "",
                        f.gflops.map { String(format: "%.1f", $0) } ?? "", f.note ?? ""))
            }
            if let e = report.forwardEfficiency {
                print(String(format: "forward 1×512 reaches %.1f%% of the sgemm rate on the same shapes", e * 100))
            }
            if let speedup { print(String(format: "forward 1×512 is %.3f× as fast as the baseline's", speedup)) }
            if let decodeSpeedup { print(String(format: "decode is %.3f× as fast as the baseline's", decodeSpeedup)) }
            if profile, !bench.profileSeconds.isEmpty {
                print("| op (10×128, best round) | seconds |")
                print("|---|---:|")
                for (key, s) in bench.profileSeconds.map({ ($0.key, $0.value.min()!) }).sorted(by: {
                    ($0.0.split(separator: "·").prefix(2).joined(), -$0.1) < ($1.0.split(separator: "·").prefix(2).joined(), -$1.1)
                }) where s >= 0.001 {
                    print(String(format: "| %@ | %.3f |", key, s))
                }
            }
            if let rounds, let f = rounds.figures.first, rounds.figures.count > 1 {
                let list = { (r: [Double]) in r.map { String(format: "%.2f", $0) }.joined(separator: ", ") }
                print(
                    String(
                        format: "forward+backward / forward (10×128): %.2f× best against best; per round (same minute): ",
                        rounds.figures[1].seconds / f.seconds) + list(rounds.ratios))
                if rounds.figures.count > 2 {
                    print(
                        String(
                            format: "Taylor pass / forward: %.2f× best against best; per round: ",
                            rounds.figures[2].seconds / f.seconds)
                            + list(rounds.taylorRatios))
                }
            }
            print(
                String(
                    format: "peak RSS while evaluating (before training): %.0f MiB; at the end: %.0f MiB", report.peakRSSMiB,
                    Double(peakResidentBytes()) / 1_048_576))
        }
    }
}

func machineDescription() -> String {
    var cpu = "unknown CPU"
    if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
        let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") })
    {
        cpu = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? cpu
    }
    return "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores"
}
