import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// What a student learns from its teacher: the KL divergence of temperature-scaled next-token distributions, mixed
/// with the language-model loss and, optionally, a mean-squared error between hidden states at chosen layers.
public struct DistillationConfig: Codable, Sendable, Equatable {
    /// Softmax temperature of both distributions (the KL term is scaled by T², Hinton et al.).
    public var temperature: Float = 1
    /// Weight of the KL term; the language-model (cross-entropy) loss gets `1 − weight`. Half and half recovered the
    /// training text almost as well as the text's loss alone and the held-out PTB better than either (BENCHMARKS.md).
    public var weight: Float = 0.5
    /// 0: the teacher's full logits, computed at every step; K > 0: its K most likely tokens per position plus the
    /// tail mass, cached on disk so later steps, resumed runs and other runs on the same windows skip the teacher.
    public var topK = 0
    /// Layers (0-based, after the block) whose residual streams the student matches to the teacher's (same index).
    public var hiddenLayers: [Int] = []
    /// Weight of the hidden-state MSE (averaged over `hiddenLayers`).
    public var hiddenWeight: Float = 1

    public init() {}

    /// Whether each step needs the teacher's forward (no cache, or hidden states to match).
    public var needsTeacherForward: Bool { topK == 0 || !hiddenLayers.isEmpty }
}

/// The dense model a pruned student is distilled from, and its optional on-disk cache of top-K targets.
public final class Teacher {
    public let model: DecoderModel
    public let config: DistillationConfig
    /// Where the top-K targets are cached (`topK > 0`); one file per training window group, keyed by `key.json`.
    public let cacheDirectory: String?
    public private(set) var cacheHits = 0
    public private(set) var cacheMisses = 0

    public init(model: DecoderModel, config: DistillationConfig, cacheDirectory: String?) {
        self.model = model
        self.config = config
        self.cacheDirectory = config.topK > 0 ? cacheDirectory : nil
    }

    /// Checks the teacher against the student (vocabulary, hidden widths and layers to match) and opens the cache.
    func prepare(student: any AdaptableModel, tokens: [Int32], training: TrainingConfig) throws {
        let s = student.config, t = model.config
        guard s.vocabSize == t.vocabSize else {
            throw TrainingError.invalid("--teacher has a vocabulary of \(t.vocabSize) tokens, the student \(s.vocabSize)")
        }
        guard config.temperature.isFinite && config.temperature > 0 else { throw TrainingError.invalid("--temperature must be positive") }
        guard config.weight >= 0 && config.weight <= 1 else { throw TrainingError.invalid("--kd-weight must be in [0, 1]") }
        guard config.topK >= 0 && config.topK <= t.vocabSize else {
            throw TrainingError.invalid("--top-k \(config.topK) is outside 0…\(t.vocabSize) (the vocabulary)")
        }
        if !config.hiddenLayers.isEmpty {
            guard student is DecoderModel else { throw TrainingError.invalid("hidden-state distillation needs a decoder model") }
            guard s.hiddenSize == t.hiddenSize else {
                throw TrainingError.invalid(
                    "--hidden-layers: the student's hidden width \(s.hiddenSize) differs from the teacher's \(t.hiddenSize)")
            }
            if let bad = config.hiddenLayers.first(where: { $0 < 0 || $0 >= min(s.layerCount, t.layerCount) }) {
                throw TrainingError.invalid(
                    "--hidden-layers: layer \(bad) is outside 0…\(min(s.layerCount, t.layerCount) - 1) (layers both models have)")
            }
        }
        guard let dir = cacheDirectory else { return }
        let key = CacheKey(
            teacher: Self.fingerprint(model), tokens: tokens.count, tokensHash: Self.hash(tokens), batch: training.batchSize,
            length: training.length, topK: config.topK, temperature: config.temperature)
        let fm = FileManager.default
        let keyPath = dir + "/key.json"
        if let data = fm.contents(atPath: keyPath) {
            guard let existing = try? JSONDecoder().decode(CacheKey.self, from: data), existing == key else {
                throw TrainingError.invalid(
                    "\(dir): this teacher cache was made for another teacher, text or window shape; remove it or choose another "
                        + "--teacher-cache")
            }
            return
        }
        do {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(key), to: keyPath)
        } catch {
            throw OutputLocation.naming(dir, for: error, temporary: keyPath + ".tmp")
        }
    }

    struct CacheKey: Codable, Equatable {
        var teacher: String
        var tokens: Int
        var tokensHash: UInt64
        var batch: Int
        var length: Int
        var topK: Int
        var temperature: Float
    }

    /// The teacher's targets for the windows `ids` (starting at token `start` of the training stream) and its hidden
    /// states at the configured layers.
    func targets(ids: [Int32], batch: Int, start: Int) throws -> (targets: TeacherTargets, hidden: [Int: Tensor]) {
        let path = cacheDirectory.map { $0 + "/w\(start).bin" }
        var cached: TeacherTargets?
        if let path { cached = readCache(path, rows: ids.count) }
        if let cached, config.hiddenLayers.isEmpty {
            cacheHits += 1
            return (cached, [:])
        }
        let g = Graph()
        let (logits, hidden) = try model.forwardCapturing(g, tokens: ids, batch: batch, layers: config.hiddenLayers)
        let states = hidden.mapValues(\.value)
        if let cached {
            cacheHits += 1
            return (cached, states)
        }
        guard config.topK > 0 else { return (.logits(logits.value), states) }
        let targets = TeacherTargets.topK(of: logits.value, k: config.topK, temperature: config.temperature)
        if let path {
            cacheMisses += 1
            try writeCache(targets, to: path)
        }
        return (targets, states)
    }

    // File layout: "TKD1", rows and K as little-endian UInt32, then rows·K Int32 ids and rows·K Float32 log-probabilities.
    func writeCache(_ t: TeacherTargets, to path: String) throws {
        guard case let .topK(k, ids, logProbs) = t else { return }
        var data = Data("TKD1".utf8)
        for v in [UInt32(ids.count / k), UInt32(k)] { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        ids.withUnsafeBytes { data.append(contentsOf: $0) }
        logProbs.withUnsafeBytes { data.append(contentsOf: $0) }
        do { try AtomicFile.write(data, to: path) } catch { throw OutputLocation.naming(path, for: error, temporary: path + ".tmp") }
    }

    /// The cached targets at `path`, or nil when absent or not exactly what this run expects (then recomputed).
    func readCache(_ path: String, rows: Int) -> TeacherTargets? {
        let k = config.topK
        guard let data = FileManager.default.contents(atPath: path), data.count == 12 + rows * k * 8,
            data.prefix(4) == Data("TKD1".utf8)
        else { return nil }
        return data.withUnsafeBytes { raw -> TeacherTargets? in
            guard UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) == UInt32(rows),
                UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == UInt32(k)
            else { return nil }
            let n = rows * k
            let ids = (0..<n).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 12 + 4 * $0, as: Int32.self)) }
            let lp = (0..<n).map { raw.loadUnaligned(fromByteOffset: 12 + 4 * n + 4 * $0, as: Float.self) }
            let vocab = Int32(model.config.vocabSize)
            guard ids.allSatisfy({ $0 >= 0 && $0 < vocab }), lp.allSatisfy({ $0.isFinite && $0 <= 1e-3 }) else { return nil }
            return .topK(k: k, ids: ids, logProbs: lp)
        }
    }

    /// Shapes, parameter count and a strided sample of every weight: a cache made by another teacher does not match.
    static func fingerprint(_ m: DecoderModel) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for p in m.parameters where p.value.count > 0 {
            for i in stride(from: 0, to: p.value.count, by: max(1, p.value.count / 64)) {
                h = (h ^ UInt64(p.value[i].bitPattern)) &* 0x0000_0100_0000_01B3
            }
        }
        let c = m.config
        return "\(c.architecture) layers=\(c.layerCount) hidden=\(c.hiddenSize) params=\(m.parameterCount) sample=\(String(h, radix: 16))"
    }

    static func hash(_ tokens: [Int32]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for t in tokens { h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

extension DecoderModel {
    /// The forward pass that also returns the residual stream after each layer in `layers`.
    public func forwardCapturing(_ g: Graph, tokens: [Int32], batch: Int, layers wanted: [Int]) throws -> (logits: Var, hidden: [Int: Var])
    {
        guard !wanted.isEmpty else { return (try forward(g, tokens: tokens, batch: batch, cache: nil, logits: .all), [:]) }
        guard batch > 0, tokens.count % batch == 0 else {
            throw ModelError.invalidConfig("\(tokens.count) tokens do not split into \(batch) sequences of equal length")
        }
        let steps = try LayerSteps(model: self, batch: batch, length: tokens.count / batch)
        var h = try embed(g, tokens: tokens), hidden: [Int: Var] = [:]
        for l in layers.indices {
            h = try layer(g, l, h, steps: steps)
            if wanted.contains(l) { hidden[l] = h }
        }
        return (try head(g, h, steps: steps, logits: .all), hidden)
    }
}
