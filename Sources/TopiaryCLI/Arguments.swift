import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryModels
import TopiaryPipeline
import TopiaryRecover

/// `--model`: where the model comes from.
struct ModelArguments: ParsableArguments {
    /// `$TOPIARY_MODEL`, or the default model where ``DefaultLocations`` finds it (from any working folder).
    static var defaultModel: String { DefaultLocations.model }

    @Option(
        name: .long,
        help: ArgumentHelp("A GGUF model file, a Topiary checkpoint directory or a Hugging Face model directory.", valueName: "path"))
    var model: String = ModelArguments.defaultModel

    @Option(name: .long, help: ArgumentHelp("OpenBLAS threads (default: all cores).", valueName: "n"))
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// Loads the model; `adapters` (a LoRA directory) are applied unmerged, `streamLayers` > 0 keeps a GGUF's weights
    /// in its file (``StreamingArguments``).
    func load(adapters: String? = nil, streamLayers: Int = 0) throws -> LoadedModel {
        if let threads { setBLASThreads(threads) }
        if streamLayers > 0 && adapters != nil {
            throw CLIError("--adapters cannot be applied to a streamed model (--stream-layers); merge them first")
        }
        if DefaultLocations.isMissingDefault(model) { throw CLIError(DefaultLocations.missingModelMessage) }
        let loaded = try ModelLoader.load(path: model, streamLayers: streamLayers)
        if let adapters {
            let m = loaded.model
            try LoRATrainer.loadAdapters(directory: adapters, into: m)
        }
        return loaded
    }
}

/// `--data`: the folder of evaluation data (WikiText-2, PTB, zero-shot tasks).
struct DataArguments: ParsableArguments {
    /// `$TOPIARY_DATA`, or the first of ../shared/data, the repository's ../shared/data and Topiary's home that holds it.
    static var defaultData: String { DefaultLocations.data }

    @Option(name: .long, help: ArgumentHelp("Folder with wikitext-2-raw/, ptb/, zeroshot/.", valueName: "dir"))
    var data: String = DataArguments.defaultData

    var wikitext: String { data + "/wikitext-2-raw/test.txt" }
}

/// `--adapters`: LoRA adapters applied unmerged (the commands that run or write the model).
struct AdapterArguments: ParsableArguments {
    @Option(
        name: .long, help: ArgumentHelp("A directory with LoRA adapters (adapter_model.safetensors) to apply unmerged.", valueName: "dir"))
    var adapters: String?

    func validate() throws {
        // A missing folder is named before any model is loaded.
        if let adapters { try LoRATrainer.checkAdapterDirectory(adapters) }
    }
}

/// `--stream-layers`: layer streaming for models larger than memory (perplexity, prune, sparsify).
struct StreamingArguments: ParsableArguments {
    @Option(
        name: .customLong("stream-layers"),
        help: ArgumentHelp(
            "Keep a GGUF model's weights quantized in the mapped file and dequantize at most this many layers at a time (0: load the "
                + "whole model as fp32). For models larger than memory, e.g. a 7B model on 24 GiB: perplexity, prune (to a .gguf) and "
                + "sparsify (wanda/sparsegpt, to a .gguf) run layer by layer.",
            valueName: "n"))
    var streamLayers: Int = 0

    func validate() throws {
        guard streamLayers >= 0 else { throw ValidationError("--stream-layers must be ≥ 0") }
    }
}

/// `--shard I/N`, `--no-compute`: a grid's cells split over the tasks of a batch job (a Slurm array, a Kubernetes
/// Indexed Job), and the run that assembles them.
struct ShardArguments: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Compute only shard I of N of the cells (1 ≤ I ≤ N) into --out, shared by every shard; the same command without "
                + "--shard then assembles the table. Default under a Slurm job array: SLURM_ARRAY_TASK_ID of "
                + "SLURM_ARRAY_TASK_COUNT; in a Kubernetes Indexed Job: JOB_COMPLETION_INDEX of TOPIARY_SHARD_COUNT. "
                + "`none`: the whole grid even there; `auto`: from those variables.",
            valueName: "I/N"))
    var shard: String?
    @Flag(
        name: .customLong("no-compute"),
        help: "Assemble only: list the cells no shard has finished and fail instead of computing them.")
    var noCompute = false

    /// The shard this process is (nil: the whole grid).
    func resolved() throws -> Shard? {
        do {
            if shard == "none" { return nil }
            if let shard, shard != "auto" { return try Shard(parsing: shard) }
            return try Shard.fromEnvironment()
        } catch let e as RequestError { throw ValidationError(e.describe { "--" + $0 }) }
    }

    func validate() throws {
        if try resolved() != nil && noCompute { throw ValidationError("--no-compute is for the assembling run, without --shard") }
    }
}
