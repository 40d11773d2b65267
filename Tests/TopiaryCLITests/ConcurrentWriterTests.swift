import Foundation
import XCTest

/// Two processes writing the same `--out` at once never leave it corrupt: each builds its checkpoint in a hidden
/// temporary directory and renames it into place, so what is left is one complete checkpoint, one or the other.
final class ConcurrentWriterTests: XCTestCase {
    let helper = CLIHarness()

    func testTwoPrunesOnOneOutLeaveOneCompleteCheckpoint() throws {
        let model = try helper.modelPath()
        let out = NSTemporaryDirectory() + "topiary-same-out-\(getpid())"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        for round in 1...2 {
            let runs = try ["0.2", "0.3"].map { ratio -> Process in
                let p = Process()
                p.executableURL = helper.binary
                p.arguments = [
                    "prune", "--model", model, "--out", out, "--ratio", ratio, "--layers", "3-27", "--importance", "l2", "--force",
                ]
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                try p.run()
                return p
            }
            for p in runs { p.waitUntilExit() }
            XCTAssertEqual(runs.map(\.terminationStatus), [0, 0], "round \(round)")
            let verify = try helper.run(["verify", out])
            XCTAssertEqual(verify.status, 0, "round \(round): " + verify.stdout + verify.stderr)
            let inspect = try helper.run(["inspect", "--model", out, "--json"])
            XCTAssertEqual(inspect.status, 0, inspect.stderr)
            let hidden = try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent)
                .filter { $0.hasPrefix(".") && $0.contains((out as NSString).lastPathComponent) }
            XCTAssertEqual(hidden, [], "temporary directories left behind")
        }
    }
}
