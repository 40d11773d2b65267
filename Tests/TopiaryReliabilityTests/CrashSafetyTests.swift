import Foundation
import TopiaryCore
import TopiaryFuzzEntries
import TopiaryModels
import XCTest

/// Files are written atomically; a checkpoint is complete only with its manifest; damage is detected at load.
final class CrashSafetyTests: XCTestCase {
    func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "topiary-crash-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func savedCheckpoint() throws -> String {
        let dir = try temporaryDirectory() + "/ckpt"
        let metadata = Dictionary(uniqueKeysWithValues: FuzzSeeds.tinyTokenizerMetadata())
        try Checkpoint.save(model: try FuzzSeeds.tinyModel(), tokenizerMetadata: metadata, to: dir)
        _ = try Checkpoint.load(directory: dir)
        return dir
    }

    func testAFlippedByteInASavedTensorIsDetectedAtLoad() throws {
        let dir = try savedCheckpoint()
        let file = dir + "/model.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count - 5] ^= 0x10  // inside the last tensor's data
        try bytes.write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try ModelLoader.load(path: dir)) { error in
            let message = error.localizedDescription
            XCTAssertTrue(message.contains(file) && message.contains("damaged") && message.contains("checksum"), message)
        }
    }

    func testACheckpointWithoutItsManifestOrWithAnIncompleteManifestIsRefused() throws {
        let dir = try savedCheckpoint()
        let manifest = try Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))
        var object = try JSONSerialization.jsonObject(with: manifest) as! [String: Any]
        object["files"] = (object["files"] as! [[String: Any]]).filter { $0["name"] as? String != "model.safetensors" }
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: dir + "/manifest.json"))
        XCTAssertThrowsError(try Checkpoint.load(directory: dir)) { e in
            XCTAssertTrue(e.localizedDescription.contains("does not list model.safetensors"), e.localizedDescription)
        }
        unlink(dir + "/manifest.json")
        XCTAssertThrowsError(try Checkpoint.load(directory: dir)) { e in
            XCTAssertTrue(e.localizedDescription.contains("incomplete checkpoint"), e.localizedDescription)
        }
    }

    func testAtomicWritesLeaveNoTemporaryFiles() throws {
        let dir = try temporaryDirectory()
        try AtomicFile.write("one", to: dir + "/a.txt")
        try AtomicFile.write("two", to: dir + "/a.txt")
        let model = try FuzzSeeds.tinyModel()
        try HDF5Export.write(model: model, configJSON: "{}", to: dir + "/m.h5")
        XCTAssertEqual(try HDF5Export.read(path: dir + "/m.h5", tensor: "model.norm.weight").shape, [32])
        // A failing writer leaves neither the target nor its temporary file.
        XCTAssertThrowsError(try AtomicFile.write(to: dir + "/b.txt") { (_: FileHandle) in throw CocoaError(.fileWriteUnknown) })
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["a.txt", "m.h5"])
        XCTAssertEqual(try String(contentsOfFile: dir + "/a.txt", encoding: .utf8), "two")
    }
}
