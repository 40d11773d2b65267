import Foundation
import XCTest
@testable import TopiaryPipeline

/// Recipes are checked completely before any work starts: every mistake gets one error with its location.
final class RecipeTests: XCTestCase {
    var folder = ""
    var model = ""
    var data = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "topiary-recipes-\(getpid())-\(UUID().uuidString)"
        data = folder + "/data"
        for sub in ["wikitext-2-raw", "ptb", "zeroshot"] {
            try FileManager.default.createDirectory(atPath: data + "/" + sub, withIntermediateDirectories: true)
        }
        for f in ["wikitext-2-raw/test.txt", "ptb/ptb.test.txt", "ptb/ptb.valid.txt", "zeroshot/boolq.jsonl", "zeroshot/piqa.jsonl"] {
            FileManager.default.createFile(atPath: data + "/" + f, contents: Data("x\n".utf8))
        }
        model = folder + "/model.gguf"
        FileManager.default.createFile(atPath: model, contents: Data("GGUF".utf8))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: folder) }

    /// A valid recipe to break: line numbers below refer to this text.
    var good: String {
        """
        version: 1
        name: test
        model: model.gguf
        data: data
        stages:
          importance:
            criterion: taylor
            calibration: { windows: 4, length: 64 }
          prune:
            ratio: 0.2
            layers: 3-27
          finetune:
            data: wikitext2
            steps: 10
            lr: 1.0e-4
          merge: {}
          evaluate:
            perplexity: { datasets: [wikitext2, ptb], windows: 4 }
            tasks: [boolq]
        """
    }

    func parse(_ text: String) throws -> Recipe {
        let file = folder + "/recipe.yaml"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return try Recipe.load(path: file)
    }

    /// Parsing `text` fails with one error at `line` (and `column` when given) whose message contains `contains`.
    func assertRecipeError(
        _ text: String, line: Int?, column: Int? = nil, _ contains: String, file: StaticString = #filePath, at: UInt = #line
    ) {
        do {
            _ = try parse(text)
            XCTFail("no error for a recipe that should fail with “\(contains)”", file: file, line: at)
        } catch let e as RecipeError {
            let message = e.errorDescription ?? ""
            XCTAssertTrue(message.contains(contains), "“\(message)” does not mention “\(contains)”", file: file, line: at)
            XCTAssertTrue(message.hasPrefix(folder + "/recipe.yaml"), "the error does not name the file: \(message)", file: file, line: at)
            XCTAssertEqual(e.line, line, "wrong line in “\(message)”", file: file, line: at)
            if let column { XCTAssertEqual(e.column, column, "wrong column in “\(message)”", file: file, line: at) }
            XCTAssertFalse(message.contains("\n"), "one line expected: \(message)", file: file, line: at)
        } catch {
            XCTFail("not a RecipeError: \(error)", file: file, line: at)
        }
    }

    func testPruneAllocationSearchAndKMeansMergeParse() throws {
        let r = try parse(
            replacing("    ratio: 0.2\n", "    ratio: 0.2\n    allocation: search\n    search_evaluations: 12\n    merge: kmeans\n"))
        XCTAssertEqual(r.prune?.allocation, "search")
        XCTAssertEqual(r.prune?.searchEvaluations, 12)
        XCTAssertEqual(r.prune?.merge, "kmeans")
        // Unset, the new keys stay out of the stage's configuration (older runs keep their checkpoints).
        let plain = try parse(good)
        XCTAssertNil(plain.prune?.allocation)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(plain.prune!), as: UTF8.self).contains("allocation"))
        assertRecipeError(replacing("    ratio: 0.2\n", "    ratio: 0.2\n    allocation: searhc\n"), line: 11, "unknown value `searhc`")
        assertRecipeError(replacing("    ratio: 0.2\n", "    ratio: 0.2\n    merge: kmeanz\n"), line: 11, "unknown value `kmeanz`")
    }

    func testObsCriterionAndCompensateParse() throws {
        let r = try parse(replacing("criterion: taylor", "criterion: obs"))
        XCTAssertEqual(r.importance?.criterion, .obs)
        XCTAssertTrue(r.importance!.criterion.needsCalibration)
        XCTAssertNil(r.prune?.compensate)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(r.prune!), as: UTF8.self).contains("compensate"))
        let c = try parse(replacing("    ratio: 0.2\n", "    ratio: 0.2\n    compensate: true\n"))
        XCTAssertEqual(c.prune?.compensate, true)
        XCTAssertEqual(
            try parse(replacing("criterion: taylor", "criterion: variational-dropout")).importance?.criterion, .variationalDropout)
        assertRecipeError(
            replacing("criterion: taylor", "criterion: obs").replacingOccurrences(
                of: "    ratio: 0.2\n", with: "    ratio: 0.2\n    mode: global\n"),
            line: 9, "criterion `obs` chooses units layer by layer")
        assertRecipeError(
            replacing("    ratio: 0.2\n", "    ratio: 0.2\n    compensate: true\n    merge: kmeans\n"), line: 9, "compensate works with")
    }

    /// The export stage takes `topiary export --type`'s values, the K-quants and the Q4_K_M mix included.
    func testExportStageTakesTheKQuantTypes() throws {
        for type in ["q4_k_m", "q4_k", "q5_k", "q6_k", "Q4_K_M"] {
            let r = try parse(good + "\n  export: { format: gguf, type: \(type) }\n")
            let export = try XCTUnwrap(r.configurations[StageKind("export")!] as? ExportConfig)
            XCTAssertEqual(export.type, type)
            XCTAssertEqual(export.defaultFileName, "model-\(type).gguf")
        }
        assertRecipeError(good + "\n  export: { format: gguf, type: q3_k }\n", line: 20, "q3_k: unknown tensor type")
    }

    func replacing(_ old: String, _ new: String) -> String {
        precondition(good.contains(old), "test bug: \(old) not in the recipe")
        return good.replacingOccurrences(of: old, with: new)
    }

    func testGoodRecipeParsesWithPathsRelativeToTheRecipe() throws {
        let r = try parse(good)
        XCTAssertEqual(r.stages, [.load, .importance, .prune, .finetune, .merge, .evaluate])
        XCTAssertEqual(r.model, URL(fileURLWithPath: model).standardizedFileURL.path)
        XCTAssertEqual(r.data, URL(fileURLWithPath: data).standardizedFileURL.path)
        XCTAssertEqual(r.prune?.ratio, 0.2)
        XCTAssertEqual(r.importance?.calibration.windows, 4)
        XCTAssertEqual(r.importance?.calibration.offset, 32768)
        XCTAssertEqual(r.finetune?.training.steps, 10)
        XCTAssertEqual(r.finetune?.training.learningRate, 1e-4)
        XCTAssertEqual(r.evaluate?.perplexity?.datasets, ["wikitext2", "ptb"])
        XCTAssertEqual(r.evaluate?.tasks, ["boolq"])
    }

    // Twenty-odd broken recipes, each with its own located error.

    func testTypoInTopLevelKey() { assertRecipeError(replacing("stages:", "stgaes:"), line: 1, "missing `stages`") }
    func testUnknownTopLevelKey() {
        assertRecipeError(good + "\nsed: 3\n", line: 20, column: 1, "unknown key `sed` in recipe (did you mean `seed`?)")
    }
    func testTypoInStageKey() {
        assertRecipeError(
            replacing("calibration: {", "calibraton: {"), line: 8, column: 5,
            "unknown key `calibraton` in stages.importance (did you mean `calibration`?)")
    }
    func testUnknownStage() {
        assertRecipeError(replacing("  prune:", "  prnue:"), line: 9, column: 3, "unknown stage `prnue` (did you mean `prune`?)")
    }
    func testWrongTypeForNumber() {
        assertRecipeError(
            replacing("ratio: 0.2", "ratio: twenty"), line: 10, column: 12, "stages.prune.ratio must be a number, found 'twenty'")
    }
    func testRatioOutOfRange() {
        assertRecipeError(replacing("ratio: 0.2", "ratio: 1.5"), line: 10, "stages.prune.ratio = 1.5 must be < 1.0")
    }
    func testMissingModelFile() {
        assertRecipeError(replacing("model: model.gguf", "model: nowhere.gguf"), line: 3, column: 8, "nowhere.gguf does not exist")
    }
    func testMissingVersion() { assertRecipeError(replacing("version: 1\n", ""), line: 1, "missing `version`") }
    func testUnsupportedVersion() {
        assertRecipeError(replacing("version: 1", "version: 2"), line: 1, column: 10, "recipe version 2 is not supported")
    }
    func testInvalidYAML() {
        assertRecipeError(replacing("{ windows: 4, length: 64 }", "{ windows: 4, length: 64"), line: 9, "not valid YAML")
    }
    func testUnknownCriterionSuggestsTheNearest() {
        assertRecipeError(
            replacing("criterion: taylor", "criterion: taylr"), line: 7, column: 16, "unknown value `taylr` (did you mean `taylor`?)")
    }
    func testBadLayerRange() { assertRecipeError(replacing("layers: 3-27", "layers: 27-3"), line: 11, "must be `all` or a range A-B") }
    func testPruneWithoutImportance() {
        let text = good.replacingOccurrences(
            of: "  importance:\n    criterion: taylor\n    calibration: { windows: 4, length: 64 }\n", with: "")
        assertRecipeError(text, line: 6, column: 3, "stage `prune` needs an `importance` stage")
    }
    func testMergeWithoutFinetune() {
        let text = good.replacingOccurrences(of: "  finetune:\n    data: wikitext2\n    steps: 10\n    lr: 1.0e-4\n", with: "")
        assertRecipeError(text, line: 12, column: 3, "stage `merge` needs a `finetune` or `distill` stage")
    }
    func testNegativeSteps() {
        assertRecipeError(replacing("steps: 10", "steps: -5"), line: 14, column: 12, "stages.finetune.steps = -5 is out of range")
    }
    func testMissingTrainingData() {
        assertRecipeError(replacing("data: wikitext2", "data: corpus.txt"), line: 13, column: 11, "corpus.txt does not exist")
    }
    func testUnknownTaskSuggestsTheNearest() {
        assertRecipeError(
            replacing("tasks: [boolq]", "tasks: [boolq, hellaswg]"), line: 19, column: 20,
            "unknown value `hellaswg` (did you mean `hellaswag`?)")
    }
    func testStagesMustBeAMapping() {
        let text = "version: 1\nmodel: model.gguf\nstages:\n  - prune\n  - finetune\n"
        assertRecipeError(text, line: 4, column: 3, "stages must be a mapping")
    }
    func testDuplicateKey() {
        assertRecipeError(replacing("    steps: 10\n", "    steps: 10\n    steps: 20\n"), line: 14, column: 5, "duplicate key(s) `steps`")
    }
    func testBadNMPattern() {
        assertRecipeError(
            good.replacingOccurrences(of: "  finetune:", with: "  sparsify:\n    method: magnitude\n    nm: \"4:2\"\n  finetune:"),
            line: 14, column: 9, "expected N:M with 1 ≤ N < M")
    }
    func testListWhereANumberBelongs() {
        assertRecipeError(replacing("lr: 1.0e-4", "lr: [1, 2]"), line: 15, column: 9, "stages.finetune.lr must be a number, found a list")
    }
    func testEmptyRecipe() { assertRecipeError("# nothing here\n", line: nil, "the recipe is empty") }
    func testNoStages() { assertRecipeError("version: 1\nmodel: model.gguf\nstages: {}\n", line: 3, "the recipe has no stages to run") }
    func testZeroCalibrationWindows() {
        assertRecipeError(replacing("windows: 4, length", "windows: 0, length"), line: 8, "windows = 0 is out of range")
    }
    func testUnknownPerplexityDataset() {
        assertRecipeError(
            replacing("datasets: [wikitext2, ptb]", "datasets: [wikitext, ptb]"), line: 18,
            "unknown value `wikitext` (did you mean `wikitext2`?)")
    }
    func testMissingDataFolder() { assertRecipeError(replacing("data: data", "data: elsewhere"), line: 6, column: 3, "reads ") }
    func testUnknownAllocation() {
        assertRecipeError(
            good.replacingOccurrences(of: "  finetune:", with: "  sparsify:\n    method: wanda\n    allocation: alphaprune\n  finetune:"),
            line: 14, "unknown value `alphaprune` (did you mean `alphapruning`?)")
    }
    func testBadRunName() { assertRecipeError(replacing("name: test", "name: ../escape"), line: 2, "must be letters, digits") }
    func testAliasBombAndDeepNestingFailFast() {
        var bomb = ""
        var previous = "[\"lol\"" + String(repeating: ", \"lol\"", count: 8) + "]"
        for name in "abcdefghi" {
            bomb += "x\(name): &\(name) \(previous)\n"
            previous = "[" + Array(repeating: "*\(name)", count: 9).joined(separator: ", ") + "]"
        }
        bomb += "version: 1\nmodel: model.gguf\nstages:\n  evaluate:\n    tasks: *i\n"
        let start = Date()
        XCTAssertThrowsError(try parse(bomb)) { e in
            XCTAssertTrue(
                (e as? RecipeError)?.errorDescription?.contains("stages.evaluate.tasks must be a list of strings, found a list") == true,
                "\(e)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        let deep =
            "version: 1\nmodel: model.gguf\nstages: " + String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000) + "\n"
        assertRecipeError(deep, line: 3, "Maximum nesting level reached")
    }

    func testRecipeFileMissing() {
        XCTAssertThrowsError(try Recipe.load(path: folder + "/absent.yaml")) { e in
            XCTAssertTrue((e as? RecipeError)?.errorDescription?.contains("absent.yaml: no such recipe file") == true, "\(e)")
        }
    }

    /// The recipes shipped in recipes/ are valid (paths are not checked: the model may not be fetched).
    func testShippedRecipesParse() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let files = try FileManager.default.contentsOfDirectory(atPath: root + "/recipes").filter { $0.hasSuffix(".yaml") }
        XCTAssertTrue(files.contains("quickstart.yaml"))
        for f in files {
            let text = try String(contentsOfFile: root + "/recipes/" + f, encoding: .utf8)
            XCTAssertNoThrow(try Recipe.parse(text, file: root + "/recipes/" + f, checkFiles: false), f)
        }
    }

    func testSuggestions() {
        XCTAssertEqual(suggestion(for: "calibraton", among: ["calibration", "criterion"]), "calibration")
        XCTAssertEqual(suggestion(for: "zzzz", among: ["calibration", "criterion"]), nil)
        XCTAssertEqual(levenshtein("kitten", "sitting"), 3)
    }

    /// Without a criterion, importance is obs on 32 × 512 tokens (the best Topiary knows); a named first-order criterion
    /// keeps LLM-Pruner's 10 × 128; given windows win.
    func testDefaultCriterionIsObsWithItsCalibration() throws {
        let plain = try parse(replacing("    criterion: taylor\n    calibration: { windows: 4, length: 64 }\n", "    seed: 1\n"))
        XCTAssertEqual(plain.importance?.criterion, .obs)
        XCTAssertEqual(plain.importance?.calibration.windows, 32)
        XCTAssertEqual(plain.importance?.calibration.length, 512)
        let taylor = try parse(replacing("    calibration: { windows: 4, length: 64 }\n", ""))
        XCTAssertEqual(taylor.importance?.criterion, .taylor)
        XCTAssertEqual(taylor.importance?.calibration.windows, 10)
        XCTAssertEqual(taylor.importance?.calibration.length, 128)
        XCTAssertEqual(try parse(good).importance?.calibration.windows, 4)
    }

}
