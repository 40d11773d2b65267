import Foundation
import TopiaryCore

/// Sizes a user typed (windows, lengths, batches, generations), checked before anything is allocated: against the
/// model's context length and against the memory the machine has.
public enum ResourceError: Error, LocalizedError, Equatable {
    case beyondContext(what: String, tokens: Int, context: Int, model: String)
    case notEnoughMemory(what: String, needed: Int, available: Int)
    case tooLarge(what: String)

    public var errorDescription: String? {
        switch self {
        case let .beyondContext(what, tokens, context, model):
            return "\(what) asks for \(tokens) tokens in one sequence, longer than the context length of \(model) "
                + "(\(context) tokens); use at most \(context)"
        case let .notEnoughMemory(what, needed, available):
            return "\(what) would need about \(SystemMemory.format(needed)) of memory, but only \(SystemMemory.format(available)) "
                + "is available; use smaller sizes"
        case let .tooLarge(what): return "\(what) is too large to compute with (its size overflows)"
        }
    }
}

public enum ResourceCheck {
    /// Fails when a sequence of `tokens` tokens does not fit the model's context length.
    public static func sequence(_ tokens: Int, what: String, config: ModelConfig, model: String) throws {
        guard tokens <= config.contextLength else {
            throw ResourceError.beyondContext(
                what: what, tokens: tokens, context: config.contextLength, model: (model as NSString).lastPathComponent)
        }
    }

    /// Fails when `bytes` (nil: the estimate overflowed) exceed the memory available now.
    public static func memory(_ bytes: Int?, what: String, available: Int = SystemMemory.availableBytes()) throws {
        guard let bytes else { throw ResourceError.tooLarge(what: what) }
        guard bytes <= available else { throw ResourceError.notEnoughMemory(what: what, needed: bytes, available: available) }
    }

    /// The largest buffers alive at once in a forward pass without gradients over `batch` sequences of `length` tokens:
    /// the logits of `logitRows` rows (all by default), one layer's attention scores and probabilities, and its
    /// activations. nil when the product overflows.
    public static func forwardBytes(_ c: ModelConfig, batch: Int, length: Int, logitRows: Int? = nil) -> Int? {
        let heads = c.heads.max() ?? 0, ffn = c.intermediateSizes.max() ?? 0, q = heads * c.headDim
        // Sizes a user typed can be anything: every product is overflow-checked (`checked`), none is formed here.
        return checked([
            (logitRows.map { [$0] } ?? [batch, length]) + [c.vocabSize, 2],
            [batch, heads, length, length, 2],
            [batch, length, 4 * c.hiddenSize + 2 * q + 3 * ffn],
        ]).map { $0 * MemoryLayout<Float>.stride }
    }

    /// A training step (forward + backward) over `batch` sequences of `length` tokens: every layer's saved activations,
    /// attention probabilities, the logits and their gradient (as `Calibration.stepBytes`, without weight gradients).
    public static func trainingBytes(_ c: ModelConfig, batch: Int, length: Int) -> Int? {
        var terms: [[Int]] = [[batch, length, c.vocabSize, 2]]
        for l in 0..<c.layerCount {
            let q = c.heads[l] * c.headDim, kv = c.kvHeads[l] * c.headDim
            terms.append([batch, length, 5 * c.hiddenSize + q + 2 * kv + 4 * c.intermediateSizes[l]])
            terms.append([batch, c.heads[l], length, length])
        }
        return checked(terms).map { $0 * MemoryLayout<Float>.stride }
    }

    /// Σ Π terms, or nil on overflow (sizes typed by a user can be anything).
    static func checked(_ terms: [[Int]]) -> Int? {
        var total = 0
        for factors in terms {
            var product = 1
            for f in factors {
                let (p, o) = product.multipliedReportingOverflow(by: max(f, 0))
                guard !o else { return nil }
                product = p
            }
            let (t, o) = total.addingReportingOverflow(product)
            guard !o, t < Int.max / 8 else { return nil }
            total = t
        }
        return total
    }
}
