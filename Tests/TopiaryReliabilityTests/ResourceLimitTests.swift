import Foundation
import TopiaryFuzzEntries
import TopiaryGGUF
import TopiaryModels
import TopiaryPipeline
import XCTest

/// Declared lengths are checked against what the file can hold before anything is allocated; nesting, strings,
/// arrays and model sizes are bounded.
final class ResourceLimitTests: XCTestCase {
    func temporaryFile(_ name: String, _ data: Data) throws -> String {
        let path = NSTemporaryDirectory() + "topiary-limits-\(getpid())-" + name
        try data.write(to: URL(fileURLWithPath: path))
        addTeardownBlock { unlink(path) }
        return path
    }

    /// A GGUF whose table declares `token_embd.weight` as 2^20 × 2^20 F32 (2^40 elements, 4 TiB) in a file of a few KiB.
    func hugeTensorGGUF() -> Data {
        var w = GGUFWriter()
        for (k, v) in FuzzSeeds.tinyTokenizerMetadata() { w.set(k, v) }
        w.set("general.architecture", .string("llama"))
        w.addTensor(name: "token_embd.weight", dimensions: [1 << 20, 1 << 20], type: .f32, data: Data(count: 64))
        return w.header() + Data(count: 64)
    }

    func testATensorOf2To40ElementsIsRefusedFromTheHeader() throws {
        let path = try temporaryFile("huge.gguf", hugeTensorGGUF())
        XCTAssertThrowsError(try GGUFFile(path: path)) { error in
            let message = error.localizedDescription
            XCTAssertTrue(message.contains("huge.gguf"), message)
            XCTAssertTrue(message.contains("tensor 'token_embd.weight' data ends at byte"), message)
        }
        XCTAssertThrowsError(try ModelLoader.load(path: path))
    }

    /// The same file given to the `topiary` binary: it fails at once, with one line naming the file, in under 100 MB.
    /// The bound is enforced, not sampled: the child runs under `ulimit -d 102400` (100 MiB of heap and private
    /// mappings), which the real 135M model exceeds, so any large allocation would kill it instead of the clean error.
    /// (`ru_maxrss` from `wait4` is no use here: a child started with vfork-style `posix_spawn` inherits the parent's peak.)
    func testTheCLIRefusesA2To40ElementTensorFastWithLittleMemory() throws {
        let path = try temporaryFile("huge-cli.gguf", hugeTensorGGUF())
        var dir = Bundle.module.bundleURL
        while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("topiary").path) {
            dir = dir.deletingLastPathComponent()
        }
        let binary = dir.appendingPathComponent("topiary").path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("topiary binary not built") }
        let errPath = NSTemporaryDirectory() + "topiary-limits-stderr-\(getpid())"
        addTeardownBlock { unlink(errPath) }
        var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        // One BLAS thread: OpenBLAS 0.3.21's worker threads retry their 128 MiB buffer mmap forever when the limit
        // refuses it, which would hang the process at exit (a property of OpenBLAS under `ulimit -d`, not of our
        // parser); `timeout` turns any hang into a failure instead of a stuck test run.
        let args = [
            "/bin/sh", "-c", "ulimit -d 102400 && OPENBLAS_NUM_THREADS=1 exec timeout 60 \"$0\" inspect --model \"$1\"", binary, path,
        ]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let start = Date()
        XCTAssertEqual(posix_spawn(&pid, "/bin/sh", &actions, nil, &argv, environ), 0)
        var status: Int32 = 0
        var usage = rusage()
        XCTAssertEqual(wait4(pid, &status, 0, &usage), pid)
        let seconds = Date().timeIntervalSince(start)
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        let maxRSSMB = Double(usage.ru_maxrss) / 1024  // kilobytes on Linux
        print("2^40-element GGUF under ulimit -d 100 MiB: exit \(status >> 8), \(String(format: "%.2f", seconds)) s: \(stderr)")
        _ = maxRSSMB
        XCTAssertEqual(status, 1 << 8, "expected exit status 1 (a clean error), got wait status \(status): \(stderr)")
        XCTAssertTrue(
            stderr.hasPrefix("topiary: error: ") && stderr.contains("huge-cli.gguf") && stderr.contains("token_embd.weight"), stderr)
        XCTAssertFalse(stderr.contains("Fatal error") || stderr.contains("Backtrace"), stderr)
        XCTAssertLessThan(seconds, 10)
    }

    func testMetadataStringsAndArraysAreBounded() throws {
        func header(_ body: (inout Data) -> Void) -> Data {
            var d = Data("GGUF".utf8)
            func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
            func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
            u32(3); u64(0); u64(1)
            u64(3); d.append(contentsOf: Array("key".utf8))
            body(&d)
            return d
        }
        func append<T: FixedWidthInteger>(_ d: inout Data, _ v: T) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        // A string that declares 2^40 bytes.
        let longString =
            header { d in
                append(&d, UInt32(8)); append(&d, UInt64(1) << 40)
            } + Data(count: 100)
        XCTAssertThrowsError(try GGUFFile(path: try temporaryFile("string.gguf", longString))) { e in
            XCTAssertTrue(e.localizedDescription.contains("string.gguf"), e.localizedDescription)
        }
        // An array of 2^23 uint8 entries: the file holds them, but the count is beyond the bound.
        let bigArray =
            header { d in
                append(&d, UInt32(9)); append(&d, UInt32(0)); append(&d, UInt64(1) << 23)
            } + Data(count: 1 << 23)
        XCTAssertThrowsError(try GGUFFile(path: try temporaryFile("array.gguf", bigArray))) { e in
            XCTAssertTrue(e.localizedDescription.contains("array entries"), e.localizedDescription)
        }
    }

    func testOverlappingTensorsAreRefused() throws {
        // The writer places each tensor after the previous one's given bytes: giving `a` none puts `b` inside `a`.
        var w = GGUFWriter()
        w.addTensor(name: "a", dimensions: [16], type: .f32, data: Data())
        w.addTensor(name: "b", dimensions: [8], type: .f32, data: Data(count: 32))
        let bytes = w.header() + Data(count: 64)
        XCTAssertThrowsError(try GGUFFile(path: try temporaryFile("overlap.gguf", bytes))) { e in
            XCTAssertTrue(e.localizedDescription.contains("overlaps tensor 'a'"), e.localizedDescription)
        }
    }

    func testConfigSizesAreBounded() {
        for (layers, message) in [("1000000000000", "layers"), ("-1", "layers")] {
            let json =
                #"{"model_type":"llama","vocab_size":64,"hidden_size":32,"num_hidden_layers":\#(layers),"#
                + #""num_attention_heads":4,"intermediate_size":32}"#
            XCTAssertEqual(FuzzTarget.config.run(Data(json.utf8)).contains(message), true)
        }
        let wide =
            #"{"model_type":"llama","vocab_size":64,"hidden_size":1099511627776,"num_hidden_layers":2,"#
            + #""num_attention_heads":4,"intermediate_size":32}"#
        XCTAssertTrue(FuzzTarget.config.run(Data(wide.utf8)).contains("exceed the limits"))
    }

    func testSafetensorsShapeOverflowIsRefused() throws {
        let header = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#
        var data = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data += Data(header.utf8)
        let outcome = FuzzTarget.safetensors.run(data)
        XCTAssertTrue(outcome.contains("more elements than the file can hold"), outcome)
    }

    func testDeepYAMLIsRefusedWithAnError() {
        for text in [
            "a: " + String(repeating: "[", count: 100_000), String(repeating: "- ", count: 50_000) + "x",
            "a: " + String(repeating: "{b: ", count: 50_000),
        ] {
            let outcome = FuzzTarget.recipe.run(Data(text.utf8))
            XCTAssertNotEqual(outcome, "ok")
            XCTAssertTrue(outcome.contains("fuzz.yaml"), outcome)
        }
    }

    func testHugeVocabularyIdsAreRefused() {
        let json = #"{"model":{"type":"BPE","vocab":{"a":1000000000000},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}}"#
        XCTAssertTrue(FuzzTarget.tokenizer.run(Data(json.utf8)).contains("far beyond"))
    }
}
