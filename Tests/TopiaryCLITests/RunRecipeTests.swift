import Foundation
import XCTest

/// `topiary run`: a run killed with SIGKILL during finetune resumes where it stopped, does not redo earlier
/// stages, and ends with the same metrics as an uninterrupted run.
final class RunRecipeTests: XCTestCase {
    let helper = CLIHarness()

    func dataPath() throws -> String {
        let p = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? helper.root + "/../shared/data"
        guard FileManager.default.fileExists(atPath: p + "/wikitext-2-raw/test.txt") else { throw XCTSkip("data not found") }
        return p
    }

    func recipe(model: String, data: String) -> String {
        """
        version: 1
        name: tiny
        model: \(model)
        data: \(data)
        stages:
          importance:
            criterion: l2
          prune:
            ratio: 0.5
            layers: 3-27
          finetune:
            data: wikitext2
            steps: 14
            batch: 1
            length: 32
            lr: 1.0e-3
            save_every: 1
            eval_every: 0
            val_windows: 0
          merge: {}
          evaluate:
            models: [pruned, final]
            perplexity: { datasets: [wikitext2], window: 128, windows: 2 }
        """
    }

    func metrics(_ dir: String) throws -> [String: Double] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/results.json"))) as! [String: Any]
        return (json["metrics"] as! [String: Any]).compactMapValues { ($0 as? NSNumber)?.doubleValue }
    }

    func testKilledDuringFinetuneResumesAndMatchesAnUninterruptedRun() throws {
        let model = try helper.modelPath(), data = try dataPath()
        let root = NSTemporaryDirectory() + "topiary-run-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/tiny.yaml"
        try recipe(model: model, data: data).write(toFile: file, atomically: true, encoding: .utf8)

        // The uninterrupted run.
        let clean = try helper.run(["run", file, "--out", root + "/clean", "--quiet"])
        XCTAssertEqual(clean.status, 0, clean.stderr)
        let expected = try metrics(root + "/clean")
        XCTAssertNotNil(expected["wikitext2_ppl"])

        // The same run, killed with SIGKILL once finetune has checkpointed a few steps.
        let out = root + "/killed"
        let p = Process()
        p.executableURL = helper.binary
        p.arguments = ["run", file, "--out", out, "--quiet"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let state = out + "/04-finetune/checkpoint/state.json"
        var killedAt: Int?
        let deadline = Date().addingTimeInterval(600)
        while p.isRunning && Date() < deadline {
            if let d = FileManager.default.contents(atPath: state), let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                let step = j["step"] as? Int, step >= 4
            {
                kill(p.processIdentifier, SIGKILL)
                killedAt = step
                break
            }
            usleep(5_000)
        }
        p.waitUntilExit()
        let stepKilled = try XCTUnwrap(killedAt, "the run finished before it could be killed")
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/04-finetune/manifest.json"), "a killed stage looks finished")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/results.json"))

        // Run again: earlier stages are skipped, finetune continues from its checkpoint.
        let again = try helper.run(["run", file, "--out", out, "--quiet"])
        XCTAssertEqual(again.status, 0, again.stderr)
        for stage in ["load", "importance", "prune"] {
            XCTAssertTrue(
                again.stderr.contains("\(stage): done earlier with the same inputs, skipped"), "\(stage) was not skipped:\n\(again.stderr)")
        }
        XCTAssertTrue(again.stderr.contains("finetune (continuing an interrupted attempt)"), again.stderr)
        XCTAssertTrue(again.stderr.contains("resuming at step"), again.stderr)
        let got = try metrics(out)
        for (k, v) in expected {
            XCTAssertEqual(got[k] ?? .nan, v, accuracy: abs(v) * 1e-5, "\(k) after resuming at step ≥ \(stepKilled)")
        }
        let manifest =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/04-finetune/manifest.json")))
            as! [String: Any]
        XCTAssertEqual(manifest["status"] as? String, "resumed")

        // A third run does nothing but write the results again; the final model loads.
        let third = try helper.run(["run", file, "--out", out, "--quiet"])
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertEqual(third.stderr.components(separatedBy: "skipped").count - 1, 6, third.stderr)
        XCTAssertEqual(try metrics(out), got)
        let ppl = try helper.run([
            "perplexity", "--model", out + "/model", "--data", data, "--window", "128", "--max-windows", "2", "--json",
        ])
        XCTAssertEqual(ppl.status, 0, ppl.stderr)
        let pj = try JSONSerialization.jsonObject(with: Data(ppl.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((pj["ppl"] as? Double) ?? 0, got["wikitext2_ppl"] ?? 1, accuracy: 1e-6 * (got["wikitext2_ppl"] ?? 1))
        for f in ["report.md", "report.html", "results.json"] { XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f) }
    }

    func testBrokenRecipeFailsBeforeAnyWork() throws {
        let root = NSTemporaryDirectory() + "topiary-run-bad-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/bad.yaml"
        try "version: 1\nmodel: /nonexistent/m.gguf\nstages:\n  evaluate: {}\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try helper.run(["run", file, "--out", root + "/out"])
        helper.assertCleanFailure(r, mentions: file + ":2:8: model file /nonexistent/m.gguf does not exist")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/out"), "a broken recipe created output")
        try "version: 1\nmodel: /bin/sh\nstages:\n  evalute: {}\n".write(toFile: file, atomically: true, encoding: .utf8)
        helper.assertCleanFailure(try helper.run(["run", file, "--check"]), mentions: "unknown stage `evalute` (did you mean `evaluate`?)")
    }
}
