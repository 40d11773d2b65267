import ArgumentParser
import Foundation
import TopiaryPipeline
import TopiaryRecover

struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recover a pruned model by distillation: LoRA adapters trained to match the dense teacher's next-token distributions.",
        discussion: """
            The loss is T² · KL(teacher ‖ student) on temperature-T softmaxes, times --kd-weight, plus the text's own \
            cross-entropy times 1 − --kd-weight, plus (with --hidden-layers) the mean-squared error between the two models' \
            residual streams after those layers. With --top-k K the teacher's K most likely tokens per position and the \
            remaining mass are cached in OUT/teacher-cache (or --teacher-cache), so a resumed run or another run on the same \
            windows does not run the teacher again; --top-k 0 uses the teacher's full distribution at every step. Data, \
            adapters, checkpoints (--resume) and outputs are those of `topiary finetune`.

            Example: topiary distill --model checkpoints/smollm2-p20 --teacher checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
                       --out checkpoints/smollm2-p20-kd --steps 200 --merge
            """)

    @OptionGroup var options: TrainingOptions
    @Option(help: ArgumentHelp("The dense model to learn from (a GGUF file or a Topiary checkpoint folder).", valueName: "path"))
    var teacher: String
    @Option(help: "Softmax temperature of teacher and student.") var temperature: Float = DistillationConfig().temperature
    @Option(name: .customLong("kd-weight"), help: "Weight of the KL term; the text's cross-entropy gets 1 − this.")
    var kdWeight: Float = DistillationConfig().weight
    @Option(name: .customLong("top-k"), help: "Cache the teacher's top-K tokens per position on disk (0: full logits at every step).")
    var topK: Int = DistillationConfig().topK
    @Option(
        name: .customLong("teacher-cache"),
        help: ArgumentHelp("Folder of the cached teacher targets (default: OUT/teacher-cache).", valueName: "dir"))
    var teacherCache: String?
    @Option(name: .customLong("hidden-layers"), help: "Also match the residual stream after these layers (comma-separated indices).")
    var hiddenLayers: String?
    @Option(name: .customLong("hidden-weight"), help: "Weight of the hidden-state MSE.") var hiddenWeight: Float = DistillationConfig()
        .hiddenWeight

    var request: FinetuneConfig {
        var c = options.request(FinetuneConfig.distillation())
        var d = c.distillation!
        d.temperature = temperature
        d.weight = kdWeight
        d.topK = topK
        d.hiddenWeight = hiddenWeight
        d.hiddenLayers = (hiddenLayers ?? "").split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) ?? -1 }
        c.distillation = d
        c.teacher = teacher
        c.teacherCache = teacherCache
        return c
    }

    func validate() throws {
        try usage(.distill) { try request.validate() }
    }

    func run() throws { try options.run(request, teacher: teacher) }
}
