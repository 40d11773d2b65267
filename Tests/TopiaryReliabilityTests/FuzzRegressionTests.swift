import Foundation
import TopiaryFuzzEntries
import XCTest

/// Replays every input committed under `Fixtures/fuzz/<target>/` (seeds and the inputs of crashes found by
/// `scripts/fuzz.sh`) through the same entry points the fuzzers call: each must return, whatever the bytes.
final class FuzzRegressionTests: XCTestCase {
    var fixtures: URL { Bundle.module.resourceURL!.appendingPathComponent("Fixtures/fuzz") }

    func testEveryCommittedFuzzInputIsRefusedOrParsedWithoutCrashing() throws {
        var replayed = 0
        for target in FuzzTarget.allCases {
            let dir = fixtures.appendingPathComponent(target.rawValue)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            for name in names.sorted() where !name.hasPrefix(".") && name != "README.md" {
                let data = try Data(contentsOf: dir.appendingPathComponent(name))
                let start = Date()
                let outcome = target.run(data)
                XCTAssertLessThan(Date().timeIntervalSince(start), 10, "\(target)/\(name) took too long: \(outcome)")
                replayed += 1
            }
        }
        XCTAssertGreaterThan(replayed, 0, "no committed fuzz inputs found under \(fixtures.path)")
    }

    /// The seeds (a tiny model saved by Topiary in each format, the shipped recipes) parse; their truncations are refused.
    func testSeedsParseAndTheirTruncationsAreRefused() throws {
        let dir = NSTemporaryDirectory() + "topiary-seeds-test-\(getpid())"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        try FuzzSeeds.write(to: dir, repository: repo, data: nil)
        var checked = 0
        for target in FuzzTarget.allCases {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/" + target.rawValue)) ?? []
            for name in names {
                let outcome = target.run(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + target.rawValue + "/" + name)))
                if name.contains(".cut") {
                    XCTAssertNotEqual(outcome, "ok", "\(target)/\(name) was accepted")
                } else {
                    XCTAssertEqual(outcome, "ok", "\(target)/\(name)")
                }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 30)
    }
}
