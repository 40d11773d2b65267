import Foundation
import XCTest

/// A sweep's cells split over shards (the tasks of a Slurm array or a Kubernetes Indexed Job) that share one output
/// folder, then assembled by the same command without a shard: the same table as one process, no cell computed twice.
final class ShardTests: XCTestCase {
    let helper = CLIHarness()

    func dataPath() throws -> String {
        let p = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? helper.root + "/../shared/data"
        guard FileManager.default.fileExists(atPath: p + "/wikitext-2-raw/test.txt") else { throw XCTSkip("data not found") }
        return p
    }

    /// A small sweep: 2 methods × 3 levels, short perplexity windows.
    func sweep(_ model: String, _ data: String, out: String) -> [String] {
        [
            "sweep", "--model", model, "--data", data, "--out", out, "--methods", "magnitude,wanda", "--levels", "0.2,0.5,0.8",
            "--window", "128", "--windows", "2", "--calibration-windows", "2", "--calibration-length", "128", "--quiet",
        ]
    }

    /// The cells of a sweep's CSV: one row per method and level, the numbers as numbers.
    static func table(_ dir: String) throws -> [[String]] {
        let csv = try String(contentsOfFile: dir + "/02-sweep/sweep.csv", encoding: .utf8)
        return csv.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    static func assertSameTable(_ a: [[String]], _ b: [[String]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (ra, rb) in zip(a, b) {
            XCTAssertEqual(ra.count, rb.count, file: file, line: line)
            for (x, y) in zip(ra, rb) {
                if let u = Double(x), let v = Double(y) {
                    XCTAssertEqual(u, v, accuracy: 1e-6 * max(1, abs(u)), "\(ra) vs \(rb)", file: file, line: line)
                } else {
                    XCTAssertEqual(x, y, file: file, line: line)
                }
            }
        }
    }

    /// Starts `topiary` without waiting (stderr to a file).
    func start(_ args: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = helper.binary
        p.arguments = args
        FileManager.default.createFile(atPath: log, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        return p
    }

    func testTwoShardsAtOnceThenTheAssemblerComputesNothingAndMatchesOneProcess() throws {
        let model = try helper.modelPath(), data = try dataPath()
        let root = NSTemporaryDirectory() + "topiary-shards-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }

        let single = try helper.run(sweep(model, data, out: root + "/single"))
        XCTAssertEqual(single.status, 0, single.stderr)

        // Both shards at the same time on one folder.
        let shards = try (1...2).map { i in
            try start(sweep(model, data, out: root + "/sharded") + ["--shard", "\(i)/2"], log: root + "/shard\(i).log")
        }
        for p in shards { p.waitUntilExit() }
        for (i, p) in shards.enumerated() {
            let log = (try? String(contentsOfFile: root + "/shard\(i + 1).log", encoding: .utf8)) ?? ""
            XCTAssertEqual(p.terminationStatus, 0, log)
            XCTAssertTrue(log.contains("shard \(i + 1)/2: 3 cells computed"), log)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/sharded/02-sweep/sweep.csv"), "a shard wrote the table")
        let cells = try FileManager.default.contentsOfDirectory(atPath: root + "/sharded/02-sweep").filter { $0.hasPrefix("cell-") }
        XCTAssertEqual(cells.count, 6)

        // Assembling only (it would fail if any cell were missing), then the same table as one process.
        let assemble = try helper.run(sweep(model, data, out: root + "/sharded") + ["--no-compute"])
        XCTAssertEqual(assemble.status, 0, assemble.stderr)
        XCTAssertTrue(assemble.stderr.contains("0 cells computed, 6 taken over"), assemble.stderr)
        Self.assertSameTable(try Self.table(root + "/single"), try Self.table(root + "/sharded"))

        // One shard alone: the assembler names what is missing and fails, without computing it.
        let one = try helper.run(sweep(model, data, out: root + "/half") + ["--shard", "1/2"])
        XCTAssertEqual(one.status, 0, one.stderr)
        helper.assertCleanFailure(
            try helper.run(sweep(model, data, out: root + "/half") + ["--no-compute"]), mentions: "3 of 6 cells are not finished")
        // The plain command then computes only the three missing cells.
        let rest = try helper.run(sweep(model, data, out: root + "/half"))
        XCTAssertEqual(rest.status, 0, rest.stderr)
        XCTAssertTrue(rest.stderr.contains("3 cells computed, 3 taken over"), rest.stderr)
        Self.assertSameTable(try Self.table(root + "/single"), try Self.table(root + "/half"))

        // Usage errors: a bad shard, and --no-compute with a shard.
        helper.assertCleanFailure(try helper.run(sweep(model, data, out: root + "/x") + ["--shard", "3/2"]), mentions: "--shard 3/2")
        helper.assertCleanFailure(
            try helper.run(sweep(model, data, out: root + "/x") + ["--shard", "1/2", "--no-compute"]), mentions: "--no-compute")
    }

    /// Whether a Slurm cluster answers here (`scripts/slurm-local.sh start` makes one; CI does, and there a missing
    /// cluster fails the test instead of skipping it).
    func slurmAvailable() throws -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["sinfo", "-h", "-o", "%t"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return p.terminationStatus == 0 && (text.contains("idle") || text.contains("mix") || text.contains("alloc"))
    }

    func testSweepAsASlurmJobArrayEqualsOneProcess() throws {
        guard let (model, data, root) = try slurmWorkspace("topiary-slurm") else { return }

        let submitted = try helper.run(
            ["slurm", "--tasks", "3", "--cpus", "1", "--mem", "3", "--time", "20", "--submit", "--"]
                + sweep(model, data, out: root + "/array"))
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let ids = Self.jobIDs(submitted.stdout)
        let script = try String(contentsOfFile: root + "/array/slurm/array.sbatch", encoding: .utf8)
        XCTAssertTrue(script.contains("#SBATCH --array=1-3"), script)
        XCTAssertTrue(script.contains("--shard \"$SLURM_ARRAY_TASK_ID/3\""), script)
        // Wait for the array and the assembling job to leave the queue.
        XCTAssertEqual(ids.count, 2, submitted.stdout)
        try waitForSlurm(ids)
        let assembleLog = (try? String(contentsOfFile: root + "/array/slurm/assemble.out", encoding: .utf8)) ?? "(no log)"
        XCTAssertTrue(assembleLog.contains("0 cells computed, 6 taken over"), assembleLog)
        for task in 1...3 {
            let log = (try? String(contentsOfFile: root + "/array/slurm/task-\(task).out", encoding: .utf8)) ?? "(no log)"
            XCTAssertTrue(log.contains("shard \(task)/3: 2 cells computed"), log)
        }
        Self.assertSameTable(try Self.table(root + "/single"), try Self.table(root + "/array"))
    }

    /// Two tasks split into cells over three shards, assembled: the same accuracies and standard errors as one process.
    func testEvaluationSplitAcrossShardsEqualsOneProcess() throws {
        let model = try helper.modelPath(), data = try dataPath()
        let root = NSTemporaryDirectory() + "topiary-eval-shards-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let base = ["evaluate", "--model", model, "--data", data, "--tasks", "boolq,piqa", "--limit", "200", "--json"]
        func summary(_ r: CLIHarness.Result) throws -> [String: Any] {
            XCTAssertEqual(r.status, 0, r.stderr)
            var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            // Times differ; everything else must not.
            var results = json["results"] as? [String: [String: Any]] ?? [:]
            for k in results.keys { results[k]?["seconds"] = nil }
            json["results"] = results
            return json
        }
        let single = try summary(try helper.run(base))
        let shards = try (1...3).map { i in try start(base + ["--out", root + "/out", "--shard", "\(i)/3"], log: root + "/eval\(i).log") }
        for p in shards { p.waitUntilExit() }
        XCTAssertEqual(shards.map(\.terminationStatus), [0, 0, 0])
        let assembled = try helper.run(base + ["--out", root + "/out", "--no-compute"])
        XCTAssertTrue(assembled.stderr.contains("0 cells computed, 4 taken over"), assembled.stderr)
        let merged = try summary(assembled)
        XCTAssertEqual(
            NSDictionary(dictionary: merged["results"] as? [String: Any] ?? [:]),
            NSDictionary(dictionary: single["results"] as? [String: Any] ?? [:]))
        XCTAssertEqual(merged["average"] as? Double, single["average"] as? Double)
    }

    /// The array's and the assembling job's ids from `topiary slurm --submit`'s last line.
    static func jobIDs(_ stdout: String) -> [String] {
        guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("submitted array job ") }) else { return [] }
        let words = line.replacingOccurrences(of: ";", with: " ").split(separator: " ").map(String.init)
        return words.indices.filter { words[$0] == "job" && $0 + 1 < words.count }.map { words[$0 + 1] }
    }

    /// The model, the data and a fresh folder `name` holding a single-process run of the sweep (`ROOT/single`), when a
    /// Slurm cluster answers; nil (after failing the test) in CI without one; a skip elsewhere.
    func slurmWorkspace(_ name: String) throws -> (model: String, data: String, root: String)? {
        guard try slurmAvailable() else {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                XCTFail("no Slurm cluster answers (`.ci/run` starts one with scripts/slurm-local.sh)")
                return nil
            }
            throw XCTSkip("no Slurm cluster (start one with: sudo scripts/slurm-local.sh start)")
        }
        let model = try helper.modelPath(), data = try dataPath()
        let root = NSTemporaryDirectory() + "\(name)-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let single = try helper.run(sweep(model, data, out: root + "/single"))
        XCTAssertEqual(single.status, 0, single.stderr)
        return (model, data, root)
    }

    /// Waits until none of `ids` is in the Slurm queue (or `seconds` pass).
    func waitForSlurm(_ ids: [String], seconds: Double = 900) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let q = Process()
            q.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            q.arguments = ["squeue", "-h", "-o", "%i"]
            let out = Pipe()
            q.standardOutput = out
            try q.run()
            let queue = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            q.waitUntilExit()
            if !ids.contains(where: { id in queue.split(separator: "\n").contains { $0.hasPrefix(id) } }) { return }
            Thread.sleep(forTimeInterval: 1)
        }
    }

    /// A job array cancelled (`scancel`) while its tasks compute, then submitted again: the finished cells are kept, only
    /// the rest are computed, and the table equals one process's.
    func testCancelledArrayResubmittedFinishesWithoutRecomputing() throws {
        guard let (model, data, root) = try slurmWorkspace("topiary-slurm-cancel") else { return }
        let submit =
            ["slurm", "--tasks", "2", "--cpus", "1", "--mem", "3", "--time", "20", "--submit", "--"]
            + sweep(model, data, out: root + "/array")
        let first = try helper.run(submit)
        XCTAssertEqual(first.status, 0, first.stderr)
        let ids = Self.jobIDs(first.stdout)
        XCTAssertEqual(ids.count, 2, first.stdout)
        // Cancel everything once the first cell is written.
        let stage = root + "/array/02-sweep"
        func cells() -> Int { ((try? FileManager.default.contentsOfDirectory(atPath: stage)) ?? []).filter { $0.hasPrefix("cell-") }.count }
        let deadline = Date().addingTimeInterval(600)
        while cells() == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        let cancel = Process()
        cancel.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        cancel.arguments = ["scancel"] + ids
        try cancel.run()
        cancel.waitUntilExit()
        try waitForSlurm(ids)
        let kept = cells()
        XCTAssertGreaterThan(kept, 0)
        XCTAssertLessThan(kept, 6, "the array finished before it was cancelled; nothing was left to resubmit")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stage + "/sweep.csv"))

        let second = try helper.run(submit)
        XCTAssertEqual(second.status, 0, second.stderr)
        try waitForSlurm(Self.jobIDs(second.stdout))
        let logs = try (1...2).map { try String(contentsOfFile: root + "/array/slurm/task-\($0).out", encoding: .utf8) }
        let computed = logs.compactMap { log in
            log.split(separator: "\n").first { $0.contains(": ") && $0.contains("cells computed in") }
                .flatMap { line in line.split(separator: " ").firstIndex(of: "cells").flatMap { Int(line.split(separator: " ")[$0 - 1]) } }
        }
        XCTAssertEqual(computed.reduce(0, +), 6 - kept, "the resubmitted tasks recomputed finished cells: \(logs)")
        let assembleLog = (try? String(contentsOfFile: root + "/array/slurm/assemble.out", encoding: .utf8)) ?? "(no log)"
        XCTAssertTrue(assembleLog.contains("0 cells computed, 6 taken over"), assembleLog)
        Self.assertSameTable(try Self.table(root + "/single"), try Self.table(root + "/array"))
    }
}
