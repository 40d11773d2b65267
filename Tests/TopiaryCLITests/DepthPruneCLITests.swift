import Foundation
import XCTest

/// `topiary prune --blocks` on the real SmolLM2: whole blocks removed (alone and with width under one budget), the
/// checkpoint reloads, exports to GGUF and safetensors, and gives the same perplexity from each; bad depth options
/// fail in seconds with one line.
final class DepthPruneCLITests: XCTestCase {
    let harness = CLIHarness()

    func data() throws -> String {
        let data = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? harness.root + "/../shared/data"
        guard FileManager.default.fileExists(atPath: data + "/wikitext-2-raw/test.txt") else { throw XCTSkip("data not found") }
        return data
    }

    func json(_ path: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    func ppl(_ model: String, _ data: String) throws -> Double {
        let r = try harness.run(["perplexity", "--model", model, "--data", data, "--windows", "2", "--window", "128", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return try XCTUnwrap(j["ppl"] as? Double)
    }

    func testDepthAndMixedPlansSaveReloadAndExport() throws {
        let model = try harness.modelPath(), data = try data()
        let dir = NSTemporaryDirectory() + "topiary-depth-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let small = ["--calibration-windows", "2", "--calibration-length", "64", "--data", data, "--model", model]

        // Depth alone: 3 of 30 blocks by block influence.
        let depth = try harness.run(["prune", "--blocks", "3", "--block-criterion", "influence", "--out", dir + "/d3"] + small)
        XCTAssertEqual(depth.status, 0, depth.stderr)
        XCTAssertTrue(depth.stdout.contains("30 → 27 layers"), depth.stdout)
        let plan = try XCTUnwrap(try json(dir + "/d3/pruning.json")["blocks"] as? [String: Any])
        let removed = try XCTUnwrap(plan["removed"] as? [Int])
        XCTAssertEqual(removed.count, 3)
        XCTAssertEqual(removed, removed.sorted())
        XCTAssertEqual((plan["order"] as? [Int]).map(Set.init), Set(removed))
        XCTAssertEqual((plan["scores"] as? [Double])?.count, 30)
        XCTAssertEqual(try json(dir + "/d3/config.json")["num_hidden_layers"] as? Int, 27)
        let checkpoint = try ppl(dir + "/d3", data)
        XCTAssertTrue(checkpoint.isFinite && checkpoint > 1)
        // GGUF (f32) and Hugging Face safetensors exports of it give the checkpoint's perplexity.
        for (format, out) in [("gguf", dir + "/d3.gguf"), ("safetensors-hf", dir + "/d3-hf")] {
            var args = ["export", "--model", dir + "/d3", "--format", format, "--out", out]
            if format == "gguf" { args += ["--type", "f32"] }
            let r = try harness.run(args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try ppl(out, data), checkpoint, accuracy: 1e-3 * checkpoint, format)
        }

        // Depth and width under one budget: 2 blocks, then the width prune takes the rest of 20%.
        let mixed = try harness.run(
            ["prune", "--blocks", "2", "--ratio", "0.2", "--layers", "3-27", "--importance", "taylor", "--out", dir + "/m"] + small)
        XCTAssertEqual(mixed.status, 0, mixed.stderr)
        let mixedPlan = try json(dir + "/m/pruning.json")
        let before = try XCTUnwrap(mixedPlan["parameters_before"] as? Int), after = try XCTUnwrap(mixedPlan["parameters_after"] as? Int)
        let nonEmbedding = try XCTUnwrap(mixedPlan["non_embedding_parameters_before"] as? Int)
        XCTAssertEqual(Double(before - after) / Double(nonEmbedding), 0.2, accuracy: 0.01)
        XCTAssertEqual(try json(dir + "/m/config.json")["num_hidden_layers"] as? Int, 28)
        let gguf = try harness.run(["export", "--model", dir + "/m", "--type", "f32", "--out", dir + "/m.gguf"])
        XCTAssertEqual(gguf.status, 0, gguf.stderr)
        let m = try ppl(dir + "/m", data)
        XCTAssertEqual(try ppl(dir + "/m.gguf", data), m, accuracy: 1e-3 * m)
    }

    func testBadDepthOptionsFailFastWithOneLine() throws {
        let model = try harness.modelPath()
        let out = NSTemporaryDirectory() + "topiary-depth-bad-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let cases: [([String], String)] = [
            (["--blocks", "30"], "the model has 30 blocks"),
            (["--blocks", "0"], "--blocks"),
            (["--blocks", "-2"], "--blocks"),
            (["--block-criterion", "influence", "--ratio", "0.2"], "--blocks"),
            (["--block-criterion", "nope", "--blocks", "2"], "nope"),
            (["--block-selection", "iterative", "--ratio", "0.1"], "--blocks"),
            ([], "--ratio"),
            (["--blocks", "2", "--stream-layers", "2"], "--stream-layers"),
        ]
        for (args, mentions) in cases {
            let start = Date()
            let r = try harness.run(["prune", "--model", model, "--out", out + (args.contains("--stream-layers") ? ".gguf" : "")] + args)
            harness.assertCleanFailure(r, mentions: mentions)
            XCTAssertLessThan(Date().timeIntervalSince(start), 20, "\(args)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(args) left output behind")
        }
        // A recipe's prune stage takes the same keys, checked before any work.
        let recipe = NSTemporaryDirectory() + "topiary-depth-\(getpid()).yaml"
        defer { unlink(recipe) }
        for (body, ok) in [("blocks: 7\n    block_criterion: perplexity", true), ("ratio: 0.2\n    block_criterion: taylor", false)] {
            let yaml = "version: 1\nname: d\nmodel: \(model)\nstages:\n  importance: {}\n  prune:\n    \(body)\n"
            FileManager.default.createFile(atPath: recipe, contents: Data(yaml.utf8))
            let r = try harness.run(["run", recipe, "--check"])
            if ok { XCTAssertEqual(r.status, 0, r.stderr) } else { harness.assertCleanFailure(r, mentions: "blocks") }
        }
    }

    /// `bench --baseline` times the baseline's forward and decoding beside the model's, and reports both ratios.
    func testBenchAgainstABaselineReportsForwardAndDecodeRatios() throws {
        let model = try harness.modelPath()
        let r = try harness.run(["bench", "--model", model, "--baseline", model, "--skip-backward", "--repeats", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        for key in ["speedup_over_baseline", "decode_speedup_over_baseline"] {
            let v = try XCTUnwrap(j[key] as? Double, key)
            XCTAssertTrue(v.isFinite && v > 0, "\(key) = \(v)")
        }
    }
}
