import Foundation
import TopiaryCore
import TopiaryEval

/// The sweep's methods × levels table, its plot and its generations.
struct SweepTable {
    let sweep: SweepFile

    var methods: [String] { sweep.methods }
    var levels: [Double] { sweep.levels }
    var dataset: String { sweep.datasets.first ?? "wikitext2" }
    var points: [SweepPoint] { sweep.points }

    func point(_ method: String, _ level: Double) -> SweepPoint? {
        points.first { $0.method == method && abs($0.level - level) < 1e-9 }
    }

    func cell(_ method: String, _ level: Double) -> String {
        guard let p = point(method, level) else { return "" }
        if p.notApplicable != nil { return "n/a" }
        guard let v = p.perplexity[dataset] else { return "" }
        return v >= 1e6 ? String(format: "%.3g", v) : String(format: "%.2f", v)
    }

    var markdown: String {
        var md = "| method | " + levels.map { String(format: "%g", $0) }.joined(separator: " | ") + " |\n"
        md += "|---|" + levels.map { _ in "---:|" }.joined() + "\n"
        for m in methods { md += "| \(m) | " + levels.map { cell(m, $0) }.joined(separator: " | ") + " |\n" }
        // Why cells are not applicable: each reason once (group and layer numbers aside), with its methods and first level.
        var reasons: [(reason: String, methods: [String], level: Double)] = []
        for m in methods {
            for l in levels {
                guard let r = point(m, l)?.notApplicable else { continue }
                let general = r.replacingOccurrences(of: #"group \d+ \(layer \d+\)"#, with: "group", options: .regularExpression)
                if let i = reasons.firstIndex(where: { $0.reason == general }) {
                    if !reasons[i].methods.contains(m) { reasons[i].methods.append(m) }
                } else {
                    reasons.append((general, [m], l))
                }
                break
            }
        }
        for r in reasons {
            md += "\nn/a — \(r.methods.joined(separator: ", ")): \(r.reason) (from level \(String(format: "%g", r.level)))\n"
        }
        return md
    }

    var svg: String {
        let styles = SVGLinePlot.styles(methods.count)
        let series = methods.enumerated().map { i, m in
            SVGLinePlot.Series(
                name: m, points: levels.compactMap { l in point(m, l)?.perplexity[dataset].map { (l, $0) } },
                color: styles[i].color, dash: styles[i].dash)
        }
        var plot = SVGLinePlot(
            title: "Perplexity vs pruned level (\(dataset))",
            xLabel: "level (fraction of linear weights; structured: of non-embedding parameters)",
            yLabel: "perplexity (log scale)", series: series, logY: true)
        plot.yCap = 1e6  // beyond a million the model is noise; the table keeps the numbers
        return plot.render()
    }

    /// Per level, each method's greedy completion.
    var generations: [(method: String, level: Double, text: String)] {
        points.compactMap { p in p.generation.map { (p.method, p.level, $0) } }
    }

    func write(directory: String) throws {
        var csv = "method,level," + dataset + "_ppl,achieved_sparsity,generation\n"
        func text(_ v: Double?) -> String { v.map { "\($0)" } ?? "" }
        for p in points {
            let g = (p.generation ?? "").replacingOccurrences(of: "\"", with: "\"\"")
            csv += "\(p.method),\(p.level),\(text(p.perplexity[dataset])),\(text(p.achievedSparsity)),\"\(g)\"\n"
        }
        try AtomicFile.write(csv, to: directory + "/sweep.csv")
        try AtomicFile.write(markdown, to: directory + "/sweep.md")
        try AtomicFile.write(svg, to: directory + "/sweep.svg")
    }
}

/// `report.md` and a self-contained `report.html` (inline SVG, no scripts, no network) from a run folder.
public struct Report {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    struct Section {
        var title: String
        var markdown: String
        var html: String
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">", with: "&gt;")
    }

    static let labels = ["base": "dense (original)", "pruned": "pruned, before recovery", "final": "final (recovered)"]

    public func write() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw PipelineError("\(directory): no such run directory")
        }
        let path = directory + "/results.json"
        guard FileManager.default.fileExists(atPath: path) else { throw PipelineError("\(path): missing; run the recipe first") }
        guard let results = try Pipeline.read(RunResults.self, from: path) else {
            throw PipelineError("\(path): exists but cannot be read (a directory, or no permission)")
        }
        let stages = results.stages
        func stageDir(_ name: String) -> String? { stages.first { $0.stage == name }?.directory }
        func summary(_ name: String) -> StageSummary.Fields? { stages.first { $0.stage == name }?.summary.fields }
        var sections: [Section] = []
        var svgFiles: [String: String] = [:]

        // Results table.
        let models = results.models
        let order = ["base", "pruned", "final"].filter { models[$0] != nil }
        if !order.isEmpty {
            func metricsOf(_ l: String) -> Metrics { models[l]?.metrics ?? [:] }
            var columns: [(key: String, title: String, percent: Bool)] = [("params", "params", false)]
            for d in Recipe.perplexityDatasets {
                let k = d.replacingOccurrences(of: "-", with: "_") + "_ppl"
                if order.contains(where: { metricsOf($0)[k] != nil }) {
                    let shape = order.lazy.compactMap { models[$0]?.details.perplexity[d] }.first.map { " (\($0.windows) × \($0.window))" }
                    columns.append((k, (d == "wikitext2" ? "WikiText-2 ↓" : d.uppercased() + " ↓") + (shape ?? ""), false))
                }
            }
            for t in ZeroShotTasks.names where order.contains(where: { metricsOf($0)[t + "_acc"] != nil }) {
                let normed = order.contains { metricsOf($0)[t + "_acc_norm"] != nil }
                columns.append((normed ? t + "_acc_norm" : t + "_acc", t + (normed ? " (norm)" : ""), true))
            }
            if order.contains(where: { metricsOf($0)["average_acc"] != nil }) { columns.append(("average_acc", "average", true)) }
            // Size and speed get their own table (the quality table is wide already).
            let speed = order.contains { metricsOf($0)["forward_tokens_per_second"] != nil }
            let speedColumns: [(key: String, title: String, percent: Bool)] = [
                ("params", "params", false), ("file_bytes", "on disk (MB)", false),
                ("forward_tokens_per_second", "prompt tok/s ↑", false), ("decode_tokens_per_second", "decode tok/s ↑", false),
            ]
            // An accuracy with its standard error, marked against the dense model: ▲/▼ when it is higher/lower by at least
            // two standard errors of the difference, ≈ when the difference is within that noise.
            var comparisons = 0, significant = 0
            func format(_ label: String, _ c: (key: String, title: String, percent: Bool)) -> String {
                let m = metricsOf(label)
                guard let v = m[c.key] else { return "–" }
                if c.key == "params" { return Int(v).formatted() }
                if c.key == "file_bytes" { return String(format: "%.1f", v / 1e6) }
                if c.key.hasSuffix("_per_second") {
                    // The speed-up over the dense model, measured side by side in the same run.
                    let ratio = label == "base" ? nil : metricsOf("base")[c.key].map { v / $0 }
                    return String(format: "%.1f", v) + (ratio.map { String(format: " (%.2f×)", $0) } ?? "")
                }
                guard c.percent else { return String(format: "%.2f", v) }
                guard let se = m[c.key + "_stderr"] else { return String(format: "%.2f", 100 * v) }
                var text = String(format: "%.2f ± %.2f", 100 * v, 100 * se)
                if label != "base", let b = metricsOf("base")[c.key], let bse = metricsOf("base")[c.key + "_stderr"] {
                    comparisons += 1
                    if ZeroShotEvaluator.differ(v, se, b, bse) {
                        significant += 1
                        text += v > b ? " ▲" : " ▼"
                    } else {
                        text += " ≈"
                    }
                }
                return text
            }
            func table(_ columns: [(key: String, title: String, percent: Bool)]) -> (md: String, html: String) {
                var md =
                    "| model | " + columns.map(\.title).joined(separator: " | ") + " |\n|---|" + columns.map { _ in "---:|" }.joined()
                    + "\n"
                var html = "<table><tr><th>model</th>" + columns.map { "<th>\(Self.escape($0.title))</th>" }.joined() + "</tr>\n"
                for l in order {
                    let cells = columns.map { format(l, $0) }
                    md += "| \(Self.labels[l]!) | " + cells.joined(separator: " | ") + " |\n"
                    html +=
                        "<tr><td>\(Self.labels[l]!)</td>" + cells.map { "<td class=\"num\">\(Self.escape($0))</td>" }.joined() + "</tr>\n"
                }
                return (md, html + "</table>\n")
            }
            let (md, html) = table(columns)
            var note =
                "Perplexity: lower is better. Accuracy in %: acc_norm where lm-evaluation-harness reports it (PIQA, HellaSwag, ARC, "
                + "OpenBookQA), acc otherwise."
            if let limit = models[order[0]]?.details.limit {
                note += " Zero-shot scores use the first \(limit) items of each task only."
            }
            if comparisons > 0 {
                note +=
                    " ± is the standard error (lm-evaluation-harness's; the average's is √(Σ seᵢ²)/n). "
                    + "Against the dense model: ▲/▼ higher/lower by at least two standard errors of the difference; "
                    + "≈ within that, not significant."
                if significant == 0 {
                    note +=
                        " This evaluation is too small to tell the models apart on zero-shot accuracy: no difference from the dense "
                        + "model reaches two standard errors, so the accuracies do not rank them (more items per task would)."
                }
            }
            if order.contains(where: { metricsOf($0)["hellaswag_acc"] != nil }) {
                note += " HellaSwag prompts come from llama.cpp's derived file: its contexts do not capitalise `ctx_b` as lm-eval does."
            }
            sections.append(
                Section(title: "Results", markdown: md + "\n" + note + "\n", html: html + "<p class=\"note\">\(Self.escape(note))</p>\n"))
            if speed {
                let t = table(speedColumns)
                let speedNote =
                    "Speed: Topiary's fp32 forward on this machine, measured side by side in this run (the models interleaved, medians "
                    + "of the repeats; in parentheses the ratio to the dense model). Prompt: one forward over the evaluate stage's "
                    + "prompt length; decode: single-token steps with the KV cache. On disk: the files as stored (the dense model as "
                    + "its source file, e.g. a quantized GGUF; stage checkpoints in fp32)."
                sections.append(
                    Section(
                        title: "Size and speed", markdown: t.md + "\n" + speedNote + "\n",
                        html: t.html + "<p class=\"note\">\(Self.escape(speedNote))</p>\n"))
            }
        }

        // Stages.
        var md = "| # | stage | status | seconds | notes |\n|---:|---|---|---:|---|\n"
        var html = "<table><tr><th>#</th><th>stage</th><th>status</th><th>seconds</th><th>notes</th></tr>\n"
        for (i, s) in stages.enumerated() {
            let notes = PipelineStages.named(s.stage)?.note(s.summary) ?? ""
            let secs = String(format: "%.1f", s.seconds)
            md += "| \(i + 1) | \(s.stage) | \(s.status.rawValue) | \(secs) | \(notes) |\n"
            html +=
                "<tr><td>\(i + 1)</td><td>\(s.stage)</td><td>\(s.status.rawValue)</td><td "
                + "class=\"num\">\(secs)</td><td>\(Self.escape(notes))</td></tr>\n"
        }
        sections.append(Section(title: "Stages", markdown: md, html: html + "</table>\n"))

        // Per-layer structure after pruning.
        if let p = summary("prune"), let before = p.before, let after = p.after {
            let (hb, ha, fb, fa) = (before.heads, after.heads, before.intermediateSizes, after.intermediateSizes)
            let chart = SVGBarChart(
                title: "Kept per layer after pruning (% of the original)", xLabel: "layer", yLabel: "% kept",
                categories: (0..<ha.count).map(String.init),
                series: [
                    .init(name: "attention heads", values: zip(ha, hb).map { 100 * Double($0) / Double(max($1, 1)) }, color: "#1f77b4"),
                    .init(name: "MLP channels", values: zip(fa, fb).map { 100 * Double($0) / Double(max($1, 1)) }, color: "#ff7f0e"),
                ])
            var c = chart
            c.yMax = 100
            let svg = c.render()
            svgFiles["report-layers.svg"] = svg
            var t = "| layer | heads before → after | FFN before → after |\n|---:|---|---|\n"
            for l in 0..<ha.count where ha[l] != hb[l] || fa[l] != fb[l] {
                t += "| \(l) | \(hb[l]) → \(ha[l]) | \(fb[l]) → \(fa[l]) |\n"
            }
            sections.append(
                Section(
                    title: "Per-layer structure", markdown: "![kept per layer](report-layers.svg)\n\n" + t,
                    html: svg + "<details><summary>table</summary>\(Self.markdownTableToHTML(t))</details>\n"))
        }
        if let s = summary("sparsify"), let ratios = s.layerSparsity {
            let svg = SVGBarChart(
                title: "Per-layer sparsity (\(s.allocation ?? ""))", xLabel: "layer", yLabel: "sparsity",
                categories: (0..<ratios.count).map(String.init), series: [.init(name: "sparsity", values: ratios, color: "#2ca02c")]
            ).render()
            svgFiles["report-sparsity.svg"] = svg
            sections.append(Section(title: "Per-layer sparsity", markdown: "![per-layer sparsity](report-sparsity.svg)\n", html: svg))
        }

        // Importance distribution (none for a criterion that chooses units while removing them, as obs: it scores nothing
        // ahead).
        if let dir = stageDir("importance"), let imp = try Pipeline.read(ImportanceFile.self, from: dir + "/importance.json"),
            imp.groups.contains(where: { !$0.scores.isEmpty })
        {
            var byKind: [String: [Double]] = [:]
            for g in imp.groups { byKind[g.kind, default: []] += g.scores.map { log10(max($0, 1e-30)) } }
            byKind = byKind.filter { !$0.value.isEmpty }
            let colors = ["attention": "#1f77b4", "mlp": "#ff7f0e"]
            let svg = SVGBarChart.histogram(
                title: "Importance of prunable units (\(imp.criterion) · \(imp.aggregation))",
                xLabel: "log10 importance",
                samples: byKind.sorted { $0.key < $1.key }.map {
                    ($0.key == "mlp" ? "MLP channels" : "attention KV groups", $0.value, colors[$0.key] ?? "#777")
                }
            ).render()
            svgFiles["report-importance.svg"] = svg
            sections.append(Section(title: "Importance distribution", markdown: "![importance](report-importance.svg)\n", html: svg))
        }

        // LoRA loss curve (the finetune or the distill stage).
        let recovery = ["finetune", "distill"].first { stageDir($0) != nil }
        if let recovery, let dir = stageDir(recovery), let svg = try? String(contentsOfFile: dir + "/loss.svg", encoding: .utf8) {
            svgFiles["report-loss.svg"] = svg
            var note = ""
            if let s = summary(recovery) {
                note = String(format: "%d steps; loss %.4f → %.4f", s.steps ?? 0, s.firstLoss ?? .nan, s.loss ?? .nan)
                if let v = s.validationLoss { note += String(format: "; validation loss %.4f", v) }
            }
            sections.append(
                Section(
                    title: recovery == "distill" ? "Recovery by distillation" : "LoRA recovery",
                    markdown: "![loss](report-loss.svg)\n\n\(note)\n", html: svg + "<p>\(Self.escape(note))</p>\n"))
        }

        // Level sweep.
        if let dir = stageDir("sweep"), let sweep = try Pipeline.read(SweepFile.self, from: dir + "/sweep.json") {
            let t = SweepTable(sweep: sweep)
            svgFiles["report-sweep.svg"] = t.svg
            var gm = "| method | level | completion |\n|---|---:|---|\n"
            for g in t.generations {
                gm +=
                    "| \(g.method) | \(g.level) | "
                    + "\(g.text.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "|", with: "\\|")) |\n"
            }
            sections.append(
                Section(
                    title: "Level sweep", markdown: "![sweep](report-sweep.svg)\n\n" + t.markdown + "\nGreedy completions:\n\n" + gm,
                    html: t.svg + Self.markdownTableToHTML(t.markdown)
                        + "<details><summary>greedy completions</summary>\(Self.markdownTableToHTML(gm))</details>\n"))
        }

        // Generations side by side.
        let gens = order.map { l in (l, models[l]?.details.generations ?? []) }
        if let prompts = gens.first(where: { !$0.1.isEmpty })?.1.map(\.prompt), !prompts.isEmpty {
            var md =
                "| prompt | " + gens.map { Self.labels[$0.0]! }.joined(separator: " | ") + " |\n|---|" + gens.map { _ in "---|" }.joined()
                + "\n"
            var html = "<table class=\"gen\"><tr><th>prompt</th>" + gens.map { "<th>\(Self.labels[$0.0]!)</th>" }.joined() + "</tr>\n"
            for p in prompts {
                let cells = gens.map { g in g.1.first { $0.prompt == p }?.completion ?? "–" }
                md +=
                    "| \(p) | "
                    + cells.map { $0.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "|", with: "\\|") }.joined(
                        separator: " | ") + " |\n"
                html += "<tr><td><b>\(Self.escape(p))</b></td>" + cells.map { "<td>\(Self.escape($0))</td>" }.joined() + "</tr>\n"
            }
            sections.append(Section(title: "Generations (greedy)", markdown: md, html: html + "</table>\n"))
        }

        let title = "Topiary run: \(results.recipe)"
        let total = stages.reduce(0.0) { $0 + $1.seconds }
        let headerLines: [(String, String)] = [
            ("Model", results.model), ("Recipe", results.recipeFile),
            ("Final model", results.finalModel), ("Finished", results.finished),
            ("Stage time", String(format: "%.1f s (the runs that produced these results)", total)),
        ]
        let header = headerLines.map { "\($0.0): `\($0.1)`" }.joined(separator: "  \n") + "\n"
        var mdOut = "# \(title)\n\n" + header + "\n"
        for s in sections { mdOut += "## \(s.title)\n\n\(s.markdown)\n" }
        var htmlOut = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(Self.escape(title))</title>
            <style>
            body { font-family: Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
            h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
            table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
            th, td { border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; }
            th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
            table.gen td { max-width: 320px; } .note { color: #555; font-size: .9em; } code { background: #f4f4f4; padding: 0 .2em; }
            svg { display: block; margin: .6em 0; max-width: 100%; height: auto; }
            </style></head><body>
            <h1>\(Self.escape(title))</h1>
            <p>\(headerLines.map { "\(Self.escape($0.0)): <code>\(Self.escape($0.1))</code>" }.joined(separator: "<br>\n"))</p>

            """
        for s in sections { htmlOut += "<h2>\(Self.escape(s.title))</h2>\n\(s.html)\n" }
        htmlOut += "</body></html>\n"
        for (name, svg) in svgFiles { try AtomicFile.write(svg, to: directory + "/" + name) }
        try AtomicFile.write(mdOut, to: directory + "/report.md")
        try AtomicFile.write(htmlOut, to: directory + "/report.html")
    }

    /// A Markdown pipe table as an HTML table (for the tables both reports share).
    static func markdownTableToHTML(_ md: String) -> String {
        let rows = md.split(separator: "\n").filter { $0.hasPrefix("|") && !$0.hasPrefix("|---") && !$0.hasPrefix("|:") }
        var html = "<table>"
        for (i, r) in rows.enumerated() {
            let cells = r.dropFirst().dropLast().components(separatedBy: " | ").map {
                $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "\\|", with: "|")
            }
            let tag = i == 0 ? "th" : "td"
            html += "<tr>" + cells.map { "<\(tag)>\(escape($0))</\(tag)>" }.joined() + "</tr>"
        }
        return html + "</table>\n"
    }
}
