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

extension PrecomputedScores {
    /// The scores of an importance file (the importance stage's `importance.json`) already read from `source`.
    public init(file: ImportanceFile, source: String) {
        self.init(Dictionary(file.groups.map { ($0.id, $0.scores) }, uniquingKeysWith: { a, _ in a }), source: source)
    }
}

extension Pipeline {
    func calibrationSet(_ c: CalibrationConfig, tokenizer: any Tokenizer) throws -> CalibrationSet {
        let path = c.file ?? recipe.datasetPath("wikitext2")
        return try CalibrationSet(tokens: try tokens(path, tokenizer), windows: c.windows, length: c.length, offset: c.offset, source: path)
    }

}
