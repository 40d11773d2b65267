import Foundation
@testable import TopiaryPipeline
import XCTest

/// Stage keys follow file contents, not dates: a data file copied or touched between sessions keeps its runs; an
/// edited one does not. Sweeps recorded with the older size:date:sample fingerprints are still recognised.
final class FingerprintTests: XCTestCase {
    func testDataFilesAreFingerprintedByContent() throws {
        let path = NSTemporaryDirectory() + "topiary-fingerprint-\(getpid()).txt"
        defer { unlink(path) }
        try Data(repeating: 65, count: 3 << 20).write(to: URL(fileURLWithPath: path))
        let first = try Pipeline.fingerprint(path)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 3600)], ofItemAtPath: path)
        XCTAssertEqual(try Pipeline.fingerprint(path), first, "a touched file keeps its fingerprint")
        // An edit in the middle (outside the first and last MiB) is seen.
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try h.seek(toOffset: 3 << 19)
        h.write(Data("B".utf8))
        try h.close()
        XCTAssertNotEqual(try Pipeline.fingerprint(path), first)

        // The older form: size, date and a hash of the first and last MiB.
        let size = 3 << 20
        let legacy = String(format: "%d:%d:%016llx", size, 1_700_000_000, try Pipeline.sampledHash(path, size: size))
        XCTAssertTrue(try Pipeline.sameContent(legacy, path))
        XCTAssertFalse(
            try Pipeline.sameContent(
                String(format: "%d:%d:%016llx", size + 1, 1_700_000_000, try Pipeline.sampledHash(path, size: size)), path))
        XCTAssertTrue(try Pipeline.sameContent(try Pipeline.fingerprint(path), path))
    }
}
