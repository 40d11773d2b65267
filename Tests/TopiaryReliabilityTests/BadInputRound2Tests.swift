import Foundation
import TopiaryCore
import TopiaryFuzzEntries
import TopiaryGGUF
import TopiaryModels
import TopiaryPipeline
import TopiaryRecover
import XCTest

/// The library side of issue T17 ("Reliability, round 2"): text that is not UTF-8, impossible counts in a GGUF header,
/// missing folders, damaged checkpoints, output paths that cannot be written and sizes that cannot fit are errors that
/// name the file and the problem.
final class BadInputRound2Tests: XCTestCase {
    func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "topiary-round2-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func message(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            try body()
            XCTFail("no error", file: file, line: line)
            return ""
        } catch {
            return error.localizedDescription
        }
    }

    // MARK: text files

    func testInvalidUTF8IsFoundAtItsFirstByte() {
        XCTAssertNil(firstInvalidUTF8Offset(Data("plain ASCII, é, 漢字, 🌿".utf8)))
        XCTAssertEqual(firstInvalidUTF8Offset(Data([0x61, 0x62, 0xE9, 0x63])), 2)  // Latin-1 é
        XCTAssertEqual(firstInvalidUTF8Offset(Data([0x61, 0xC0, 0xAF])), 1)  // overlong '/'
        XCTAssertEqual(firstInvalidUTF8Offset(Data([0xED, 0xA0, 0x80])), 0)  // a surrogate
        XCTAssertEqual(firstInvalidUTF8Offset(Data([0xF4, 0x90, 0x80, 0x80])), 0)  // above U+10FFFF
        XCTAssertEqual(firstInvalidUTF8Offset(Data([0x61, 0xE2, 0x82])), 1)  // cut inside a character
        XCTAssertEqual(firstInvalidUTF8Offset(Data([0x7F, 0x80])), 1)  // a lone continuation byte
    }

    func testReadTextFileNamesTheFileAndTheOffset() throws {
        let dir = try temporaryDirectory()
        let latin1 = dir + "/latin1.txt"
        try Data("caf".utf8 + [0xE9] + Data(" au lait".utf8)).write(to: URL(fileURLWithPath: latin1))
        let m = message { _ = try readTextFile(latin1) }
        XCTAssertTrue(m.contains(latin1) && m.contains("not UTF-8") && m.contains("byte offset 3") && m.contains("0xE9"), m)
        XCTAssertEqual(message { _ = try readTextFile(dir + "/none.txt") }, dir + "/none.txt: no such file")
        XCTAssertEqual(message { _ = try readTextFile(dir) }, dir + ": is a directory, expected a text file")
        let empty = dir + "/empty.txt"
        FileManager.default.createFile(atPath: empty, contents: Data())
        XCTAssertEqual(message { _ = try readTextFile(empty) }, empty + ": the file is empty")
        let good = dir + "/good.txt"
        try Data("héllo\n".utf8).write(to: URL(fileURLWithPath: good))
        XCTAssertEqual(try readTextFile(good), "héllo\n")
    }

    // MARK: GGUF

    /// A header that declares 2^62 tensors: 2^62 × 24 bytes overflows 64 bits, which used to print "needs byte 0".
    func testATensorCountOf2To62IsReportedWithSaneNumbers() throws {
        var bytes = Data("GGUF".utf8)
        withUnsafeBytes(of: UInt32(3).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: (UInt64(1) << 62).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(0).littleEndian) { bytes.append(contentsOf: $0) }
        let path = try temporaryDirectory() + "/count.gguf"
        try bytes.write(to: URL(fileURLWithPath: path))
        for headerOnly in [false, true] {
            let m = message { _ = try GGUFFile(path: path, headerOnly: headerOnly) }
            XCTAssertTrue(m.hasPrefix(path + ": damaged header: the tensor count is 4611686018427387904"), m)
            XCTAssertFalse(m.contains("byte 0"), m)
        }
    }

    // MARK: folders

    func testVerifyAndLoadNameAMissingFolder() throws {
        let dir = try temporaryDirectory()
        XCTAssertEqual(
            message { try Checkpoint.verifyManifest(directory: dir + "/missing", required: []) }, dir + "/missing: no such directory")
        let file = dir + "/file"
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        XCTAssertTrue(message { try Checkpoint.verifyManifest(directory: file, required: []) }.hasPrefix(file + ": not a directory"))
        XCTAssertTrue(message { _ = try Checkpoint.load(directory: dir + "/missing") }.hasSuffix("no such directory"))
    }

    func testMissingAdapterFolderIsNamedAsSuch() throws {
        let dir = try temporaryDirectory()
        let model = try FuzzSeeds.tinyModel()
        XCTAssertEqual(
            message { try LoRATrainer.loadAdapters(directory: dir + "/nope", into: model) },
            "--adapters \(dir)/nope: no such adapter directory")
        XCTAssertTrue(message { try LoRATrainer.loadAdapters(directory: dir, into: model) }.contains("no adapter_config.json"))
    }

    /// A checkpoint folder without config.json names the missing file; a damaged model.safetensors is named as damaged,
    /// not as an "invalid model configuration".
    func testACheckpointWithoutConfigOrWithDamagedWeightsNamesTheFile() throws {
        let dir = try temporaryDirectory() + "/ckpt"
        let metadata = Dictionary(uniqueKeysWithValues: FuzzSeeds.tinyTokenizerMetadata())
        try Checkpoint.save(model: try FuzzSeeds.tinyModel(), tokenizerMetadata: metadata, to: dir)
        let weights = dir + "/model.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: weights))
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: weights))
        let damaged = message { _ = try ModelLoader.load(path: dir) }
        XCTAssertTrue(damaged.hasPrefix(weights + ": damaged"), damaged)
        XCTAssertFalse(damaged.contains("invalid model configuration"), damaged)
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        let noConfig = message { _ = try ModelLoader.load(path: dir) }
        XCTAssertTrue(noConfig.hasPrefix(dir + "/config.json: missing"), noConfig)
    }

    func testAReportOfACorruptResultsFileSaysSo() throws {
        let dir = try temporaryDirectory()
        XCTAssertEqual(message { try Report(directory: dir + "/none").write() }, dir + "/none: no such run directory")
        XCTAssertTrue(message { try Report(directory: dir).write() }.contains("results.json: missing"))
        for corrupt in [Data([0xFF, 0x00, 0x13, 0x37]), Data("{\"stages\": [".utf8), Data(), Data("{}".utf8)] {
            try corrupt.write(to: URL(fileURLWithPath: dir + "/results.json"))
            let m = message { try Report(directory: dir).write() }
            XCTAssertTrue(m.hasPrefix(dir + "/results.json: damaged"), m)
            XCTAssertFalse(m.contains("missing;") || m.contains("( "), m)
        }
    }

    // MARK: output paths and operating-system errors

    func testOutputLocationsAreCheckedBeforeWork() throws {
        let dir = try temporaryDirectory()
        let file = dir + "/plain"
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        XCTAssertNoThrow(try OutputLocation.checkWritable(dir + "/new/deeper", as: .directory))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/new"), "the check leaves nothing behind")
        XCTAssertTrue(message { try OutputLocation.checkWritable(file, as: .directory) }.hasPrefix(file + ": exists and is a file"))
        XCTAssertTrue(message { try OutputLocation.checkWritable(dir, as: .file) }.hasPrefix(dir + ": is a directory"))
        let under = message { try OutputLocation.checkWritable(file + "/sub", as: .directory) }
        XCTAssertEqual(under, file + "/sub: cannot be created: \(file) is a file, not a directory")
        // A relative path whose folders do not exist yet is created under the working directory.
        XCTAssertNoThrow(try OutputLocation.checkWritable("topiary-not-there-\(getpid())/run", as: .directory))
        // An existing output folder is written into: it is probed itself.
        XCTAssertTrue(
            message { try OutputLocation.checkWritable("/proc/self", as: .directory) }.contains("nothing can be created in /proc/"))
        let proc = message { try OutputLocation.checkWritable("/proc/topiary-out", as: .directory) }
        XCTAssertTrue(proc.hasPrefix("/proc/topiary-out: cannot be written: nothing can be created in /proc ("), proc)
    }

    func testFoundationFileErrorsBecomeOneLineWithThePathAndTheCause() throws {
        let dir = try temporaryDirectory()
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            XCTFail("no error")
        } catch {
            XCTAssertEqual(OutputLocation.describe(error), dir + ": already exists")
        }
        do {
            _ = try Data(contentsOf: URL(fileURLWithPath: dir + "/none"))
            XCTFail("no error")
        } catch {
            XCTAssertEqual(OutputLocation.describe(error), dir + "/none: no such file or directory")
        }
        XCTAssertNil(OutputLocation.describe(ModelError.notFound(path: "x")))
    }

    /// A checkpoint that cannot be written names the checkpoint, never the temporary folder it was written to.
    func testAFailedCheckpointSaveNamesTheCheckpointNotATemporaryFolder() throws {
        let metadata = Dictionary(uniqueKeysWithValues: FuzzSeeds.tinyTokenizerMetadata())
        let m = message { try Checkpoint.save(model: try FuzzSeeds.tinyModel(), tokenizerMetadata: metadata, to: "/proc/topiary-ckpt") }
        XCTAssertTrue(m.hasPrefix("/proc/topiary-ckpt"), m)
        XCTAssertFalse(m.contains(".tmp-") || m.contains("Error Domain"), m)
    }

    /// The same for a LoRA run's checkpoint: the message names OUT/checkpoint, not OUT/.checkpoint.tmp-PID.
    func testAFailedTrainingCheckpointNamesTheCheckpointNotATemporaryFolder() throws {
        var lora = LoRAConfig()
        lora.rank = 2
        var config = TrainingConfig()
        config.batchSize = 1
        config.length = 8
        config.steps = 1
        config.validationWindows = 1
        let tokens = (0..<400).map { Int32($0 % 7) }
        let trainer = try LoRATrainer(model: try FuzzSeeds.tinyModel(), lora: lora, config: config, tokens: tokens)
        let m = message { try trainer.saveCheckpoint(directory: "/proc/topiary-run") }
        XCTAssertTrue(m.hasPrefix("/proc/topiary-run/checkpoint"), m)
        XCTAssertFalse(m.contains(".tmp-") || m.contains("Error Domain"), m)
    }

    // MARK: sizes

    func testSizesAreCheckedAgainstTheContextAndTheMemory() throws {
        let config = try FuzzSeeds.tinyModel().config
        XCTAssertNoThrow(try ResourceCheck.sequence(config.contextLength, what: "--window", config: config, model: "/m/tiny.gguf"))
        let long = message {
            try ResourceCheck.sequence(
                config.contextLength + 1, what: "--window \(config.contextLength + 1)", config: config, model: "/m/tiny.gguf")
        }
        XCTAssertTrue(long.contains("context length of tiny.gguf (\(config.contextLength) tokens)"), long)
        let huge = ResourceCheck.trainingBytes(config, batch: 1000, length: 100_000)
        let m = message { try ResourceCheck.memory(huge, what: "a training step", available: 1 << 30) }
        XCTAssertTrue(m.hasPrefix("a training step would need about ") && m.contains("only 1.0 GiB is available"), m)
        XCTAssertNil(ResourceCheck.forwardBytes(config, batch: Int.max / 2, length: Int.max / 2))
        XCTAssertTrue(message { try ResourceCheck.memory(nil, what: "x") }.contains("overflows"))
        XCTAssertNoThrow(try ResourceCheck.memory(ResourceCheck.forwardBytes(config, batch: 1, length: 8), what: "a small pass"))
    }
}
