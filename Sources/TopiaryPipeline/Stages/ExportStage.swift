import Foundation
import TopiaryExport
import TopiaryModels
import TopiaryRecover

extension ExportConfig: StageConfiguration {}

/// Writes the run's final model for another runtime: `NN-export/model-TYPE.gguf` for llama.cpp, or
/// `NN-export/model-hf/` for transformers (unmerged adapters are merged into the exported weights), with the exporter's
/// report in `export.json`.
struct ExportStage: PipelineStage {
    static let name = "export"

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        var c = ExportConfig()
        c.format = try s.choice("format", ExportConfig.formats) ?? c.format
        c.type = try s.string("type")
        c.arch = try s.string("arch") ?? c.arch
        c.name = try s.string("name")
        c.allowTopiaryFormat = try s.bool("allow_topiary_format") ?? c.allowTopiaryFormat
        try context.validated(name) { try c.validate() }
        return c
    }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome {
        let c = pipeline.recipe.configurations[StageKind(name)!] as! ExportConfig
        let m = try ModelLoader.load(path: pipeline.modelPath)
        if let adapters = pipeline.adaptersPath { try LoRATrainer.loadAdapters(directory: adapters, into: m.model) }
        let report = try c.export(m, to: dir + "/" + c.defaultFileName)
        for note in report.notes { pipeline.log("  note: \(note)") }
        pipeline.log("  wrote \(dir)/\(c.defaultFileName): \(report.format), \(report.architecture), \(report.bytes.formatted()) bytes")
        try Pipeline.write(report, to: dir + "/export.json")
        var f = StageSummary.Fields()
        f.params = m.model.parameterCount
        return Pipeline.Outcome(status: .ran, summary: StageSummary(f))
    }
}
