import Foundation
import XCTest

/// The default model is found from any working folder: beside the repository the binary was built in, or in Topiary's
/// home (`$TOPIARY_HOME/models`, where `make model` links it); when it is nowhere, the error names `--model` and how to
/// fetch it.
final class DefaultLocationsTests: XCTestCase {
    let harness = CLIHarness()

    func testDefaultModelFromAnyFolderAndAClearErrorWhenItIsNowhere() throws {
        let model = try harness.modelPath()
        let root = NSTemporaryDirectory() + "topiary-default-locations-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root + "/home", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/elsewhere", withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        var env = ProcessInfo.processInfo.environment
        env["TOPIARY_MODEL"] = nil
        env["TOPIARY_HOME"] = root + "/home"

        // The built binary finds the model of its own repository from an unrelated folder.
        if FileManager.default.fileExists(atPath: harness.root + "/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf") {
            let r = try harness.run(["inspect"], directory: root + "/elsewhere", environment: env)
            XCTAssertEqual(r.status, 0, r.stderr)
        }

        // A copy outside any repository, with an empty home: one line naming --model and `make model`.
        try FileManager.default.copyItem(atPath: harness.binary.path, toPath: root + "/topiary")
        let copy = URL(fileURLWithPath: root + "/topiary")
        let missing = try harness.run(["inspect"], binary: copy, directory: root + "/elsewhere", environment: env)
        harness.assertCleanFailure(missing, mentions: "--model")
        XCTAssertTrue(missing.stderr.contains("make model"), missing.stderr)
        XCTAssertTrue(missing.stderr.contains(root + "/home/models"), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)

        // Linked into the home (what `make model` does), it is found.
        try FileManager.default.createDirectory(atPath: root + "/home/models", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: root + "/home/models/SmolLM2-135M-Instruct.Q4_1.gguf", withDestinationPath: model)
        let found = try harness.run(["inspect"], binary: copy, directory: root + "/elsewhere", environment: env)
        XCTAssertEqual(found.status, 0, found.stderr)
    }
}
