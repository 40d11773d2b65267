import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Traces the model and writes its coupled groups (`graph.json`, `graph.dot`).
struct GraphStage: PipelineStage {
    static let name = "graph"
    static func note(_ summary: StageSummary) -> String { "\(PipelineStages.number(summary.fields.groups)) coupled groups" }
    static func read(_ reader: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration { NoSettings() }
    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome { try pipeline.runGraph(dir: dir) }
}

extension Pipeline {
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
