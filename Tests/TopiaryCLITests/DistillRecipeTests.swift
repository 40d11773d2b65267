import Foundation
import XCTest

/// A recipe that prunes, recovers by distillation from the dense model (top-K cached), merges and evaluates with
/// speed, on the real model: the stage's outputs, the report's sections and columns, and `topiary distill` on the
/// command line reading the same cache.
final class DistillRecipeTests: XCTestCase {
    let helper = CLIHarness()

    func testDistillRecipeAndCommand() throws {
        let model = try helper.modelPath()
        let data = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? helper.root + "/../shared/data"
        guard FileManager.default.fileExists(atPath: data + "/wikitext-2-raw/test.txt") else { throw XCTSkip("data not found") }
        let root = NSTemporaryDirectory() + "topiary-distill-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/kd.yaml"
        try """
        version: 1
        name: kd
        model: \(model)
        data: \(data)
        stages:
          importance: { criterion: l2 }
          prune: { ratio: 0.3, layers: 3-27 }
          distill: { steps: 4, batch: 1, length: 32, lr: 1.0e-3, top_k: 16, temperature: 2, kd_weight: 0.9, save_every: 2, eval_every: 0,
                     val_windows: 0 }
          merge: {}
          evaluate:
            models: [base, pruned, final]
            perplexity: { datasets: [wikitext2], window: 64, windows: 2 }
            speed: { repeats: 1, prompt: 32, decode: 4 }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try helper.run(["run", file, "--out", root + "/run", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let stage = root + "/run/04-distill"
        for f in ["adapter_model.safetensors", "loss.svg", "teacher-cache/key.json", "teacher-cache/w32768.bin"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: stage + "/" + f), f)
        }
        let report = try String(contentsOfFile: root + "/run/report.md", encoding: .utf8)
        for s in ["Recovery by distillation", "prompt tok/s", "decode tok/s", "WikiText-2 ↓ (2 × 64)"] {
            XCTAssertTrue(report.contains(s), "\(s) missing from the report:\n\(report)")
        }
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/run/results.json"))) as! [String: Any]
        let models = json["models"] as! [String: Any]
        for label in ["base", "pruned", "final"] {
            let m = (models[label] as! [String: Any])["metrics"] as! [String: Any]
            XCTAssertGreaterThan((m["decode_tokens_per_second"] as? Double) ?? 0, 0, label)
            XCTAssertGreaterThan((m["file_bytes"] as? Double) ?? 0, 0, label)
        }

        // The command line: the same windows from the recipe's cache, no teacher forward for them.
        let cli = try helper.run([
            "distill", "--model", root + "/run/03-prune/model", "--teacher", model, "--data", data, "--out", root + "/cli", "--steps", "4",
            "--batch", "1", "--length", "32", "--lr", "1e-3", "--top-k", "16", "--temperature", "2", "--kd-weight", "0.9",
            "--teacher-cache", stage + "/teacher-cache", "--eval-every", "0", "--val-windows", "0",
        ])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        XCTAssertTrue(cli.stderr.contains("teacher cache: 4 windows read, 0 computed"), cli.stderr)
        // A cache made for other settings is refused with its folder named.
        let other = try helper.run([
            "distill", "--model", root + "/run/03-prune/model", "--teacher", model, "--data", data, "--out", root + "/cli2", "--steps", "2",
            "--batch", "1", "--length", "32", "--top-k", "8", "--teacher-cache", stage + "/teacher-cache",
        ])
        XCTAssertEqual(other.status, 1)
        XCTAssertTrue(other.stderr.contains(stage + "/teacher-cache: this teacher cache was made for another"), other.stderr)
        XCTAssertEqual(other.stderr.split(separator: "\n").count, 1, other.stderr)
    }
}
