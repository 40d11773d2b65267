import Foundation
import TopiaryModels

/// Why an export was refused. Each description is one line that says what to do instead.
public enum ExportError: Error, LocalizedError, Equatable {
    case unknownType(String)
    case unknownFormat(String)
    case unknownArchitecture(String)
    case unsupportedModel(String)
    /// The model has a shape that the chosen runtime layout cannot describe.
    case inexpressible(String)

    public var errorDescription: String? {
        switch self {
        case let .unknownType(t):
            return "--type \(t): unknown tensor type (expected one of \(GGUFExporter.typeNames.joined(separator: ", ")))"
        case let .unknownFormat(f): return "--format \(f): unknown format (expected gguf or safetensors-hf)"
        case let .unknownArchitecture(a):
            return
                "--arch \(a): unknown GGUF architecture (expected auto or one of "
                + "\(Architectures.all.flatMap(\.ggufArchitectures).joined(separator: ", ")))"
        case let .unsupportedModel(m): return m
        case let .inexpressible(m): return m
        }
    }
}
