import Foundation

/// The command-line face of a request: which option sets which key. The command reads its options into the request
/// with these names, shows a request's errors with them, and the option ⇔ recipe-key test compares them with the keys
/// the recipe reader knows: one table per command, so an option and its key cannot drift apart unseen.
public struct CommandLineFace: Sendable {
    /// The command (`prune`).
    public let command: String
    /// Where the request's keys live in a recipe (`stages` for a prune request, whose keys start with `importance.` or
    /// `prune.`; `stages.sparsify` for a sparsify request).
    public let recipePrefix: String
    /// Long option name (without dashes) → the request's key (`ratio` → `prune.ratio`), or `recipe.KEY` for a
    /// top-level key of a recipe (`model`, `data`, `threads`).
    public let keys: [String: String]
    /// Options that shape only the command's own output, each with what a recipe run uses instead.
    public let commandOnly: [String: String]
    /// Older spellings of options, hidden from the help (never used to name a key in a message).
    public var hidden: Set<String> = []

    /// The recipe path of a request key or `recipe.KEY`.
    public func recipePath(_ key: String) -> String { key.hasPrefix("recipe.") ? key : recipePrefix + "." + key }

    /// The option that sets `key` (`--ratio`); a key without an option is shown as itself.
    public func option(for key: String) -> String {
        keys.filter { $0.value == key && !hidden.contains($0.key) }.map(\.key).sorted { ($0.count, $0) < ($1.count, $1) }.first.map {
            "--" + $0
        } ?? key
    }

    /// A request's error in the command's terms (`--ratio 1.5 must be < 1.0`).
    public func message(_ e: RequestError) -> String { e.describe(option(for:)) }

    /// The faces of every command that builds a request.
    public static let all: [CommandLineFace] = [prune, sparsify, finetune, distill, sweep, export]

    /// Options every model-reading command shares, with their recipe keys.
    static let modelKeys = ["model": "recipe.model", "data": "recipe.data", "threads": "recipe.threads"]

    public static let prune: CommandLineFace = {
        var keys = modelKeys
        keys.merge(
            [
                "seed": "importance.seed", "importance": "importance.criterion", "aggregation": "importance.aggregation",
                "calibration": "importance.calibration.file", "calibration-windows": "importance.calibration.windows",
                "calibration-length": "importance.calibration.length", "calibration-offset": "importance.calibration.offset",
                "compensate": "prune.compensate", "no-compensate": "prune.compensate",
            ], uniquingKeysWith: { a, _ in a })
        for o in ["lambda", "taylor-order", "vd-steps", "vd-windows", "vd-lr", "vd-kl-weight", "obs-step"] {
            keys[o] = "importance." + o.replacingOccurrences(of: "-", with: "_")
        }
        for o in [
            "ratio", "layers", "mode", "round-to", "rounding", "merge", "allocation", "search-evaluations", "search-windows",
            "search-offset", "blocks",
            "block-criterion", "block-selection",
        ] {
            keys[o] = "prune." + o.replacingOccurrences(of: "-", with: "_")
        }
        return CommandLineFace(
            command: "prune", recipePrefix: "stages", keys: keys,
            commandOnly: [
                "out": "a run writes OUT/NN-prune/model (`topiary run --out`)",
                "force": "`topiary run --force` / `--from`",
                "format": "a run's stages write checkpoints; `hdf5` is a copy for other tools",
                "stream-layers": "layer streaming writes one GGUF; recipes hold the model in memory",
                "gguf-type": "the GGUF storage type of a streamed prune (see stream-layers)",
            ])
    }()

    public static let sparsify: CommandLineFace = {
        var keys = modelKeys
        keys.merge(calibrationKeys, uniquingKeysWith: { a, _ in a })
        for o in ["method", "sparsity", "nm", "allocation", "alpha-tail", "owl-m", "owl-lambda", "true-sequential", "seed", "gamma"] {
            keys[o] = o.replacingOccurrences(of: "-", with: "_")
        }
        keys["allocation-epsilon"] = "epsilon"
        return CommandLineFace(
            command: "sparsify", recipePrefix: "stages.sparsify", keys: keys,
            commandOnly: [
                "out": "a run writes OUT/NN-sparsify/model", "force": "`topiary run --force` / `--from`",
                "stream-layers": "layer streaming writes one GGUF; recipes hold the model in memory",
                "gguf-type": "the GGUF storage type of a streamed sparsify (see stream-layers)",
            ])
    }()

    public static let finetune: CommandLineFace = {
        var keys = modelKeys
        for o in [
            "text-format", "train-on-inputs", "data-offset", "rank", "alpha", "dropout", "targets", "lr", "schedule", "warmup",
            "weight-decay", "clip", "batch", "length", "accumulation", "steps", "max-seconds", "save-every", "eval-every",
            "val-windows", "seed",
        ] {
            keys[o] = o.replacingOccurrences(of: "-", with: "_")
        }
        keys["text"] = "data"
        keys["format"] = "text_format"
        return CommandLineFace(
            command: "finetune", recipePrefix: "stages.finetune", keys: keys,
            commandOnly: [
                "out": "a run writes OUT/NN-finetune", "merge": "a recipe's `merge` stage",
                "resume": "a run continues an interrupted stage by itself",
            ], hidden: ["format"])
    }()

    public static let distill: CommandLineFace = {
        var keys = finetune.keys
        for o in ["teacher", "temperature", "kd-weight", "top-k", "teacher-cache", "hidden-layers", "hidden-weight"] {
            keys[o] = o.replacingOccurrences(of: "-", with: "_")
        }
        // The same exceptions as finetune's (the two commands share their options), writing its own stage folder.
        var commandOnly = finetune.commandOnly
        commandOnly["out"] = "a run writes OUT/NN-distill"
        return CommandLineFace(
            command: "distill", recipePrefix: "stages.distill", keys: keys, commandOnly: commandOnly, hidden: finetune.hidden)
    }()

    public static let sweep: CommandLineFace = {
        var keys = modelKeys
        keys.merge(calibrationKeys, uniquingKeysWith: { a, _ in a })
        for o in ["methods", "levels", "seed"] { keys[o] = o }
        keys["datasets"] = "perplexity.datasets"
        keys["window"] = "perplexity.window"
        keys["windows"] = "perplexity.windows"
        return CommandLineFace(
            command: "sweep", recipePrefix: "stages.sweep", keys: keys,
            commandOnly: [
                "out": "a run's output folder (`topiary run --out`)", "quiet": "`topiary run --quiet`",
                "reuse": "an earlier sweep's cells; it changes no result, so it is not part of a recipe",
                "shard": "`topiary run --shard`: which cells a process computes, not what the run is",
                "no-compute": "`topiary run --no-compute`",
            ])
    }()

    public static let export: CommandLineFace = {
        var keys = ["model": "recipe.model", "threads": "recipe.threads"]
        for o in ["format", "type", "arch", "name"] { keys[o] = o }
        keys["allow-topiary-format"] = "allow_topiary_format"
        return CommandLineFace(
            command: "export", recipePrefix: "stages.export", keys: keys,
            commandOnly: [
                "out": "a run writes OUT/NN-export/model-TYPE.gguf or model-hf/", "force": "`topiary run --force` / `--from`",
                "json": "the stage writes export.json", "adapters": "a run exports its final model with its adapters",
            ])
    }()

    /// `--calibration`, `--calibration-windows`, … → `calibration.file`, `calibration.windows`, ….
    static let calibrationKeys: [String: String] = {
        var keys = ["calibration": "calibration.file"]
        for k in ["windows", "length", "offset"] { keys["calibration-" + k] = "calibration." + k }
        return keys
    }()
}
