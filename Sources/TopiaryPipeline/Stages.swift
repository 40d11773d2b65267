import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryTokenizers

/// Where a zero-shot task's file lives under a data folder.
enum ZeroShotTaskFile {
    static func path(task: String, data: String) throws -> String {
        data + "/zeroshot/" + (try ZeroShotTasks.task(named: task)).fileName
    }
}

/// Scores computed earlier (the importance stage's `importance.json`), by group id.
public struct PrecomputedImportance: ImportanceEstimator {
    public let scores: [Int: [Double]]
    public let source: String

    public func scores(for group: PruningGroup, parameters: [String: Parameter]) throws -> [Double] {
        guard let s = scores[group.id], s.count == group.units else {
            throw PipelineError(
                "\(source) has no scores for group \(group.id) (\(group.kind), layer \(group.layer.map(String.init) ?? "-"), "
                    + "\(group.units) units): it was computed for another model"
            )
        }
        return s
    }

    /// The scores of an importance file already read from `source`.
    public init(file: ImportanceFile, source: String) {
        scores = Dictionary(file.groups.map { ($0.id, $0.scores) }, uniquingKeysWith: { a, _ in a })
        self.source = source
    }
}

extension Pipeline {
    func layerRange(_ text: String, layerCount: Int) throws -> ClosedRange<Int> {
        text == "all" ? 0...(layerCount - 1) : try StructuredPruner.parseLayers(text, layerCount: layerCount)
    }

    func calibrationSet(_ c: CalibrationConfig, tokenizer: any Tokenizer) throws -> CalibrationSet {
        let path = c.file ?? recipe.datasetPath("wikitext2")
        return try CalibrationSet(tokens: try tokens(path, tokenizer), windows: c.windows, length: c.length, offset: c.offset, source: path)
    }

    // MARK: load, graph

    func runLoad(dir: String) throws -> Outcome {
        modelPath = recipe.model
        let m = try freshModel()
        let c = m.model.config
        var s = StageSummary.Fields()
        s.model = recipe.model
        s.params = m.model.parameterCount
        s.nonEmbeddingParams = m.model.parameterCount - c.vocabSize * c.hiddenSize
        s.config = LayerShapes(c)
        try Self.write(StageSummary(s), to: dir + "/model.json")
        return Outcome(status: .ran, summary: StageSummary(s))
    }

    func runGraph(dir: String) throws -> Outcome {
        let m = try currentModel()
        let name = ((m.source as NSString).lastPathComponent as NSString).deletingPathExtension
        let graph = try DependencyGraphBuilder().build(model: m.model, name: name)
        try AtomicFile.write(try graph.jsonData(), to: dir + "/graph.json")
        try AtomicFile.write(graph.dot(), to: dir + "/graph.dot")
        var kinds: [String: Int] = [:]
        for g in graph.groups { kinds[g.kind, default: 0] += 1 }
        log(
            "  \(graph.groups.count) coupled groups: "
                + kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        var s = StageSummary.Fields()
        s.groups = graph.groups.count
        s.kinds = kinds
        return Outcome(status: .ran, summary: StageSummary(s))
    }
}
