import ArgumentParser
import Foundation
import TopiaryModels
import TopiaryRecover

/// `--model`: where the model comes from.
struct ModelArguments: ParsableArguments {
    static var defaultModel: String {
        ProcessInfo.processInfo.environment["TOPIARY_MODEL"] ?? "checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    @Option(name: .long, help: ArgumentHelp("A GGUF model file or a Topiary checkpoint directory.", valueName: "path"))
    var model: String = ModelArguments.defaultModel

    @Option(name: .long, help: ArgumentHelp("OpenBLAS threads (default: all cores).", valueName: "n"))
    var threads: Int?

    @Option(name: .long, help: ArgumentHelp("A directory with LoRA adapters (adapter_model.safetensors) to apply unmerged.", valueName: "dir"))
    var adapters: String?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func load() throws -> LoadedModel {
        if let threads { setBLASThreads(threads) }
        let loaded = try ModelLoader.load(path: model)
        if let adapters {
            guard let m = loaded.model as? any AdaptableModel else { throw CLIError("this model type does not take adapters") }
            try LoRATrainer.loadAdapters(directory: adapters, into: m)
        }
        return loaded
    }
}

/// `--data`: the folder of evaluation data (WikiText-2, PTB, zero-shot tasks).
struct DataArguments: ParsableArguments {
    static var defaultData: String { ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? "../shared/data" }

    @Option(name: .long, help: ArgumentHelp("Folder with wikitext-2-raw/, ptb/, zeroshot/.", valueName: "dir"))
    var data: String = DataArguments.defaultData

    var wikitext: String { data + "/wikitext-2-raw/test.txt" }
}
