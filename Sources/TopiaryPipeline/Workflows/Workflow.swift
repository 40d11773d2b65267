import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels
import TopiaryPrune
import TopiaryTokenizers

/// Where a workflow's progress bars and log lines go: the command line draws them on the terminal; a run too, or
/// nowhere (tests).
public struct WorkflowOutput {
    public var showProgress: Bool
    public var log: (String) -> Void

    public init(showProgress: Bool = true, log: @escaping (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.showProgress = showProgress
        self.log = log
    }

    public func progress(_ label: String, total: Int, unit: String) -> ProgressBar {
        ProgressBar(label, total: total, unit: unit, enabled: showProgress)
    }

    /// The terminal's (stderr).
    public static var terminal: WorkflowOutput { WorkflowOutput() }
}

/// A text file tokenized for a workflow: its path and tokens.
public struct TokenizedText {
    public var path: String
    public var tokens: [Int32]

    public init(path: String, tokens: [Int32]) {
        self.path = path
        self.tokens = tokens
    }

    /// The file at `path` (a perplexity dataset's file under `data` read the way its loader reads it).
    public static func read(_ path: String, data: String?, tokenizer: any Tokenizer) throws -> TokenizedText {
        var text = try readText(path)
        if let data, let set = PerplexityDataset.allCases.first(where: { $0.path(data: data) == path }) { text = set.prepare(text) }
        return TokenizedText(path: path, tokens: tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false).map(Int32.init))
    }
}

extension CalibrationConfig {
    /// The window length against the model's context and one calibration pass (`bytes`) against the memory.
    public func checkSizes(_ loaded: LoadedModel, bytes: Int?) throws {
        try ResourceCheck.sequence(length, what: "--calibration-length \(length)", config: loaded.model.config, model: loaded.source)
        guard loaded.model.store == nil, let bytes else { return }
        try ResourceCheck.memory(bytes, what: "calibration over --calibration-windows \(windows) × --calibration-length \(length) tokens")
    }

    /// The calibration windows this configuration names in `text`.
    public func set(_ text: TokenizedText) throws -> CalibrationSet {
        try CalibrationSet(tokens: text.tokens, windows: windows, length: length, offset: offset, source: text.path)
    }
}
