import Foundation
import XCTest

/// The default model for real-model tests (skipped when absent; `make test` fetches it).
func smolLM2Path() throws -> String {
    if let p = ProcessInfo.processInfo.environment["TOPIARY_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
    let p = repoRoot() + "/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("SmolLM2 GGUF not found (run `make model`)") }
    return p
}

func repoRoot() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// The evaluation data folder (../shared/data or $TOPIARY_DATA).
func dataPath(_ relative: String) throws -> String {
    let base = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? repoRoot() + "/../shared/data"
    let p = base + "/" + relative
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("\(p) not found") }
    return p
}

func fixtureURL(_ name: String) -> URL {
    Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil)!
}

func loadJSON(_ name: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: fixtureURL(name))) as! [String: Any]
}
