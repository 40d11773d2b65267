import Foundation
@testable import TopiaryEval
import XCTest

final class TaskLoaderTests: XCTestCase {
    func write(_ name: String, _ text: String) -> String {
        let dir = NSTemporaryDirectory() + "topiary-tasks-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let p = dir + "/" + name
        FileManager.default.createFile(atPath: p, contents: Data(text.utf8))
        return p
    }

    func testPromptsAreLmEvalStyle() throws {
        let arc = write(
            "arc.jsonl",
            #"{"id":"x","question":{"stem":"What is 2+2?","choices":[{"text":"3","label":"1"},{"text":"4","label":"2"}]},"answerKey":"2"}"#
                + "\n")
        let item = try ZeroShotTasks.task(named: "arc_easy").items(from: arc, limit: nil)[0]
        XCTAssertEqual(item.contexts, ["Question: What is 2+2?\nAnswer:", "Question: What is 2+2?\nAnswer:"])
        XCTAssertEqual(item.continuations, [" 3", " 4"])
        XCTAssertEqual(item.gold, 1)  // numeric labels are looked up, not assumed A–D

        let wg = write(
            "wg.jsonl",
            #"{"sentence":"Sarah was better than Maria so _ got the easier cases.","option1":"Sarah","option2":"Maria","answer":"2"}"#
                + "\n")
        let w = try ZeroShotTasks.task(named: "winogrande").items(from: wg, limit: nil)[0]
        XCTAssertEqual(w.contexts, ["Sarah was better than Maria so Sarah", "Sarah was better than Maria so Maria"])
        XCTAssertEqual(w.continuations, [" got the easier cases.", " got the easier cases."])
        XCTAssertEqual(w.gold, 1)

        let bq = write("bq.jsonl", #"{"question":"is it","title":"t","answer":true,"passage":"P."}"# + "\n")
        let b = try ZeroShotTasks.task(named: "boolq").items(from: bq, limit: nil)[0]
        XCTAssertEqual(b.contexts[0], "P.\nQuestion: is it?\nAnswer:")
        XCTAssertEqual(b.continuations, [" no", " yes"])
        XCTAssertEqual(b.gold, 1)

        let hs = write("hs.txt", "Ctx: a man\n2\nruns.\nwalks.\nsits.\nsleeps.\n")
        let h = try ZeroShotTasks.task(named: "hellaswag").items(from: hs, limit: nil)[0]
        XCTAssertEqual(h.continuations, [" runs.", " walks.", " sits.", " sleeps."])
        XCTAssertEqual(h.choiceTexts, ["runs.", "walks.", "sits.", "sleeps."])
        XCTAssertEqual(h.gold, 2)
    }

    func testBadFilesNameTheFileAndLine() throws {
        let bad = write("bad.jsonl", #"{"goal":"g","sol1":"a","sol2":"b","label":0}"# + "\n{not json\n")
        XCTAssertThrowsError(try ZeroShotTasks.task(named: "piqa").items(from: bad, limit: nil)) {
            XCTAssertEqual($0.localizedDescription, "\(bad):2: not a JSON object")
        }
        let missingField = write("mf.jsonl", #"{"goal":"g","sol1":"a","label":0}"# + "\n")
        XCTAssertThrowsError(try ZeroShotTasks.task(named: "piqa").items(from: missingField, limit: nil)) {
            XCTAssertEqual($0.localizedDescription, "\(missingField):1: missing or invalid 'sol2'")
        }
        XCTAssertThrowsError(try ZeroShotTasks.task(named: "piqa").items(from: "/nope/piqa.jsonl", limit: nil)) {
            XCTAssertEqual($0 as? TaskError, .missingFile("/nope/piqa.jsonl"))
        }
        XCTAssertThrowsError(try ZeroShotTasks.task(named: "mmlu")) {
            XCTAssertTrue($0.localizedDescription.contains("unknown task 'mmlu'"))
        }
        let truncated = write("hs2.txt", "Ctx\n1\na\nb\n")
        XCTAssertThrowsError(try ZeroShotTasks.task(named: "hellaswag").items(from: truncated, limit: nil)) {
            XCTAssertTrue($0.localizedDescription.hasPrefix("\(truncated):1: an incomplete item"), "\($0)")
        }
        // Only the first items are read with a limit, so a bad line after them does not matter.
        XCTAssertEqual(try ZeroShotTasks.task(named: "piqa").items(from: bad, limit: 1).count, 1)
    }
}
