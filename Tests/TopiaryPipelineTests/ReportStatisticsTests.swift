import Foundation
import TopiaryPipeline
import XCTest

/// The report's results table: accuracies with standard errors, differences from the dense model marked significant
/// (▲/▼) or within noise (≈), a run too small to tell the models apart says so, perplexity with its window count.
final class ReportStatisticsTests: XCTestCase {
    func model(_ label: String, ppl: Double, boolq: Double, se: Double, limit: Int) -> String {
        """
        "\(label)": {"label": "\(label)", "path": "/m/\(label)", "adapters": null,
          "metrics": {"params": 100, "wikitext2_ppl": \(ppl), "boolq_acc": \(boolq), "boolq_acc_stderr": \(se),
                      "average_acc": \(boolq), "average_acc_stderr": \(se)},
          "details": {"wikitext2": {"ppl": \(ppl), "windows": 64, "window": 512, "predictions": 32704, "seconds": 1},
                      "limit": \(limit)}}
        """
    }

    func report(_ models: [String]) throws -> String {
        let dir = NSTemporaryDirectory() + "topiary-report-stats-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = """
            {"recipe": "r", "recipe_file": "/r.yaml", "model": "/m/base", "final_model": "/m/final", "metrics": {},
             "models": {\(models.joined(separator: ","))}, "stages": [], "finished": "2026-12-07T00:00:00Z"}
            """
        try json.write(toFile: dir + "/results.json", atomically: true, encoding: .utf8)
        try Report(directory: dir).write()
        return try String(contentsOfFile: dir + "/report.md", encoding: .utf8)
    }

    func testDifferencesWithinNoiseAreNotRanked() throws {
        // 20 items: 35% vs 42% with standard errors of ~11 points is noise.
        let md = try report([
            model("base", ppl: 29.9, boolq: 0.35, se: 0.109, limit: 20), model("final", ppl: 33.1, boolq: 0.42, se: 0.113, limit: 20),
        ])
        XCTAssertTrue(md.contains("WikiText-2 ↓ (64 × 512)"), md)
        XCTAssertTrue(md.contains("42.00 ± 11.30 ≈"), md)
        XCTAssertTrue(md.contains("too small to tell the models apart"), md)
        XCTAssertFalse(md.contains("11.30 ▲") || md.contains("11.30 ▼"), md)
    }

    func testSignificantDifferencesAreMarked() throws {
        let md = try report([
            model("base", ppl: 29.9, boolq: 0.60, se: 0.02, limit: 500), model("pruned", ppl: 60, boolq: 0.45, se: 0.02, limit: 500),
            model("final", ppl: 33, boolq: 0.59, se: 0.02, limit: 500),
        ])
        XCTAssertTrue(md.contains("45.00 ± 2.00 ▼"), md)
        XCTAssertTrue(md.contains("59.00 ± 2.00 ≈"), md)
        XCTAssertFalse(md.contains("too small"), md)
    }
}
