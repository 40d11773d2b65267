import Foundation
import TopiaryModels
import XCTest

/// Bad invocations of the `topiary` binary, one table row each: every one exits non-zero with exactly one error line
/// (`topiary: error: …`) that names the problem, no crash report, no Foundation error dump and no temporary path.
/// Usage errors and bad inputs are refused before any model is loaded: those rows name a model that does not exist
/// (so loading it would fail with another message) and must return within a few seconds.
final class BadInvocationTests: XCTestCase {
    let harness = CLIHarness()

    /// A model path that does not exist: a row that reaches the model loader fails with this path instead of its own message.
    static let noModel = "/nonexistent/never-loaded.gguf"

    struct Row {
        var args: [String]
        var mentions: [String]
        /// 64 (usage), 1 (runtime) or nil (any non-zero).
        var status: Int32?
        init(_ args: [String], _ mentions: String..., status: Int32? = nil) {
            self.args = args
            self.mentions = mentions
            self.status = status
        }
    }

    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "topiary-bad-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let d = dir
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
    }

    func write(_ name: String, _ data: Data) throws -> String {
        let path = dir + "/" + name
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    func folder(_ name: String) throws -> String {
        let path = dir + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs one row and checks its exit status and its single error line.
    func check(_ row: Row, maxSeconds: Double? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let start = Date()
        let r = try harness.run(row.args)
        let seconds = Date().timeIntervalSince(start)
        let shown = "topiary " + row.args.joined(separator: " ")
        XCTAssertNotEqual(r.status, 0, "\(shown): exit 0", file: file, line: line)
        if let status = row.status { XCTAssertEqual(r.status, status, "\(shown): \(r.stderr)", file: file, line: line) }
        let lines = r.stderr.split(separator: "\n").map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        let errors = lines.filter { $0.hasPrefix("topiary: error: ") }
        XCTAssertEqual(errors.count, 1, "\(shown): expected one error line, got: \(r.stderr)", file: file, line: line)
        // Besides the error line, only ArgumentParser's usage hint may follow a usage error.
        let others = lines.filter { !$0.hasPrefix("topiary: error: ") && !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See '") }
        XCTAssertEqual(others, [], "\(shown): \(r.stderr)", file: file, line: line)
        for m in row.mentions {
            XCTAssertTrue(errors.first?.contains(m) == true, "\(shown): error does not mention \(m): \(r.stderr)", file: file, line: line)
        }
        for bad in ["Fatal error", "Stack dump", "Backtrace", "backtrace", "Error Domain=", "NSCocoaErrorDomain", ".tmp-", "Swift runtime"]
        {
            XCTAssertFalse(r.stderr.contains(bad), "\(shown): stderr contains \(bad): \(r.stderr)", file: file, line: line)
        }
        if let maxSeconds {
            XCTAssertLessThan(seconds, maxSeconds, "\(shown) took \(seconds) s", file: file, line: line)
        }
    }

    /// Rows refused before any model is loaded (the model path does not exist, and the message is the row's own).
    func testBadInvocationsAreRefusedBeforeAnyModelIsLoaded() throws {
        let m = ["--model", Self.noModel]
        let text = try write("text.txt", Data("hello world, a small text".utf8))
        let empty = try write("empty.txt", Data())
        let latin1 = try write("latin1.txt", Data("caf".utf8) + Data([0xE9]) + Data(" au lait".utf8))
        let plainFile = try write("plain-file", Data("x".utf8))
        let emptyDir = try folder("empty-dir")
        let emptyTasks = try folder("data-empty/zeroshot")
        _ = try write("data-empty/zeroshot/boolq.jsonl", Data("\n  \n".utf8))
        _ = try write(
            "data-bad/zeroshot/piqa.jsonl", Data("{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\nnot json\n".utf8))
        let noTasks = try folder("data-none")
        let corruptRun = try folder("run-corrupt")
        _ = try write("run-corrupt/results.json", Data([0x7B, 0x22, 0xFF, 0x00]))
        let adapterFile = try write("adapter-file", Data("x".utf8))
        var count = Data("GGUF".utf8)
        withUnsafeBytes(of: UInt32(3).littleEndian) { count.append(contentsOf: $0) }
        withUnsafeBytes(of: (UInt64(1) << 62).littleEndian) { count.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(0).littleEndian) { count.append(contentsOf: $0) }
        let countGGUF = try write("count.gguf", count)
        let notGGUF = try write("random.gguf", Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 37) }))
        // A checkpoint folder that lost its config.json, and one whose model.safetensors no longer matches its manifest.
        let noConfig = try folder("ckpt-no-config")
        _ = try write("ckpt-no-config/model.safetensors", Data(count: 16))
        _ = try write("ckpt-no-config/manifest.json", Data("{\"files\": []}".utf8))
        let damaged = try folder("ckpt-damaged")
        let weights = Data(count: 64)
        _ = try write("ckpt-damaged/config.json", Data("{}".utf8))
        _ = try write("ckpt-damaged/model.safetensors", weights)
        _ = try write("ckpt-damaged/tokenizer_metadata.json", Data("{}".utf8))
        let manifest: [String: Any] = [
            "format": "topiary-checkpoint", "version": 1,
            "files": [["name": "model.safetensors", "bytes": weights.count, "fnv1a64": String(format: "%016llx", fnv1a64(weights) ^ 1)]],
        ]
        _ = try write("ckpt-damaged/manifest.json", try JSONSerialization.data(withJSONObject: manifest))

        let rows: [Row] = [
            // perplexity
            Row(["perplexity"] + m + ["--text", text, "--window", "1"], "--window 1", status: 64),
            Row(["perplexity"] + m + ["--text", text, "--window", "-5"], "--window -5", status: 64),
            Row(["perplexity"] + m + ["--text", text, "--window", "abc"], "--window", status: 64),
            Row(["perplexity"] + m + ["--dataset", "imdb"], "--dataset imdb", status: 64),
            Row(["perplexity"] + m + ["--text", text, "--max-windows", "-1"], "--max-windows", status: 64),
            Row(["perplexity"] + m + ["--text", text, "--batch-size", "0"], "--batch-size", status: 64),
            Row(["perplexity"] + m + ["--text", text, "--threads", "0"], "--threads", status: 64),
            Row(["perplexity"] + m + ["--text", text, "--stream-layers", "-1"], "--stream-layers", status: 64),
            Row(["perplexity"] + m + ["--text", text, "--frobnicate"], "--frobnicate", status: 64),
            Row(["perplexity"] + m + ["--text", "/bin/ls"], "/bin/ls: not UTF-8 text", "byte offset", status: 1),
            Row(["perplexity"] + m + ["--text", latin1], latin1 + ": not UTF-8 text", "byte offset 3", status: 1),
            Row(["perplexity"] + m + ["--text", empty], empty + ": the file is empty", status: 1),
            Row(["perplexity"] + m + ["--text", dir + "/none.txt"], dir + "/none.txt: no such file", status: 1),
            Row(["perplexity"] + m + ["--text", emptyDir], emptyDir + ": is a directory", status: 1),
            Row(["tokenize"] + m + ["--file", latin1], latin1 + ": not UTF-8 text", status: 1),
            // generate
            Row(["generate"] + m + ["--prompt", ""], "--prompt is empty", status: 64),
            Row(["generate"] + m, "--prompt", status: 64),
            Row(["generate"] + m + ["--prompt", "x", "--max-tokens", "-1"], "--max-tokens", status: 64),
            Row(["generate"] + m + ["--prompt", "x", "--temperature", "-1"], "--temperature", status: 64),
            Row(["generate"] + m + ["--prompt", "x", "--top-p", "0"], "--top-p", status: 64),
            Row(["generate"] + m + ["--prompt", "x", "--top-p", "1.5"], "--top-p", status: 64),
            Row(["generate"] + m + ["--prompt", "x", "--top-k", "-2"], "--top-k", status: 64),
            Row(["generate"] + m + ["--prompt", "x", "--adapters", dir + "/missing"], dir + "/missing: no such adapter directory"),
            Row(["generate"] + m + ["--prompt", "x", "--adapters", adapterFile], adapterFile + ": not a directory"),
            Row(["generate"] + m + ["--prompt", "x", "--adapters", emptyDir], "no adapter_config.json"),
            // evaluate
            Row(["evaluate"] + m + ["--tasks", "boolq,squad"], "unknown task 'squad'", status: 64),
            Row(["evaluate"] + m + ["--limit", "0"], "--limit", status: 64),
            Row(
                ["evaluate"] + m + ["--data", dir + "/data-empty", "--tasks", "boolq"],
                emptyTasks + "/boolq.jsonl: the task file has no items"),
            Row(["evaluate"] + m + ["--data", dir + "/data-bad", "--tasks", "piqa"], "piqa.jsonl:2: not a JSON object"),
            Row(["evaluate"] + m + ["--data", noTasks, "--tasks", "arc_easy"], "task file not found"),
            // prune
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers=-1-3"], "--layers -1-3", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "-1-3"], "--layers -1-3", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-"], "--layers 3-", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "5-2"], "--layers 5-2", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "a-b"], "--layers a-b", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "1--3"], "--layers 1--3", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "1.5", "--layers", "3-27"], "--ratio 1.5", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "-0.1", "--layers", "3-27"], "--ratio -0.1", status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--round-to", "0"], "--round-to", status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--taylor-order", "3"], "--taylor-order 3",
                status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--merge", "average"], "--merge average",
                status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--allocation", "x"], "--allocation x",
                status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--format", "onnx"], "--format onnx", status: 64
            ),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--importance", "vibes"], "--importance",
                status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--calibration-windows", "0"],
                "--calibration-windows",
                status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--calibration-length", "1"],
                "--calibration-length",
                status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--calibration-offset", "-1"],
                "--calibration-offset",
                status: 64),
            Row(["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--vd-steps", "0"], "--vd-steps", status: 64),
            Row(["prune"] + m + ["--ratio", "0.2", "--layers", "3-27"], "--out", status: 64),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--importance", "obs", "--mode", "global"],
                "layer by layer"),
            Row(
                ["prune"] + m + ["--out", plainFile, "--force", "--ratio", "0.2", "--layers", "3-27"], plainFile + ": exists and is a file",
                status: 1),
            // sparsify
            Row(
                ["sparsify"] + m + ["--out", dir + "/s", "--sparsity", "0.3", "--nm", "2:4"], "--sparsity 0.3 and --nm 2:4 conflict",
                status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--nm", "5:4"], "5:4", status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--nm", "two:four"], "two:four", status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--sparsity", "1"], "--sparsity 1.0", status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--gamma", "-1"], "--gamma", status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--allocation", "owl", "--nm", "2:4"], "--allocation owl", status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--owl-lambda", "0.6"], "--owl-lambda", status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--method", "vibes"], "--method", status: 64),
            Row(["sparsify"] + m + ["--out", dir + "/s", "--calibration", latin1], latin1 + ": not UTF-8 text", status: 1),
            Row(
                ["sparsify"] + m + ["--out", dir + "/s", "--data", noTasks], noTasks + "/wikitext-2-raw/test.txt: no such file", status: 1),
            Row(
                ["prune"] + m + ["--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--calibration", latin1],
                latin1 + ": not UTF-8 text",
                status: 1),
            Row(["sparsify"] + m + ["--out", "/proc/topiary-sparse"], "/proc/topiary-sparse: cannot be written", "/proc", status: 1),
            Row(["sparsify"] + m + ["--out", plainFile + "/sub"], plainFile + " is a file, not a directory", status: 1),
            // finetune
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", text, "--rank", "0"], "--rank", status: 64),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", text, "--dropout", "1"], "--dropout", status: 64),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", text, "--lr", "0"], "--lr", status: 64),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", text, "--length", "1"], "--length", status: 64),
            Row(["finetune"] + m + ["--out", dir + "/f", "--text", text, "--text-format", "csv"], "--text-format csv", status: 64),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", text, "--data-offset", "-1"], "--data-offset", status: 64),
            Row(["finetune"] + m + ["--out", "/proc/topiary-ft", "--data", text], "/proc/topiary-ft: cannot be written", status: 1),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", latin1], latin1 + ": not UTF-8 text", "byte offset 3", status: 1),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", latin1, "--format", "alpaca"], latin1 + ": not UTF-8 text", status: 1),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", empty, "--format", "alpaca"], empty + ": the file is empty", status: 1),
            Row(["finetune"] + m + ["--out", dir + "/f", "--data", dir + "/none.json"], dir + "/none.json: no such file", status: 1),
            // bench, export, graph, synthesize, header
            Row(["bench"] + m + ["--baseline", dir + "/missing.gguf"], "--baseline \(dir)/missing.gguf: no such file", status: 64),
            Row(["bench"] + m + ["--training-only", "--skip-backward"], "--training-only", status: 64),
            Row(["export"] + m + ["--out", dir + "/e.gguf", "--format", "onnx"], "onnx", status: 64),
            Row(["export"] + m + ["--out", dir + "/e.gguf", "--type", "q3_k"], "q3_k", status: 64),
            Row(["export"] + m + ["--out", dir + "/e", "--format", "safetensors-hf", "--type", "q8_0"], "--type q8_0", status: 64),
            Row(["export"] + m + ["--out", emptyDir, "--force"], emptyDir + " is a directory", status: 1),
            Row(["graph"] + m + ["--out", "/proc/topiary-graph.json"], "/proc/topiary-graph.json: cannot be written", status: 1),
            Row(["synthesize", "--like", dir + "/missing.gguf", "--out", dir + "/syn.gguf"], "missing.gguf: no such file", status: 1),
            Row(["header", countGGUF], countGGUF + ": damaged header: the tensor count is 4611686018427387904", status: 1),
            Row(["header", dir + "/missing.gguf"], dir + "/missing.gguf: no such file", status: 1),
            // models that are not models
            Row(["inspect", "--model", dir + "/missing.gguf"], dir + "/missing.gguf: no such file", status: 1),
            Row(["inspect", "--model", notGGUF], notGGUF + ": not a GGUF file", status: 1),
            Row(["inspect", "--model", emptyDir], emptyDir + ": not a GGUF file, a Topiary checkpoint directory", status: 1),
            Row(["inspect", "--model", noConfig], noConfig + "/config.json: missing", status: 1),
            Row(["inspect", "--model", damaged], damaged + "/model.safetensors: damaged", status: 1),
            // verify, report, run
            Row(["verify", dir + "/missing"], dir + "/missing: no such directory", status: 1),
            Row(["verify", plainFile], plainFile + ": not a directory", status: 1),
            Row(["verify", emptyDir], emptyDir + ": incomplete checkpoint", status: 1),
            Row(["report", dir + "/missing"], dir + "/missing: no such run directory", status: 1),
            Row(["report", emptyDir], emptyDir + "/results.json: missing", status: 1),
            Row(["report", corruptRun], corruptRun + "/results.json: damaged", status: 1),
            Row(["run", dir + "/missing.yaml"], dir + "/missing.yaml", status: 1),
            Row(["run", text, "--threads", "0"], "--threads", status: 64),
            Row(["frobnicate"], "frobnicate", status: 64),
        ]
        XCTAssertGreaterThanOrEqual(rows.count, 60)
        for row in rows {
            XCTAssertFalse(row.mentions.contains(Self.noModel))
            try check(row, maxSeconds: 5)
        }
    }

    /// `run` with an output folder that is a regular file, under a file, or on a file system where nothing can be created:
    /// one line naming the folder and the cause, before any stage runs.
    func testRunChecksItsOutputFolderBeforeAnyStage() throws {
        let plainFile = try write("plain", Data("x".utf8))
        let recipe = try write(
            "r.yaml",
            Data(
                """
                version: 1
                name: bad-out
                model: \(try harness.modelPath())
                stages:
                  importance: { criterion: l1 }
                  prune: { ratio: 0.2, layers: 3-27 }

                """.utf8))
        for (out, mentions) in [
            (plainFile, plainFile + ": exists and is a file"), (plainFile + "/sub", plainFile + " is a file, not a directory"),
            ("/proc/topiary-run", "/proc/topiary-run: cannot be written"),
        ] {
            try check(Row(["run", recipe, "--out", out], mentions, status: 1), maxSeconds: 10)
        }
    }

    /// Sizes beyond the model's context length are refused after the model is read, before anything large is allocated
    /// (each of these crashed with "out of memory" before).
    func testSizesBeyondTheContextOrTheMemoryAreRefused() throws {
        let model = try harness.modelPath()
        let text = try write("text.txt", Data(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 40).utf8))
        let rows: [Row] = [
            Row(
                ["perplexity", "--model", model, "--text", text, "--window", "100000", "--max-windows", "1"], "--window 100000",
                "context length", status: 1),
            Row(
                ["finetune", "--model", model, "--data", text, "--out", dir + "/ft", "--length", "100000", "--batch", "1", "--steps", "1"],
                "--length 100000", "context length", status: 1),
            Row(
                [
                    "prune", "--model", model, "--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--calibration", text,
                    "--calibration-length", "100000", "--calibration-windows", "1",
                ], "--calibration-length 100000", "context length", status: 1),
            Row(
                ["sparsify", "--model", model, "--out", dir + "/s", "--calibration", text, "--calibration-length", "100000"],
                "--calibration-length 100000", "context length", status: 1),
            Row(
                ["generate", "--model", model, "--prompt", "Hello", "--max-tokens", "100000"], "--max-tokens 100000", "context length",
                status: 1),
            Row(["generate", "--model", model, "--prompt", "Hi", "--max-tokens", "\(Int.max)"], "--max-tokens \(Int.max)", status: 1),
            Row(
                [
                    "prune", "--model", model, "--out", dir + "/p", "--ratio", "0.2", "--layers", "3-27", "--calibration", text,
                    "--calibration-length", "8192", "--calibration-windows", "100000",
                ], "--calibration-windows 100000", "of memory, but only", "is available", status: 1),
            Row(
                [
                    "finetune", "--model", model, "--data", text, "--out", dir + "/ft", "--length", "8192", "--batch", "100000", "--steps",
                    "1",
                ],
                "--batch 100000", "of memory, but only", status: 1),
            Row(
                ["prune", "--model", model, "--out", dir + "/p", "--ratio", "0.2", "--layers", "3-40", "--importance", "l1"],
                "--layers 3-40",
                status: 1),
        ]
        for row in rows { try check(row, maxSeconds: 60) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/p"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/s"))
    }

    /// Under a process memory limit (`ulimit -v`, 2.4 GiB: the model loads, one 8192-token window does not fit), perplexity
    /// is refused with the memory it would need and what the limit leaves, before the first forward pass (it used to run
    /// the first layers for about a minute and die with "Fatal error: out of memory allocating …").
    func testAPassLargerThanTheProcessMemoryLimitIsRefusedBeforeItStarts() throws {
        let model = try harness.modelPath()
        let text = try write("long.txt", Data(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 2500).utf8))
        let errPath = dir + "/stderr"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        // One BLAS thread: OpenBLAS's threads retry a refused buffer mmap forever under `ulimit -v` (see ResourceLimitTests).
        p.arguments = [
            "-c",
            "ulimit -v 2500000 && OPENBLAS_NUM_THREADS=1 exec timeout 120 \"$0\" perplexity --model \"$1\" --text \"$2\" "
                + "--window 8192 --max-windows 1",
            harness.binary.path, model, text,
        ]
        FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: errPath)
        p.standardOutput = FileHandle.nullDevice
        let start = Date()
        try p.run()
        p.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        let stderr = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 1, stderr)
        let lines = stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, stderr)
        XCTAssertTrue(
            stderr.hasPrefix("topiary: error: perplexity with 1 window of 8192 tokens per forward pass would need about "), stderr)
        XCTAssertTrue(stderr.contains("is available; use smaller sizes"), stderr)
        XCTAssertFalse(stderr.contains("Fatal error") || stderr.contains("out of memory"), stderr)
        XCTAssertLessThan(seconds, 60, "refused after \(seconds) s: the forward pass ran")
    }
}
