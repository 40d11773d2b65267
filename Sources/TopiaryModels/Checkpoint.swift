import Foundation
import TopiaryCore
import TopiaryGGUF
import TopiaryTokenizers

/// Topiary's checkpoint directory: `config.json` (Hugging Face layout, per-layer sizes as arrays when
/// layers differ), `model.safetensors` (fp32, Hugging Face tensor names), `tokenizer_metadata.json` (the
/// `tokenizer.ggml.*` keys of the source GGUF), optional extra files (`pruning.json` …) and
/// `manifest.json`, written last, listing every file with its size and checksum.
public enum Checkpoint {
    public static let formatVersion = 1

    /// True when `path` looks like a checkpoint directory.
    public static func isCheckpoint(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
            && FileManager.default.fileExists(atPath: path + "/config.json")
    }

    /// Writes `model` and its tokenizer metadata to `directory` atomically: everything goes to a
    /// temporary sibling directory that replaces `directory` only once complete. `configJSON` replaces
    /// the `config.json` encoded from the model's config (it must decode to the same config).
    public static func save(
        model: any LanguageModel, tokenizerMetadata: [String: GGUFValue], to directory: String,
        extraFiles: [String: Data] = [:], configJSON: Data? = nil
    ) throws {
        try writeDirectory(directory, what: "the checkpoint") { tmp in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try AtomicFile.write(try configJSON ?? encoder.encode(model.config), to: tmp + "/config.json")
            try Safetensors.write(
                model.parameters.map { ($0.name, $0.value) },
                metadata: ["format": "pt", "producer": "topiary"], to: tmp + "/model.safetensors")
            let tok = tokenizerMetadata.filter { $0.key.hasPrefix("tokenizer.") }
            try AtomicFile.write(
                try JSONSerialization.data(withJSONObject: tok.mapValues { $0.jsonObject }, options: [.sortedKeys]),
                to: tmp + "/tokenizer_metadata.json")
            for (name, data) in extraFiles { try AtomicFile.write(data, to: tmp + "/" + name) }
            // The manifest comes last: a directory without it is incomplete.
            try writeManifest(directory: tmp)
        }
    }

    /// Writes a model directory atomically: `body` fills a temporary sibling directory, which replaces `directory` only
    /// once complete. Errors name `directory` (never the temporary folder) and `what` was being saved.
    public static func writeDirectory(_ directory: String, what: String, _ body: (String) throws -> Void) throws {
        let dir = (directory as NSString).standardizingPath
        let parent = (dir as NSString).deletingLastPathComponent
        let tmp = parent + "/." + (dir as NSString).lastPathComponent + ".tmp-\(getpid())"
        let fm = FileManager.default
        try? fm.removeItem(atPath: tmp)
        do {
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            try body(tmp)
            if fm.fileExists(atPath: dir) {
                let old = parent + "/." + (dir as NSString).lastPathComponent + ".old-\(getpid())"
                try fm.moveItem(atPath: dir, toPath: old)
                try fm.moveItem(atPath: tmp, toPath: dir)
                try? fm.removeItem(atPath: old)
            } else {
                try fm.moveItem(atPath: tmp, toPath: dir)
            }
            try AtomicFile.syncDirectory(parent)
        } catch {
            try? fm.removeItem(atPath: tmp)
            // One line naming the directory (never the temporary folder it was being written to) and the cause.
            let text = (OutputLocation.describe(error) ?? error.localizedDescription).replacingOccurrences(of: tmp, with: dir)
            throw ModelError.checkpoint(text.contains(dir) ? text : "\(dir): cannot save \(what) (\(text))")
        }
    }

    /// Lists every file of `directory` with its size and checksum in `manifest.json` (written atomically).
    public static func writeManifest(directory: String) throws {
        var files: [[String: Any]] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        where !name.hasPrefix(".") && name != "manifest.json" {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name), options: .alwaysMapped)
            files.append(["name": name, "bytes": data.count, "fnv1a64": String(format: "%016llx", fnv1a64(data))])
        }
        let manifest: [String: Any] = ["format": "topiary-checkpoint", "version": formatVersion, "files": files]
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys]),
            to: directory + "/manifest.json")
    }

    /// Checks every file listed in `directory/manifest.json` against its size and checksum, and that each of
    /// `required` is listed: a checkpoint is complete only when its manifest, written last, says so.
    public static func verifyManifest(directory: String, manifest data: Data? = nil, required: [String]) throws {
        let manifestPath = directory + "/manifest.json"
        try checkDirectory(directory)
        guard let data = data ?? FileManager.default.contents(atPath: manifestPath) else {
            throw ModelError.checkpoint("\(directory): incomplete checkpoint (no manifest.json; was the save interrupted?)")
        }
        guard let manifest = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let files = manifest["files"] as? [[String: Any]]
        else {
            throw ModelError.checkpoint("\(manifestPath): not a valid manifest")
        }
        var listed: Set<String> = []
        for f in files {
            guard let file = f["name"] as? String, let bytes = f["bytes"] as? Int, let sum = f["fnv1a64"] as? String,
                !file.isEmpty, !file.contains("/"), !file.hasPrefix(".")
            else {
                throw ModelError.checkpoint("\(manifestPath): an entry lacks a plain file name, bytes or fnv1a64")
            }
            let path = directory + "/" + file
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
                throw ModelError.checkpoint("\(path): listed in the manifest but missing")
            }
            guard data.count == bytes else {
                throw ModelError.checkpoint(
                    "\(path): damaged (\(data.count) bytes, manifest.json says \(bytes)): the file was cut short or changed after saving")
            }
            let found = String(format: "%016llx", fnv1a64(data))
            guard found == sum else {
                throw ModelError.checkpoint(
                    "\(path): damaged (checksum \(found) differs from \(sum) in manifest.json): its bytes changed after saving")
            }
            listed.insert(file)
        }
        for file in required where !listed.contains(file) {
            throw ModelError.checkpoint("\(manifestPath): does not list \(file) (incomplete or foreign checkpoint)")
        }
    }

    /// Loads a checkpoint directory, verifying the manifest's sizes and checksums.
    public static func load(directory: String) throws -> LoadedModel {
        let fm = FileManager.default
        let name = directory
        try checkDirectory(directory)
        guard let manifestData = fm.contents(atPath: directory + "/manifest.json") else {
            throw ModelError.checkpoint("\(name): incomplete checkpoint (no manifest.json; was the save interrupted?)")
        }
        try verifyManifest(
            directory: directory, manifest: manifestData, required: ["config.json", "model.safetensors", "tokenizer_metadata.json"])
        guard let configData = fm.contents(atPath: directory + "/config.json") else {
            throw ModelError.checkpoint("\(name)/config.json: missing")
        }
        let config: ModelConfig
        do { config = try JSONDecoder().decode(ModelConfig.self, from: configData) } catch {
            throw ModelError.invalidConfig("\(name)/config.json: \(describeDecoding(error))")
        }
        do { try config.validate() } catch let ModelError.invalidConfig(m) { throw ModelError.invalidConfig("\(name)/config.json: \(m)") }
        _ = try Architectures.family(of: config, path: name)
        let weights = try Safetensors.read(path: directory + "/model.safetensors").tensors
        let model = try DecoderModel(config: config, weights: weights, source: directory + "/model.safetensors")
        guard let tokData = fm.contents(atPath: directory + "/tokenizer_metadata.json"),
            let tokObject = try? JSONText.object(with: tokData) as? [String: Any]
        else {
            throw ModelError.checkpoint("\(name): missing or invalid tokenizer_metadata.json")
        }
        let metadata = tokObject.compactMapValues(GGUFValue.init(jsonObject:))
        let tokenizer = try GGUFModelLoader.tokenizerFromMetadata(metadata, name: name + "/tokenizer_metadata.json")
        return LoadedModel(model: model, tokenizer: tokenizer, source: directory, sourceTensorTypes: [:], metadata: metadata)
    }

    /// Fails with "no such directory" / "not a directory" before anything inside `directory` is looked for.
    static func checkDirectory(_ directory: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw ModelError.checkpoint("\(directory): no such directory")
        }
        guard isDirectory.boolValue else { throw ModelError.checkpoint("\(directory): not a directory (expected a checkpoint folder)") }
    }

    public static func describeDecoding(_ error: Error) -> String {
        switch error {
        case let DecodingError.keyNotFound(key, _): return "missing key '\(key.stringValue)'"
        case let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx):
            return "bad value at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))': \(ctx.debugDescription)"
        case let DecodingError.dataCorrupted(ctx):
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? ctx.debugDescription : "\(path) \(ctx.debugDescription)"
        default: return error.localizedDescription
        }
    }
}

/// 64-bit FNV-1a checksum (detects damaged files; not a cryptographic hash).
public func fnv1a64(_ data: Data) -> UInt64 {
    data.withUnsafeBytes { raw -> UInt64 in
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        // Eight bytes at a time keeps this fast on large weight files.
        let words = raw.count / 8
        for i in 0..<words {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x0000_0100_0000_01B3
        }
        for i in (words * 8)..<raw.count { h = (h ^ UInt64(raw[i])) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

extension GGUFValue {
    /// A typed JSON form (`{"t": "int"|"f64"|"bool"|"str"|"arr:…", "v": …}`) that survives a round trip
    /// without guessing whether 1 was a number or a boolean.
    var jsonObject: Any {
        func scalar(_ v: GGUFValue) -> (String, Any) {
            switch v {
            case let .string(s): return ("str", s)
            case let .bool(b): return ("bool", b)
            case let .float32(f): return ("f64", Double(f))
            case let .float64(d): return ("f64", d)
            default: return ("int", v.int ?? 0)
            }
        }
        if case let .array(items) = self {
            let parts = items.map(scalar)
            let type = parts.first?.0 ?? "int"
            return ["t": "arr:" + type, "v": parts.map(\.1)]
        }
        let (t, v) = scalar(self)
        return ["t": t, "v": v]
    }

    init?(jsonObject: Any) {
        guard let object = jsonObject as? [String: Any], let type = object["t"] as? String, let value = object["v"] else {
            return nil
        }
        func scalar(_ type: String, _ v: Any) -> GGUFValue? {
            switch type {
            case "str": return (v as? String).map(GGUFValue.string)
            case "bool": return ((v as? Bool) ?? (v as? NSNumber)?.boolValue).map(GGUFValue.bool)
            case "f64": return ((v as? Double) ?? (v as? NSNumber)?.doubleValue).map(GGUFValue.float64)
            case "int": return ((v as? NSNumber)?.int64Value ?? (v as? Int).map(Int64.init)).map(GGUFValue.int64)
            default: return nil
            }
        }
        if type.hasPrefix("arr:") {
            guard let items = value as? [Any] else { return nil }
            let elementType = String(type.dropFirst(4))
            let converted = items.compactMap { scalar(elementType, $0) }
            guard converted.count == items.count else { return nil }
            self = .array(converted)
        } else {
            guard let v = scalar(type, value) else { return nil }
            self = v
        }
    }
}
