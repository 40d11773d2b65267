import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryGGUF
import TopiaryModels
import TopiaryPipeline

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a model for other runtimes: GGUF for llama.cpp, or safetensors + config.json for transformers.",
        discussion: """
            --format gguf writes one GGUF v3 file (llama.cpp's tensor names and q/k layout, the source's tokenizer \
            metadata) with matrices stored as --type: f32, f16, q8_0, q4_0, q4_1, the K-quants q4_k, q5_k, q6_k, or \
            q4_k_m, llama.cpp's Q4_K_M mix (Q4_K, with Q6_K for the output matrix and for attn_v and ffn_down in the \
            layers llama.cpp picks). All are quantized by Topiary; norms stay F32; q4_0/q4_1 keep the embedding and \
            output at Q8_0 and the K-quants the output (or tied embedding) at Q6_K, as llama.cpp does. A row whose \
            length is not a multiple of the block falls back as in llama.cpp's quantize (Q4_K → Q5_0, Q5_K → Q5_1, \
            Q6_K → Q8_0), and to F16 when it is not a multiple of 32 either; the command lists every fallback and the \
            file's bits per weight. A model whose layers differ (structured pruning) is written as \
            llama.cpp's 'deci' architecture, whose per-layer head_count / head_count_kv / feed_forward_length arrays \
            llama.cpp honours; uniform models are written as 'llama'.
            --format safetensors-hf writes a Hugging Face model directory (config.json for LlamaForCausalLM, \
            Qwen2ForCausalLM or Gemma3ForCausalLM, model.safetensors in fp32, tokenizer.json, tokenizer_config.json and \
            generation_config.json) that transformers loads with from_pretrained and Topiary with --model. transformers \
            has one head count and FFN width for all layers: a model whose layers differ is refused (export it as GGUF), \
            or written as a Topiary checkpoint with --allow-topiary-format.
            LoRA adapters given with --adapters are merged into the exported weights. Unstructured-sparse models are \
            stored dense.

            Example: topiary export --model checkpoints/smollm2-p20 --format gguf --type q4_k_m --out smollm2-p20.q4_k_m.gguf
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var adapterArguments: AdapterArguments
    @Option(help: "gguf or safetensors-hf.") var format: String = ExportConfig().format
    @Option(help: ArgumentHelp("Output: a .gguf file (gguf) or a directory (safetensors-hf).", valueName: "path")) var out: String
    @Option(help: "GGUF tensor type: \(GGUFExporter.typeNames.joined(separator: ", ")) (default f32).") var type: String?
    @Option(help: "GGUF architecture: auto (llama when layers are uniform, deci when they differ), llama or deci.") var arch: String =
        ExportConfig().arch
    @Option(help: "general.name of the GGUF file (default: the source's).") var name: String?
    @Flag(help: "safetensors-hf: write a model whose layers differ as a Topiary checkpoint (which transformers cannot load).")
    var allowTopiaryFormat = false
    @Flag(help: "Replace --out if it exists.") var force = false
    @Flag(help: "Print the export report as JSON (keys: format, architecture, tensors, fallbacks, notes …).") var json = false

    /// The request the options describe (a recipe's export stage decodes the same one).
    var request: ExportConfig {
        var c = ExportConfig()
        c.format = format
        c.type = type
        c.arch = arch
        c.name = name
        c.allowTopiaryFormat = allowTopiaryFormat
        return c
    }

    func validate() throws {
        try usage(.export) { try request.validate() }
    }

    func run() throws {
        try reportingErrors {
            if FileManager.default.fileExists(atPath: out) && !force {
                throw CLIError("\(out) exists; pass --force to replace it")
            }
            if format == "gguf" {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory), isDirectory.boolValue {
                    throw CLIError("\(out) is a directory; --format gguf writes a single file")
                }
            }
            try OutputLocation.checkWritable(out, as: format == "gguf" ? .file : .directory)
            let loaded = try modelArguments.load(adapters: adapterArguments.adapters)
            let report = try request.export(loaded, to: out)
            if json { return try printJSON(report) }
            let c = loaded.model.config
            for note in report.notes { print("note: \(note)") }
            for line in report.fallbacks { print("fallback: \(line)") }
            var types: [String: Int] = [:]
            for t in report.tensors { types[t.type, default: 0] += 1 }
            let typeList = types.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            print(
                "wrote \(out): \(report.format), \(report.architecture), \(c.layerCount) layers, \(report.tensors.count) tensors "
                    + "(\(typeList)), \(ByteCountFormatter.string(fromByteCount: Int64(report.bytes), countStyle: .file)), "
                    + String(format: "%.2f bits per weight", report.bitsPerWeight)
            )
        }
    }
}
