import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

extension DependencyGraphBuilder {
    /// Traces one forward pass of `model` on a few tokens and builds its dependency graph.
    public func build(model: any LanguageModel, name: String = "model") throws -> DependencyGraph {
        let g = Graph(tracingOnly: true)
        let vocab = model.config.vocabSize
        let tokens = (0..<4).map { Int32(($0 * 31 + 1) % vocab) }
        let out = try model.forward(g, tokens: tokens, batch: 1, cache: nil, logits: .all)
        return try build(records: g.records, outputs: [out.node], modelName: name)
    }
}

extension DependencyGraph {
    /// JSON with a top-level `groups` array (pretty, sorted keys).
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// Graphviz: one box per group, one ellipse per tensor, an edge per member labelled with axis and
    /// indices per unit.
    public func dot() -> String {
        var lines = ["digraph \"\(model)\" {", "  rankdir=LR;", "  node [fontname=\"Helvetica\", fontsize=10];"]
        var tensors = Set<String>()
        let colors = ["attention": "lightblue", "mlp": "palegreen", "hidden": "khaki", "other": "lightgrey"]
        for g in groups {
            let label = "\(g.kind) #\(g.id)\\n\(g.layer.map { "layer \($0), " } ?? "")\(g.units) units"
            lines.append("  g\(g.id) [shape=box, style=filled, fillcolor=\(colors[g.kind] ?? "white"), label=\"\(label)\"];")
            for m in g.members {
                tensors.insert(m.tensor)
                lines.append("  g\(g.id) -> \"\(m.tensor)\" [label=\"axis \(m.axis) ×\(m.channelsPerUnit)\"];")
            }
        }
        for t in tensors.sorted() { lines.append("  \"\(t)\" [shape=ellipse];") }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}
