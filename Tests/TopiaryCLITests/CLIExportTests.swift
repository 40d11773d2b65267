import Foundation
import XCTest

/// `topiary export` as a user runs it: bad options fail with one clear line and leave nothing behind.
final class CLIExportTests: XCTestCase {
    /// The binary and helpers of ``CLITests`` (that class is final, so they are repeated here).
    struct Runner {
        var binary: URL {
            var dir = Bundle(for: CLIExportTests.self).bundleURL
            while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("topiary").path) {
                dir = dir.deletingLastPathComponent()
            }
            return dir.appendingPathComponent("topiary")
        }

        func modelPath() throws -> String {
            if let p = ProcessInfo.processInfo.environment["TOPIARY_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .path
            let p = root + "/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf"
            guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("model not found") }
            return p
        }

        func run(_ args: [String]) throws -> CLITests.Result {
            let p = Process()
            p.executableURL = binary
            p.arguments = args
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return CLITests.Result(
                status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
        }

        /// One error line on stderr, naming `mentions`, and a non-zero exit.
        func assertCleanFailure(_ r: CLITests.Result, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertNotEqual(r.status, 0, file: file, line: line)
            XCTAssertTrue(r.stderr.contains(mentions), "stderr does not mention \(mentions): \(r.stderr)", file: file, line: line)
            XCTAssertFalse(r.stderr.contains("Fatal error"), file: file, line: line)
        }
    }

    let cli = Runner()

    func testBadExportOptionsFailCleanly() throws {
        let model = try cli.modelPath()
        let out = NSTemporaryDirectory() + "topiary-cli-export-\(getpid()).gguf"
        defer { unlink(out) }
        cli.assertCleanFailure(
            try cli.run(["export", "--model", model, "--out", out, "--type", "q3_k"]),
            mentions: "--type q3_k: unknown tensor type (expected one of f32, f16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, q4_k_m)")
        cli.assertCleanFailure(try cli.run(["export", "--model", model, "--out", out, "--format", "onnx"]), mentions: "--format onnx")
        cli.assertCleanFailure(try cli.run(["export", "--model", model, "--out", out, "--arch", "mistral"]), mentions: "--arch mistral")
        cli.assertCleanFailure(
            try cli.run(["export", "--model", model, "--out", out, "--format", "safetensors-hf", "--type", "q8_0"]),
            mentions: "--type q8_0 applies to --format gguf")
        cli.assertCleanFailure(
            try cli.run(["export", "--model", model, "--out", out, "--allow-topiary-format"]),
            mentions: "--allow-topiary-format applies to --format safetensors-hf")
        cli.assertCleanFailure(try cli.run(["export", "--model", "/nonexistent/m.gguf", "--out", out]), mentions: "/nonexistent/m.gguf")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertTrue(FileManager.default.createFile(atPath: out, contents: Data("keep".utf8)))
        cli.assertCleanFailure(try cli.run(["export", "--model", model, "--out", out]), mentions: "exists; pass --force")
        XCTAssertEqual(FileManager.default.contents(atPath: out), Data("keep".utf8))
    }

    func testExportQ8JSONReport() throws {
        let model = try cli.modelPath()
        let out = NSTemporaryDirectory() + "topiary-cli-export-q8-\(getpid()).gguf"
        defer { unlink(out) }
        let r = try cli.run(["export", "--model", model, "--out", out, "--type", "q8_0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["format"] as? String, "gguf")
        XCTAssertEqual(json["architecture"] as? String, "llama")
        XCTAssertEqual(json["type"] as? String, "Q8_0")
        XCTAssertEqual((json["tensors"] as? [Any])?.count, 272)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: out)[.size] as? Int)
        XCTAssertEqual(json["bytes"] as? Int, size)
        XCTAssertLessThan(size, 160_000_000)
        let inspect = try cli.run(["inspect", "--model", out, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("\"Q8_0\" : 211"), inspect.stdout)
    }

    /// `--type q4_k_m` writes llama.cpp's mix and reports its fallbacks (SmolLM2's rows of 576 hold no whole super-block)
    /// and the file's bits per weight; `--help` lists the K-quant types.
    func testExportQ4KMReportsFallbacksAndBitsPerWeight() throws {
        let model = try cli.modelPath()
        let out = NSTemporaryDirectory() + "topiary-cli-export-q4km-\(getpid()).gguf"
        defer { unlink(out) }
        let r = try cli.run(["export", "--model", model, "--out", out, "--type", "q4_k_m", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["type"] as? String, "Q4_K_M")
        XCTAssertEqual((json["bits_per_weight"] as? NSNumber)?.doubleValue ?? 0, 6.17, accuracy: 0.01)
        let fallbacks = try XCTUnwrap(json["fallbacks"] as? [String])
        XCTAssertEqual(fallbacks.count, 3, "\(fallbacks)")
        XCTAssertTrue(
            fallbacks.contains { $0.hasPrefix("166 tensors: row length 576 is not a multiple of Q4_K's super-block") }, "\(fallbacks)")

        let text = try cli.run(["export", "--model", model, "--out", out, "--type", "q4_k", "--force"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("fallback: 180 tensors: row length 576"), text.stdout)
        XCTAssertTrue(text.stdout.contains("5.94 bits per weight"), text.stdout)
        let help = try cli.run(["export", "--help"])
        for type in ["q4_k", "q5_k", "q6_k", "q4_k_m"] { XCTAssertTrue(help.stdout.contains(type), help.stdout) }
    }
}
