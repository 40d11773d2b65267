import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels
import TopiaryRecover

extension Pipeline {
    /// Prompt-processing and decode tokens/s of each model (medians of interleaved repeats) and its size on disk.
    func measureSpeed(_ targets: [(label: String, path: String, adapters: String?)], _ c: SpeedConfig) throws -> [String: Metrics] {
        var loaded: [(label: String, model: DecoderModel, bytes: Int)] = []
        for t in targets {
            let m = try ModelLoader.load(path: t.path)
            if let adapters = t.adapters { try LoRATrainer.loadAdapters(directory: adapters, into: m.model) }
            loaded.append((t.label, m.model, TopiaryCore.sizeOnDisk(t.path)))
        }
        let labels = loaded.map(\.label).joined(separator: " / ")
        log("  speed: forward 1×\(c.prompt) and \(c.decode) decode steps, \(labels) interleaved × \(c.repeats)")
        var forward: [String: [Double]] = [:], decode: [String: [Double]] = [:]
        let bar = progress("speed", total: c.repeats * loaded.count, unit: "rounds")
        for _ in 0..<c.repeats {
            for m in loaded {
                let bench = ModelBenchmark(model: m.model, repeats: 1)
                forward[m.label, default: []].append(try bench.forward(batch: 1, seq: c.prompt, logits: .last).tokensPerSecond ?? 0)
                decode[m.label, default: []].append(try bench.decode(prompt: 16, steps: c.decode).tokensPerSecond ?? 0)
                bar.advance()
            }
        }
        bar.finish()
        var out: [String: Metrics] = [:]
        for m in loaded {
            out[m.label] = [
                "forward_tokens_per_second": Self.median(forward[m.label]!), "decode_tokens_per_second": Self.median(decode[m.label]!),
                "file_bytes": Double(m.bytes),
            ]
            log(
                String(
                    format: "  %@: forward %.0f tokens/s, decode %.1f tokens/s, %.1f MB", m.label,
                    out[m.label]!["forward_tokens_per_second"]!,
                    out[m.label]!["decode_tokens_per_second"]!, Double(m.bytes) / 1e6))
        }
        return out
    }

    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

}
