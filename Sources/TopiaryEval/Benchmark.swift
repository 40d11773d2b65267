import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Speed and memory measurements of a model on this machine (not a test: numbers for BENCHMARKS.md).
public struct ModelBenchmark {
    public let model: any LanguageModel
    public var repeats: Int

    /// Time each op kind of the training figures (forward: since the previous op was recorded; backward: each rule).
    public var profile = false
    /// With ``profile``: seconds per "figure · direction · op kind", one entry per timed run.
    public var profileSeconds: [String: [Double]] { profileStore.value }
    private let profileStore = Locked<[String: [Double]]>([:])

    public init(model: any LanguageModel, repeats: Int = 3) {
        self.model = model
        self.repeats = repeats
    }

    public struct Figure: Codable, Sendable {
        public var name: String
        public var seconds: Double
        public var tokensPerSecond: Double?
        public var gflops: Double?
        public var note: String?
        enum CodingKeys: String, CodingKey {
            case name, seconds, gflops, note
            case tokensPerSecond = "tokens_per_second"
        }
    }

    /// Matmul FLOPs of one forward over `batch × seq` tokens (full attention, lm_head on every row).
    public func forwardFLOPs(batch: Int, seq: Int) -> Double {
        let c = model.config
        let n = Double(batch * seq)
        var f = 0.0
        for l in 0..<c.layerCount {
            let q = Double(c.heads[l] * c.headDim), kv = Double(c.kvHeads[l] * c.headDim), d = Double(c.hiddenSize)
            let ffn = Double(c.intermediateSizes[l])
            f += 2 * n * d * (2 * q + 2 * kv + 3 * ffn)
            f += 4 * Double(batch) * Double(seq * seq) * Double(c.headDim) * Double(c.heads[l])
        }
        f += 2 * n * Double(c.hiddenSize) * Double(c.vocabSize)
        return f
    }

    /// Best-of-`repeats` wall time of `body`.
    func time(_ body: () throws -> Void) rethrows -> Double {
        var best = Double.infinity
        for _ in 0..<repeats { best = min(best, try seconds(body)) }
        return best
    }

    /// The model's own GEMMs for one `rows`-token forward, run back to back with `cblas_sgemm`:
    /// the rate a perfect implementation would reach.
    public func sgemmReference(batch: Int, seq: Int) -> Figure {
        let c = model.config
        let rows = batch * seq
        var shapes: [(m: Int, n: Int, k: Int, transB: Bool, count: Int)] = []
        for l in 0..<c.layerCount {
            let q = c.heads[l] * c.headDim, kv = c.kvHeads[l] * c.headDim, d = c.hiddenSize, f = c.intermediateSizes[l]
            shapes += [(rows, q, d, true, 1), (rows, kv, d, true, 2), (rows, d, q, true, 1), (rows, f, d, true, 2), (rows, d, f, true, 1)]
            shapes += [(seq, seq, c.headDim, true, batch * c.heads[l]), (seq, c.headDim, seq, false, batch * c.heads[l])]
        }
        shapes.append((rows, c.vocabSize, c.hiddenSize, true, 1))
        let maxA = shapes.map { $0.m * $0.k }.max()!, maxB = shapes.map { $0.n * $0.k }.max()!, maxC = shapes.map { $0.m * $0.n }.max()!
        var rng = SplitMix64(seed: 1)
        let a = Tensor(shape: [maxA], values: (0..<maxA).map { _ in rng.nextFloat(-1, 1) })
        let b = Tensor(shape: [maxB], values: (0..<maxB).map { _ in rng.nextFloat(-1, 1) })
        let cbuf = Tensor(zeros: [maxC])
        var flops = 0.0
        for s in shapes { flops += 2 * Double(s.m * s.n * s.k * s.count) }
        let seconds = time {
            for s in shapes {
                for _ in 0..<s.count {
                    BLAS.gemm(transB: s.transB, m: s.m, n: s.n, k: s.k, a: a.pointer, b: b.pointer, c: cbuf.pointer)
                }
            }
        }
        return Figure(
            name: "sgemm on the model's GEMM shapes (\(batch)×\(seq))", seconds: seconds, tokensPerSecond: nil,
            gflops: flops / seconds / 1e9, note: String(format: "%.1f GFLOP", flops / 1e9))
    }

    /// One forward; with `logits: .last` the output projection runs on the last row of each sequence only, so
    /// the difference to `.all` is what the `[vocab, hidden]` output matrix costs.
    public func forward(batch: Int, seq: Int, logits: LogitsMode = .all) throws -> Figure {
        let tokens = benchmarkTokens(batch * seq)
        let seconds = try time { _ = try model.forward(Graph(), tokens: tokens, batch: batch, cache: nil, logits: logits) }
        return try forward(seconds: seconds, batch: batch, seq: seq, logits: logits)
    }

    func forward(seconds: Double, batch: Int, seq: Int, logits: LogitsMode = .all) throws -> Figure {
        var flops = forwardFLOPs(batch: batch, seq: seq)
        if logits == .last { flops -= 2 * Double(batch * (seq - 1)) * Double(model.config.hiddenSize * model.config.vocabSize) }
        let head = 2 * Double(batch * seq) * Double(model.config.hiddenSize * model.config.vocabSize)
        let note =
            logits == .last
            ? String(format: "%.1f GFLOP; output projection on the last row only", flops / 1e9)
            : String(format: "%.1f GFLOP of matmuls, %.0f%% of them the output projection", flops / 1e9, 100 * head / flops)
        return Figure(
            name: "forward \(batch)×\(seq)" + (logits == .last ? ", last-row logits" : ""), seconds: seconds,
            tokensPerSecond: Double(batch * seq) / seconds, gflops: flops / seconds / 1e9, note: note)
    }

    public func decode(prompt: Int = 16, steps: Int = 64) throws -> Figure {
        let seconds = try time {
            let cache = model.makeCache(batch: 1, capacity: prompt + steps)
            _ = try model.forward(Graph(), tokens: (0..<prompt).map { Int32($0 + 100) }, batch: 1, cache: cache, logits: .last)
            for s in 0..<steps {
                _ = try model.forward(Graph(), tokens: [Int32(200 + s)], batch: 1, cache: cache, logits: .last)
            }
        }
        return Figure(
            name: "decode with KV cache (prompt \(prompt), \(steps) steps)", seconds: seconds,
            tokensPerSecond: Double(steps) / seconds, gflops: nil, note: "includes the prompt's prefill")
    }

    /// Forward + backward of the mean cross-entropy over `batch × seq` tokens. With `trainable`, only
    /// those parameters get gradients (as a Taylor calibration over a layer range needs); otherwise all.
    public func forwardBackward(batch: Int, seq: Int, trainable: Set<String>? = nil, name: String? = nil) throws -> Figure {
        let run = try autodiffRun(batch: batch, seq: seq, trainable: trainable)
        return figure(name: name ?? "forward+backward \(batch)×\(seq)", batch: batch, seq: seq, seconds: try time { try run() })
    }

    /// The three figures of T2 measured in interleaved rounds: each round times the forward alone, the forward +
    /// backward with every parameter trainable, and (with `taylor`) the Taylor calibration pass, one after the
    /// other, so that the machine's slow and fast minutes fall on all three alike. Each figure is its best round;
    /// ``AutodiffRounds/ratios`` holds the forward+backward / forward ratio of every round.
    public func autodiffRounds(batch: Int, seq: Int, taylor: (trainable: Set<String>, name: String)?) throws -> AutodiffRounds {
        let tokens = benchmarkTokens(batch * seq)
        let forward = { _ = try self.model.forward(Graph(), tokens: tokens, batch: batch, cache: nil, logits: .all) }
        let full = try autodiffRun(batch: batch, seq: seq, trainable: nil)
        let calibration = try taylor.map { try autodiffRun(batch: batch, seq: seq, trainable: $0.trainable) }
        // Warm up: the first training step fills the buffer pool with the tape's activation sizes.
        try full()
        try calibration?()
        profileStore.update { $0 = [:] }
        var rounds: [[Double]] = []
        for _ in 0..<repeats {
            var row = [try seconds(forward), try seconds(full)]
            if let calibration { row.append(try seconds(calibration)) }
            rounds.append(row)
        }
        let best = (0..<rounds[0].count).map { i in rounds.map { $0[i] }.min()! }
        var figures = [
            try self.forward(seconds: best[0], batch: batch, seq: seq),
            figure(name: "forward+backward \(batch)×\(seq)", batch: batch, seq: seq, seconds: best[1]),
        ]
        if let taylor { figures.append(figure(name: taylor.name, batch: batch, seq: seq, seconds: best[2])) }
        for i in figures.indices {
            let all = rounds.map { String(format: "%.2f", $0[i]) }.joined(separator: ", ")
            figures[i].note = (figures[i].note.map { $0 + "; " } ?? "") + "rounds: \(all) s"
        }
        return AutodiffRounds(
            figures: figures, ratios: rounds.map { $0[1] / $0[0] },
            taylorRatios: taylor == nil ? [] : rounds.map { $0[2] / $0[0] })
    }

    public struct AutodiffRounds: Sendable {
        /// Forward, forward+backward and (when asked) the Taylor pass, each its best round.
        public var figures: [Figure]
        /// forward+backward / forward in each round.
        public var ratios: [Double]
        /// Taylor pass / forward in each round (empty without it).
        public var taylorRatios: [Double]
    }

    /// Wall time of one run of `body`.
    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    func benchmarkTokens(_ count: Int) -> [Int32] { (0..<count).map { Int32(($0 * 7919) % model.config.vocabSize) } }

    func figure(name: String, batch: Int, seq: Int, seconds: Double) -> Figure {
        Figure(
            name: name, seconds: seconds, tokensPerSecond: Double(batch * seq) / seconds,
            gflops: 3 * forwardFLOPs(batch: batch, seq: seq) / seconds / 1e9, note: "GFLOP/s counts 3× the forward")
    }

    /// One forward + backward (+ |w·g| per weight when `trainable` restricts the gradients, as a Taylor
    /// calibration pass does), leaving every parameter's `requiresGrad` and `grad` as it found them.
    func autodiffRun(batch: Int, seq: Int, trainable: Set<String>?) throws -> () throws -> Void {
        let tokens = benchmarkTokens(batch * seq)
        var targets = [Int32](repeating: -100, count: tokens.count)
        for b in 0..<batch { for t in 0..<(seq - 1) { targets[b * seq + t] = tokens[b * seq + t + 1] } }
        let model = self.model
        return {
            let saved = model.parameters.map(\.requiresGrad)
            defer { for (p, r) in zip(model.parameters, saved) { p.requiresGrad = r } }
            for p in model.parameters { p.requiresGrad = trainable?.contains(p.name) ?? true }
            let g = Graph(recording: true, profile: profile)
            let logits = try model.forward(g, tokens: tokens, batch: batch)
            try g.backward(g.crossEntropy(logits, targets: targets))
            if profile {
                let name = trainable == nil ? "forward+backward" : "Taylor pass"
                profileStore.update { times in
                    for (kind, s) in g.forwardSeconds ?? [:] { times["\(name) · forward · \(kind.rawValue)", default: []].append(s) }
                    for (kind, s) in g.backwardSeconds ?? [:] { times["\(name) · backward · \(kind.rawValue)", default: []].append(s) }
                }
            }
            if trainable != nil {
                // Taylor importance: accumulate |w·g| per weight, as a calibration pass does.
                for p in model.parameters {
                    guard let grad = p.grad else { continue }
                    let t = Tensor(uninitialized: p.shape)
                    tk_mul(p.value.pointer, grad.pointer, t.pointer, t.count)
                    _ = t.sums(keepingAxis: 0)
                }
            }
            for p in model.parameters { p.zeroGrad() }
        }
    }
}

/// Peak resident memory of this process, in bytes (Linux: VmHWM).
public func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}
