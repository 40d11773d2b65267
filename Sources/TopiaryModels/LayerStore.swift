import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGGUF

/// Keeps a model's weights quantized in their memory-mapped GGUF file and dequantizes a layer only while it is
/// used: the foundation for running models whose fp32 weights do not fit in memory (a 7B model is 28 GiB in
/// fp32, 4.4 GiB as Q4_K).
///
/// ``DecoderModel`` asks the store for layer `l` before running it (``use(layer:)``); at most ``capacity``
/// layers are resident, the least recently used one is freed (its parameters ``Parameter/offload()``) and its
/// mapped pages are handed back to the kernel. The token embedding is never loaded whole: the rows a batch
/// needs are dequantized from the file. The output projection (and the final norm) are loaded on the first
/// ``useHead()`` and stay. Drivers that change a layer's weights (sparsifying, pruning) ``pin(layer:)`` it so
/// that it cannot be evicted (and silently re-read from the file) before they have written it out.
///
/// A tape (``Graph(recording: true)``) keeps the weights it saw alive; gradients of a streamed model are
/// therefore computed one layer at a time (see `Calibration.layerwiseGradients` in TopiaryPrune).
public final class LayerStore: @unchecked Sendable {
    struct Entry {
        let parameter: Parameter
        let info: GGUFTensorInfo
        /// llama.cpp's q/k row order to undo (LLaMA), by head count.
        let unpermuteHeads: Int?
    }

    public let file: GGUFFile
    /// Layers resident at once (at least 1).
    public let capacity: Int
    var layers: [[Entry]]
    var head: [Entry]
    var embedding: Entry?
    /// Source tensor of every managed parameter.
    private let sources: [ObjectIdentifier: GGUFTensorInfo]
    private var resident: [Int] = []  // least recently used first
    private var pinned: Set<Int> = []
    private let lock = NSLock()
    /// Layer loads so far (a layer used twice in a row is loaded once).
    public private(set) var loads = 0
    /// Seconds spent dequantizing.
    public private(set) var loadSeconds = 0.0

    init(file: GGUFFile, capacity: Int, layers: [[Entry]], head: [Entry], embedding: Entry?) {
        self.file = file
        self.capacity = max(1, capacity)
        self.layers = layers
        self.head = head
        self.embedding = embedding
        let all = layers.joined() + head + (embedding.map { [$0] } ?? [])
        sources = Dictionary(all.map { (ObjectIdentifier($0.parameter), $0.info) }, uniquingKeysWith: { a, _ in a })
    }

    /// Layers currently in memory, least recently used first.
    public var residentLayers: [Int] { lock.lock(); defer { lock.unlock() }; return resident }

    /// Makes layer `l` resident (loading it, and evicting the least recently used unpinned layer when full).
    public func use(layer l: Int) throws {
        lock.lock()
        defer { lock.unlock() }
        guard layers.indices.contains(l) else { return }
        if let i = resident.firstIndex(of: l) {
            resident.remove(at: i)
            resident.append(l)
            return
        }
        while resident.count >= capacity, let victim = resident.first(where: { !pinned.contains($0) }) {
            resident.removeAll { $0 == victim }
            for e in layers[victim] { e.parameter.offload() }
        }
        let start = Date()
        for e in layers[l] { try load(e) }
        loadSeconds += Date().timeIntervalSince(start)
        loads += 1
        resident.append(l)
    }

    /// Loads the final norm and the output projection (once).
    public func useHead() throws {
        lock.lock()
        defer { lock.unlock() }
        for e in head where !e.parameter.isResident { try load(e) }
    }

    /// Keeps layer `l` resident until ``unpin(layer:)`` (it is loaded if needed).
    public func pin(layer l: Int) throws {
        try use(layer: l)
        lock.lock()
        pinned.insert(l)
        lock.unlock()
    }

    public func unpin(layer l: Int) {
        lock.lock()
        pinned.remove(l)
        lock.unlock()
    }

    /// Frees every resident layer that is not pinned.
    public func releaseLayers() {
        lock.lock()
        defer { lock.unlock() }
        for l in resident where !pinned.contains(l) { for e in layers[l] { e.parameter.offload() } }
        resident.removeAll { !pinned.contains($0) }
    }

    /// The tensor of the file a parameter is read from (nil for parameters the store does not manage).
    public func sourceTensor(of p: Parameter) -> GGUFTensorInfo? { sources[ObjectIdentifier(p)] }

    /// Rows `ids` of the token embedding, `[ids.count, hidden]`, dequantized straight from the file.
    public func embeddingRows(_ table: Parameter, ids: [Int32]) throws -> Tensor {
        guard let e = embedding, e.parameter === table else {
            throw ModelError.invalidConfig("the embedding '\(table.name)' is not in this model's layer store")
        }
        let rows = e.info.elementCount / e.info.dimensions[0], width = e.info.dimensions[0]
        let out = Tensor(uninitialized: [ids.count, width])
        for (i, id) in ids.enumerated() {
            guard id >= 0, Int(id) < rows else {
                throw ModelError.invalidConfig("token id \(id) is outside the vocabulary of \(rows)")
            }
            let row = try file.dequantize(e.info, rows: Int(id)..<(Int(id) + 1))
            (out.pointer + i * width).update(from: row.pointer, count: width)
        }
        return out
    }

    private func load(_ e: Entry) throws {
        var t = try file.dequantize(e.info)
        if let heads = e.unpermuteHeads { t = GGUFModelLoader.unpermuteRotary(t, heads: heads) }
        e.parameter.value = t.reshaped(e.parameter.shape)
        file.releasePages(of: e.info)
    }
}
