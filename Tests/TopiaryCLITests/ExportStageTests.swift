import Foundation
import XCTest

/// A recipe's export stage writes the run's model for llama.cpp: the GGUF it writes loads again with the pruned shapes
/// and the same perplexity as the checkpoint it came from (within F16 rounding).
final class ExportStageTests: XCTestCase {
    let helper = CLIHarness()

    func testExportStageWritesTheRunsModelAsGGUF() throws {
        let model = try helper.modelPath()
        let data = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? helper.root + "/../shared/data"
        guard FileManager.default.fileExists(atPath: data + "/wikitext-2-raw/test.txt") else { throw XCTSkip("data not found") }
        let root = NSTemporaryDirectory() + "topiary-export-stage-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/export.yaml"
        try """
        version: 1
        name: export
        model: \(model)
        data: \(data)
        stages:
          importance: { criterion: l2 }
          prune: { ratio: 0.3, layers: 3-27 }
          export: { format: gguf, type: f16 }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try helper.run(["run", file, "--out", root + "/out", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let gguf = root + "/out/04-export/model-f16.gguf"
        XCTAssertTrue(FileManager.default.fileExists(atPath: gguf), r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/out/04-export/export.json"))

        func perplexity(_ path: String) throws -> Double {
            let p = try helper.run(["perplexity", "--model", path, "--window", "128", "--windows", "4", "--data", data, "--json"])
            XCTAssertEqual(p.status, 0, p.stderr)
            let json = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as! [String: Any]
            return (json["ppl"] as! NSNumber).doubleValue
        }
        let pruned = try perplexity(root + "/out/03-prune/model"), exported = try perplexity(gguf)
        XCTAssertEqual(exported, pruned, accuracy: 0.002 * pruned, "the exported GGUF is the pruned model")

        // An unknown type is refused before anything runs, at its line.
        try """
        version: 1
        model: \(model)
        data: \(data)
        stages:
          export: { format: gguf, type: q3_k }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let bad = try helper.run(["run", file, "--out", root + "/bad", "--quiet"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("export.yaml:5:33"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("q3_k: unknown tensor type"), bad.stderr)
    }
}
