import Foundation
import TopiaryCore

/// The weights of a Hugging Face model directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists (`weight_map`: tensor name → shard file). Every file is memory-mapped and its
/// header checked when the directory is opened (a missing shard is an error then, naming it); tensors are converted to
/// fp32 one at a time, when asked for.
public final class HFWeights: @unchecked Sendable {
    public static let singleFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    public let directory: String
    /// The files read, in order (one, or the shards).
    public let files: [SafetensorsFile]
    /// Tensor name → the file that holds it.
    private let location: [String: SafetensorsFile]
    /// The file that says where a tensor is (the index, or the single file), for messages.
    private let source: String

    /// Whether `directory` holds weights in either layout.
    public static func present(in directory: String) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: directory + "/" + singleFile) || fm.fileExists(atPath: directory + "/" + indexFile)
    }

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        let indexPath = directory + "/" + Self.indexFile
        if fm.fileExists(atPath: indexPath) {
            guard let data = readWholeFile(indexPath),
                let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            else {
                throw ModelError.invalidConfig("\(indexPath): not a JSON object")
            }
            guard let map = root["weight_map"] as? [String: Any], !map.isEmpty else {
                throw ModelError.invalidConfig("\(indexPath): no 'weight_map' (tensor name → shard file)")
            }
            var byName: [String: String] = [:]
            for (tensor, file) in map {
                guard let file = file as? String, !file.isEmpty, !file.contains("/"), !file.hasPrefix(".") else {
                    throw ModelError.invalidConfig("\(indexPath): tensor '\(tensor)' maps to \(file), not a file name in the directory")
                }
                byName[tensor] = file
            }
            var opened: [String: SafetensorsFile] = [:]
            for name in Set(byName.values).sorted() {
                let path = directory + "/" + name
                guard fm.fileExists(atPath: path) else {
                    let count = byName.values.filter { $0 == name }.count
                    throw ModelError.checkpoint("\(path): missing shard (\(Self.indexFile) puts \(count) tensors in it)")
                }
                opened[name] = try SafetensorsFile(path: path)
            }
            var location: [String: SafetensorsFile] = [:]
            for (tensor, name) in byName {
                let file = opened[name]!
                guard file.entry(named: tensor) != nil else {
                    throw ModelError.checkpoint("\(file.path): has no tensor '\(tensor)', which \(Self.indexFile) says it holds")
                }
                location[tensor] = file
            }
            files = opened.keys.sorted().map { opened[$0]! }
            self.location = location
            source = indexPath
        } else {
            let path = directory + "/" + Self.singleFile
            guard fm.fileExists(atPath: path) else {
                throw ModelError.checkpoint("\(directory): no \(Self.singleFile) or \(Self.indexFile) (the model's weights)")
            }
            let file = try SafetensorsFile(path: path)
            files = [file]
            var location: [String: SafetensorsFile] = [:]
            for name in file.names { location[name] = file }
            self.location = location
            source = path
        }
    }

    public var names: [String] { location.keys.sorted() }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The storage type of a tensor (`F32`, `F16`, `BF16`).
    public func dtype(of name: String) -> String? { location[name]?.entry(named: name)?.dtype.rawValue }

    /// The tensor as fp32.
    public func tensor(_ name: String) throws -> Tensor {
        guard let file = location[name] else { throw ModelError.missingTensor(path: source, name: name) }
        return try file.tensor(named: name)
    }
}
