import Foundation
import XCTest

/// Runs the built `topiary` binary as a user would and checks exit codes and messages.
final class CLITests: XCTestCase {
    let harness = CLIHarness()
    typealias Result = CLIHarness.Result
    var root: String { harness.root }
    func modelPath() throws -> String { try harness.modelPath() }
    func run(_ args: [String]) throws -> Result { try harness.run(args) }
    func assertCleanFailure(_ r: Result, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        harness.assertCleanFailure(r, mentions: mentions, file: file, line: line)
    }

    func temp(_ name: String, _ data: Data) -> String {
        let path = NSTemporaryDirectory() + "topiary-cli-\(getpid())-" + name
        FileManager.default.createFile(atPath: path, contents: data)
        addTeardownBlock { unlink(path) }
        return path
    }

    func testHelpExplainsEveryCommand() throws {
        let r = try run(["--help"])
        XCTAssertEqual(r.status, 0)
        for command in ["quickstart", "inspect", "tokenize", "perplexity", "generate", "graph", "prune", "bench"] {
            XCTAssertTrue(r.stdout.contains(command), command)
        }
        let p = try run(["perplexity", "--help"])
        XCTAssertTrue(p.stdout.contains("--window") && p.stdout.contains("default: 512"), p.stdout)
    }

    func testMissingModelPath() throws {
        assertCleanFailure(try run(["inspect", "--model", "/nonexistent/m.gguf"]), mentions: "/nonexistent/m.gguf: no such file")
    }

    func testTruncatedWrongMagicAndOutOfFileModels() throws {
        let model = try modelPath()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: model), options: .alwaysMapped)
        let truncated = temp("truncated.gguf", bytes.prefix(5000))
        assertCleanFailure(try run(["inspect", "--model", truncated]), mentions: truncated + ": truncated file")
        let cut = temp("cut.gguf", bytes.prefix(bytes.count - 1000))
        assertCleanFailure(try run(["inspect", "--model", cut]), mentions: "data ends at byte")
        var magic = bytes.prefix(4096)
        magic.replaceSubrange(0..<4, with: Array("GGML".utf8))
        let bad = temp("magic.gguf", Data(magic))
        assertCleanFailure(try run(["inspect", "--model", bad]), mentions: bad + ": not a GGUF file")
    }

    func testEmptyTextAndBadOptions() throws {
        let model = try modelPath()
        let empty = temp("empty.txt", Data())
        assertCleanFailure(try run(["perplexity", "--model", model, "--text", empty]), mentions: empty + ": the file is empty")
        let text = temp("text.txt", Data("hello world".utf8))
        assertCleanFailure(try run(["perplexity", "--model", model, "--text", text, "--window", "1"]), mentions: "--window 1")
        assertCleanFailure(try run(["perplexity", "--model", model, "--text", "/nope.txt"]), mentions: "/nope.txt: no such file")
        assertCleanFailure(
            try run(["prune", "--model", model, "--out", "/tmp/x", "--ratio", "1.5", "--layers", "3-27"]), mentions: "--ratio 1.5")
        assertCleanFailure(
            try run([
                "prune", "--model", model, "--out", "/tmp/x", "--ratio", "0.2", "--layers", "3-27", "--importance", "obs", "--mode",
                "global",
            ]),
            mentions: "layer by layer")
        assertCleanFailure(
            try run([
                "prune", "--model", model, "--out", "/tmp/x", "--ratio", "0.2", "--layers", "3-27", "--importance", "taylor",
                "--compensate",
                "--merge", "kmeans",
            ]),
            mentions: "--compensate")
        assertCleanFailure(
            try run(["prune", "--model", model, "--out", "/tmp/x", "--ratio", "0.2", "--layers", "3-27", "--obs-step", "0"]),
            mentions: "--obs-step")
        assertCleanFailure(
            try run(["prune", "--model", model, "--out", "/tmp/x", "--ratio", "0.2", "--layers", "3-27", "--vd-steps", "0"]),
            mentions: "--vd-steps")
        assertCleanFailure(
            try run(["sparsify", "--model", model, "--out", "/tmp/x", "--method", "fisher-obs", "--gamma", "-1"]), mentions: "--gamma")
        let out = NSTemporaryDirectory() + "topiary-cli-prune-\(getpid())"
        assertCleanFailure(
            try run(["prune", "--model", model, "--out", out, "--ratio", "0.2", "--layers", "3-40", "--importance", "l1"]),
            mentions: "--layers 3-40")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a failed prune left output behind")
        assertCleanFailure(
            try run(["prune", "--model", model, "--out", out, "--ratio", "0.9", "--layers", "3-3", "--importance", "l1"]),
            mentions: "last unit of a group is never removed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a failed prune left output behind")
    }

    /// What a streamed model (--stream-layers) cannot do is refused up front, naming the option.
    func testStreamedModelRefusals() throws {
        let model = try modelPath()
        let text = temp("stream.txt", Data("hello world".utf8))
        assertCleanFailure(
            try run(["finetune", "--model", model, "--stream-layers", "2", "--out", "/tmp/x", "--data", text]), mentions: "--stream-layers")
        assertCleanFailure(
            try run(["export", "--model", model, "--stream-layers", "2", "--out", "/tmp/x.gguf"]), mentions: "--stream-layers")
        assertCleanFailure(
            try run(["prune", "--model", model, "--stream-layers", "2", "--out", "/tmp/x-dir", "--ratio", "0.2", "--layers", "3-27"]),
            mentions: "ending in .gguf")
        assertCleanFailure(try run(["perplexity", "--model", model, "--stream-layers", "-1"]), mentions: "--stream-layers")
        assertCleanFailure(
            try run([
                "prune", "--model", model, "--stream-layers", "2", "--out", "/tmp/x.gguf", "--ratio", "0.2", "--layers", "3-27",
                "--importance", "obs",
            ]), mentions: "--stream-layers")
    }

    /// Structured criteria are rows of a sweep: a level they cannot reach is "n/a" with the reason, the rest are real
    /// perplexities with completions.
    func testSweepTakesStructuredRows() throws {
        let model = try modelPath()
        let data = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? root + "/../shared/data"
        guard FileManager.default.fileExists(atPath: data + "/wikitext-2-raw/test.txt") else { throw XCTSkip("data not found") }
        let out = NSTemporaryDirectory() + "topiary-cli-sweep-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try run([
            "sweep", "--model", model, "--data", data, "--out", out, "--methods", "structured-l2,structured-obs", "--levels", "0.1,0.9",
            "--windows", "1", "--calibration-windows", "2", "--calibration-length", "64", "--quiet",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let md = try String(contentsOfFile: out + "/02-sweep/sweep.md", encoding: .utf8)
        let rows = md.split(separator: "\n").filter { $0.hasPrefix("| structured-") }
        XCTAssertEqual(rows.count, 2, md)
        for row in rows {
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            XCTAssertNotNil(Double(cells[1]), "level 0.1 is a perplexity: \(row)")
            XCTAssertEqual(cells[2], "n/a", "level 0.9 empties the attention groups: \(row)")
        }
        XCTAssertTrue(md.contains("never removed"), md)
        assertCleanFailure(
            try run(["sweep", "--model", model, "--out", out, "--methods", "structured-taylor-act"]), mentions: "structured-taylor-act")
    }

    func testTokenizeJSON() throws {
        let model = try modelPath()
        let text = temp("t.txt", Data("University is".utf8))
        let r = try run(["tokenize", "--model", model, "--file", text, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["count"] as? Int, 2)
        XCTAssertEqual(json["ids_head"] as? [Int], [17166, 314])
    }
}
