import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryPipeline

/// `topiary slurm`: a sweep (or a recipe's sweep) as a Slurm job array plus a dependent assembling job.
struct Slurm: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write (and with --submit, submit) a Slurm job array that runs a sweep's cells in parallel, then assembles them.",
        discussion: """
            The command after `--` is a `topiary sweep …` or `topiary run RECIPE …` whose output folder all tasks share \
            (a file system every node sees). Task I of the array runs it with --shard I/N and computes every N-th cell; \
            a second job, submitted with --dependency=afterany on the array, runs it without a shard: it takes every \
            finished cell, computes any that are missing (a task that failed) and writes the same table, plot and \
            report as one process would. A cancelled or failed task can simply be submitted again: finished cells are \
            kept. CPUs, memory and time per task come from the work's own estimate (the model's size, the cells per \
            task, the tokens per cell); --cpus, --mem and --time override them. Also written: kubernetes-job.yaml, the \
            same work as a Kubernetes Indexed Job.

            Example: topiary slurm --tasks 4 --submit -- sweep --methods wanda,sparsegpt,magnitude --levels 0.1,0.5,0.9 \\
                       --out /shared/sweeps/w
            """)

    @Option(help: "Array tasks (shards).") var tasks: Int
    @Option(help: "CPUs per task.") var cpus: Int = 2
    @Option(help: ArgumentHelp("Memory per task in GiB (default: estimated from the model).", valueName: "GiB")) var mem: Int?
    @Option(help: ArgumentHelp("Time limit per task, in minutes (default: estimated from the cells per task).", valueName: "min"))
    var time: Int?
    @Option(help: "Slurm partition (default: the cluster's).") var partition: String?
    @Option(help: ArgumentHelp("Folder for the job files and task logs (default: OUT/slurm of the command).", valueName: "dir"))
    var scripts: String?
    @Flag(help: "Submit with sbatch: the array, then the assembling job depending on it.") var submit = false
    @Argument(parsing: .postTerminator, help: ArgumentHelp("The topiary command to shard (after --).", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        guard (1...Shard.maxCount).contains(tasks) else { throw ValidationError("--tasks \(tasks) must be in 1…\(Shard.maxCount)") }
        guard (1...1024).contains(cpus) else { throw ValidationError("--cpus \(cpus) must be in 1…1024") }
        if let mem, !(1...65_536).contains(mem) { throw ValidationError("--mem \(mem) must be in 1…65536 (GiB)") }
        if let time, !(1...525_600).contains(time) { throw ValidationError("--time \(time) must be in 1…525600 (minutes)") }
        guard let first = command.first, ["sweep", "run"].contains(first) else {
            throw ValidationError(
                "give the command to shard after --: `topiary slurm --tasks 4 -- sweep … --out DIR` (or `-- run RECIPE`)")
        }
        if command.contains(where: { $0 == "--shard" || $0.hasPrefix("--shard=") }) {
            throw ValidationError("the command after -- must not have --shard: each task gets its own")
        }
    }

    func run() throws {
        try reportingErrors {
            let cwd = FileManager.default.currentDirectoryPath
            func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : cwd + "/" + p }
            // The sweep the command describes: its cells and model size the tasks.
            let sweep: SweepConfig, model: String, out: String, name: String
            if command[0] == "sweep" {
                let s = try Sweep.parse(Array(command.dropFirst()))
                sweep = try s.request()
                model = s.modelArguments.model
                out = s.out
                name = "topiary-sweep"
            } else {
                let r = try Run.parse(Array(command.dropFirst()))
                let recipe = try Recipe.load(path: r.recipe, dataOverride: r.data, modelOverride: r.model)
                guard let s = recipe.sweep else { throw CLIError("\(r.recipe): the recipe has no sweep stage to shard") }
                sweep = s
                model = recipe.model
                out = r.out ?? "checkpoints/" + recipe.name
                name = "topiary-" + recipe.name
            }
            let estimate = BatchJob.estimate(sweep: sweep, parameters: try BatchJob.parameters(of: model), tasks: tasks, cpus: cpus)
            let dir = absolute(scripts ?? out + "/slurm")
            let job = BatchJob(
                name: name, executable: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path, arguments: command,
                workingDirectory: cwd, tasks: tasks, cpus: cpus, memoryGiB: mem ?? estimate.memoryGiB, minutes: time ?? estimate.minutes,
                partition: partition, scriptDirectory: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try AtomicFile.write(job.slurmArrayScript, to: dir + "/array.sbatch")
            try AtomicFile.write(job.slurmAssembleScript, to: dir + "/assemble.sbatch")
            try AtomicFile.write(job.kubernetesIndexedJob, to: dir + "/kubernetes-job.yaml")
            let cells = sweep.methods.count * sweep.levels.count
            print(
                "\(cells) cells over \(tasks) tasks (\(cpus) CPUs, \(job.memoryGiB) GiB, \(job.time) each): \(dir)/array.sbatch, "
                    + "\(dir)/assemble.sbatch, \(dir)/kubernetes-job.yaml")
            guard submit else {
                print("submit: sbatch --parsable \(dir)/array.sbatch, then sbatch --dependency=afterany:<its id> \(dir)/assemble.sbatch")
                return
            }
            let array = try sbatch(["--parsable", dir + "/array.sbatch"])
            let assemble = try sbatch(["--parsable", "--dependency=afterany:\(array)", dir + "/assemble.sbatch"])
            print("submitted array job \(array) and assembling job \(assemble); logs in \(dir)")
        }
    }

    /// Runs sbatch and returns the job id it prints (`--parsable`: `ID` or `ID;cluster`).
    func sbatch(_ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["sbatch"] + arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { throw CLIError("sbatch could not be started (is Slurm installed?): \(error.localizedDescription)") }
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let problem = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard p.terminationStatus == 0,
            let id = text.split(separator: ";").first.map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }),
            !id.isEmpty
        else {
            throw CLIError("sbatch \(arguments.last ?? "") failed: " + problem.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return id
    }
}
