import Foundation
import TopiaryGGUF
import TopiaryModels

/// A sharded piece of work for a batch engine: `tasks` processes each run `arguments` with their shard, then one
/// process runs `arguments` alone to assemble the table. The engine schedules; Topiary only writes its job files.
public struct BatchJob: Sendable {
    public var name: String
    /// The topiary executable and the command it runs (`sweep …` or `run recipe.yaml …`), without `--shard`.
    public var executable: String
    public var arguments: [String]
    public var workingDirectory: String
    public var tasks: Int
    public var cpus: Int
    public var memoryGiB: Int
    public var minutes: Int
    public var partition: String?
    /// Where the job files and the tasks' logs go.
    public var scriptDirectory: String

    public init(
        name: String, executable: String, arguments: [String], workingDirectory: String, tasks: Int, cpus: Int, memoryGiB: Int,
        minutes: Int, partition: String? = nil, scriptDirectory: String
    ) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.workingDirectory = workingDirectory
        self.tasks = tasks
        self.cpus = cpus
        self.memoryGiB = memoryGiB
        self.minutes = minutes
        self.partition = partition
        self.scriptDirectory = scriptDirectory
    }

    /// A word for a POSIX shell.
    static func quoted(_ s: String) -> String {
        s.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=,+@%".contains($0) } && !s.isEmpty
            ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    var command: String { ([executable] + arguments).map(Self.quoted).joined(separator: " ") }

    public var time: String { String(format: "%02d:%02d:00", minutes / 60, minutes % 60) }

    func header(array: Bool, log: String) -> String {
        var lines = [
            "#!/bin/bash", "#SBATCH --job-name=\(Self.quoted(name + (array ? "" : "-assemble")))",
            "#SBATCH --cpus-per-task=\(cpus)", "#SBATCH --mem=\(memoryGiB)G", "#SBATCH --time=\(time)",
            "#SBATCH --output=\(Self.quoted(scriptDirectory + "/" + log))",
        ]
        if array { lines.insert("#SBATCH --array=1-\(tasks)", at: 2) }
        if let partition { lines.append("#SBATCH --partition=\(Self.quoted(partition))") }
        return lines.joined(separator: "\n")
    }

    /// The job array: task `SLURM_ARRAY_TASK_ID` computes its shard of the cells.
    public var slurmArrayScript: String {
        """
        \(header(array: true, log: "task-%a.out"))
        # Written by `topiary slurm`: shard $SLURM_ARRAY_TASK_ID of \(tasks) of the cells into the shared output folder.
        set -euo pipefail
        cd \(Self.quoted(workingDirectory))
        export OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-\(cpus)}"
        exec \(command) --shard "$SLURM_ARRAY_TASK_ID/\(tasks)"

        """
    }

    /// The assembling job (submitted with a dependency on the array): gathers every cell and writes the table.
    public var slurmAssembleScript: String {
        """
        \(header(array: false, log: "assemble.out"))
        # Written by `topiary slurm`: runs once every array task has ended; gathers the cells (computing any that are
        # missing) and writes the table, plot and report.
        set -euo pipefail
        cd \(Self.quoted(workingDirectory))
        export OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-\(cpus)}"
        exec \(command) --shard none

        """
    }

    /// The same work as a Kubernetes Indexed Job (the image must hold topiary, the model and the data at these paths,
    /// and the output folder must be a volume every pod shares).
    public var kubernetesIndexedJob: String {
        let args = (arguments + ["--shard", "auto"]).map { "\"" + $0.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        return """
            apiVersion: batch/v1
            kind: Job
            metadata:
              name: \(name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }.map(String.init).joined())
            spec:
              completionMode: Indexed
              completions: \(tasks)
              parallelism: \(tasks)
              template:
                spec:
                  restartPolicy: OnFailure
                  containers:
                  - name: topiary
                    image: topiary:latest   # your image with topiary, the model and the data
                    workingDir: \(workingDirectory)
                    command: ["\(executable)"]
                    args: [\(args.joined(separator: ", "))]
                    env:
                    - name: TOPIARY_SHARD_COUNT
                      value: "\(tasks)"
                    - name: OPENBLAS_NUM_THREADS
                      value: "\(cpus)"
                    resources:
                      requests: { cpu: "\(cpus)", memory: "\(memoryGiB)Gi" }
                      limits: { memory: "\(memoryGiB)Gi" }
                    # mount the shared output folder here (e.g. a ReadWriteMany volume)

            """
    }

    /// Resources of one task of a sweep on `model`: memory for the model's fp32 copies (the fresh copy of each cell,
    /// the dense statistics of gradient methods, activations) and time for its cells at a conservative rate
    /// (2 × parameters FLOPs per token forward, 3× that with a backward, at 5 GFLOP/s per core).
    public static func estimate(sweep: SweepConfig, parameters: Int, tasks: Int, cpus: Int) -> (memoryGiB: Int, minutes: Int) {
        let bytes = Double(parameters) * 4 * 4 + Double(1 << 30)
        let memory = Int((bytes / Double(1 << 30)).rounded(.up))
        let cells = (sweep.methods.count * sweep.levels.count + tasks - 1) / tasks
        let tokens =
            Double(sweep.perplexity.datasets.count * sweep.perplexity.window * sweep.perplexity.windows)
            + Double(sweep.calibration.windows * sweep.calibration.length) * 3
        let seconds = Double(cells) * tokens * 2 * Double(parameters) / (5e9 * Double(max(cpus, 1)))
        return (max(memory, 2), max(15, Int((seconds / 60 * 2).rounded(.up)) + 10))
    }

    /// The parameter count a model file declares (a GGUF's header, or a checkpoint's config), to size the tasks.
    public static func parameters(of model: String) throws -> Int {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue {
            return try ModelLoader.load(path: model).model.parameterCount
        }
        return try GGUFFile(path: model, headerOnly: true).tensors.reduce(0) { $0 + $1.elementCount }
    }
}
