import Foundation
import TopiaryExport
import TopiaryModels

/// A model written for another runtime: `topiary export`, and a recipe's export stage.
public struct ExportConfig: Codable, Sendable, Equatable {
    public static let formats = ["gguf", "safetensors-hf"]

    /// `gguf` (llama.cpp) or `safetensors-hf` (transformers).
    public var format = "gguf"
    /// GGUF tensor type of the matrices (f32, f16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k) or the mix q4_k_m; nil: f32.
    public var type: String?
    /// GGUF architecture: auto (llama when the layers are uniform, deci when they differ), llama or deci.
    public var arch = "auto"
    /// `general.name` of the GGUF file (nil: the source's).
    public var name: String?
    /// safetensors-hf: write a model whose layers differ (which transformers cannot load) as a Topiary checkpoint instead
    /// of refusing it.
    public var allowTopiaryFormat = false

    public init() {}

    /// The file or folder name an export of this format gets inside a folder.
    public var defaultFileName: String { format == "gguf" ? "model-\(type ?? "f32").gguf" : "model-hf" }

    public func validate() throws {
        try Require.that(Self.formats.contains(format), "format", format, ": unknown format (expected gguf or safetensors-hf)")
        if let type {
            try Require.that(
                (try? GGUFExporter.parseType(type)) != nil, "type", type,
                ": unknown tensor type (expected one of \(GGUFExporter.typeNames.joined(separator: ", ")))")
        }
        try Require.that(
            (try? GGUFArchitecture(parsing: arch)) != nil, "arch", arch, ": unknown GGUF architecture (expected auto, llama or deci)")
        if format != "gguf" {
            try Require.that(
                type == nil || type!.lowercased() == "f32", "type", type, "applies to {format} gguf (safetensors-hf is F32)")
            try Require.that(arch == "auto", "arch", nil, "{arch} applies to {format} gguf")
        } else {
            try Require.that(!allowTopiaryFormat, "allow_topiary_format", nil, "{allow_topiary_format} applies to {format} safetensors-hf")
        }
    }

    /// Writes `loaded` (its adapters, if any, merged by the exporters) to `out`.
    public func export(_ loaded: LoadedModel, to out: String) throws -> ExportReport {
        try validate()
        if format == "gguf" {
            let options = GGUFExportOptions(
                type: try GGUFExporter.parseType(type ?? "f32"), architecture: try GGUFArchitecture(parsing: arch), name: name)
            return try GGUFExporter.export(model: loaded.model, sourceMetadata: loaded.metadata, to: out, options: options)
        }
        return try HFExporter.export(
            model: loaded.model, sourceMetadata: loaded.metadata, to: out, allowTopiaryFormat: allowTopiaryFormat)
    }
}
