import Foundation

/// Where Topiary looks for the default model and the evaluation data when the user names neither, so that a command
/// works from any working folder: the environment (`TOPIARY_MODEL`, `TOPIARY_DATA`), the working folder's
/// `checkpoints/models/` and `../shared/data`, Topiary's home (`$TOPIARY_HOME`, else `$XDG_CACHE_HOME/topiary`, else
/// `~/.cache/topiary`: `make model` links the model into its `models/`), and the repository this binary was built in.
public enum DefaultLocations {
    public static let modelFile = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// Topiary's home folder (models, data caches).
    public static var home: String {
        let env = ProcessInfo.processInfo.environment
        if let h = env["TOPIARY_HOME"], !h.isEmpty { return h }
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return x + "/topiary" }
        return NSHomeDirectory() + "/.cache/topiary"
    }

    /// The source repository of the running binary (the folder above `.build/…` holding Package.swift), if any.
    public static var repository: String? {
        guard var dir = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        for _ in 0..<6 {
            dir = (dir as NSString).deletingLastPathComponent
            if dir == "/" || dir.isEmpty { return nil }
            if FileManager.default.fileExists(atPath: dir + "/Package.swift"), FileManager.default.fileExists(atPath: dir + "/recipes") {
                return dir
            }
        }
        return nil
    }

    /// The places the default model is looked for, in order.
    public static var modelCandidates: [String] {
        var c = ["checkpoints/models/" + modelFile, home + "/models/" + modelFile]
        if let r = repository { c.append(r + "/checkpoints/models/" + modelFile) }
        return c
    }

    /// `$TOPIARY_MODEL`, else the first candidate that exists, else the first candidate (whose absence is reported by
    /// ``missingModelMessage``).
    public static var model: String {
        if let m = ProcessInfo.processInfo.environment["TOPIARY_MODEL"], !m.isEmpty { return m }
        return modelCandidates.first { FileManager.default.fileExists(atPath: $0) } ?? modelCandidates[0]
    }

    /// Whether `path` is the default model that was not found anywhere.
    public static func isMissingDefault(_ path: String) -> Bool {
        ProcessInfo.processInfo.environment["TOPIARY_MODEL"] == nil && path == modelCandidates[0]
            && !FileManager.default.fileExists(atPath: path)
    }

    /// What to do when no model was given and the default is nowhere.
    public static var missingModelMessage: String {
        "no --model given and the default model (\(modelFile)) is not in "
            + modelCandidates.joined(separator: ", ")
            + ": pass --model PATH (a GGUF file, a Topiary checkpoint or a Hugging Face model folder), or fetch the default "
            + "with `make model` in the Topiary repository (it also links it into \(home)/models)"
    }

    /// The places the evaluation data is looked for, in order.
    public static var dataCandidates: [String] {
        var c = ["../shared/data"]
        if let r = repository { c.append(((r as NSString).deletingLastPathComponent) + "/shared/data") }
        c.append(home + "/data")
        return c
    }

    /// `$TOPIARY_DATA`, else the first candidate holding WikiText-2, else `../shared/data`.
    public static var data: String {
        if let d = ProcessInfo.processInfo.environment["TOPIARY_DATA"], !d.isEmpty { return d }
        return dataCandidates.first { FileManager.default.fileExists(atPath: $0 + "/wikitext-2-raw/test.txt") } ?? dataCandidates[0]
    }
}
