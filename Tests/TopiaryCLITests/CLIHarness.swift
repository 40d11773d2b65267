import Foundation
import XCTest

/// Runs the built `topiary` binary as a user would.
struct CLIHarness {
    struct Result { let status: Int32; let stdout: String; let stderr: String }

    var binary: URL {
        // The test bundle sits in the build products folder, next to the executable.
        var dir = Bundle(for: CLITests.self).bundleURL
        while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("topiary").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("topiary")
    }

    var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    func modelPath() throws -> String {
        if let p = ProcessInfo.processInfo.environment["TOPIARY_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
        let p = root + "/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("model not found") }
        return p
    }

    /// Runs `binary` (default: the built one) with `args`, in `directory` and with `environment` when given.
    func run(_ args: [String], binary: URL? = nil, directory: String? = nil, environment: [String: String]? = nil) throws -> Result {
        let p = Process()
        p.executableURL = binary ?? self.binary
        p.arguments = args
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        if let environment { p.environment = environment }
        // stderr (progress, logs) goes to a file so that neither stream can fill a pipe and block the child.
        let errPath = NSTemporaryDirectory() + "topiary-cli-stderr-\(getpid())-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { unlink(errPath) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: errPath)
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let e = FileManager.default.contents(atPath: errPath) ?? Data()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// One error line on stderr, naming `mentions`, and a non-zero exit.
    func assertCleanFailure(_ r: Result, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
        XCTAssertFalse(lines.isEmpty, "no error message", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "stderr does not mention \(mentions): \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error"), file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Stack dump"), file: file, line: line)
    }
}
