import Foundation

/// Problems with a GGUF file. Each description is one line naming the file and the problem.
public enum GGUFError: Error, LocalizedError, Equatable {
    case fileNotFound(path: String)
    case notAFile(path: String)
    case unreadable(path: String, reason: String)
    case badMagic(path: String, found: String)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, what: String, needed: Int, fileSize: Int)
    case unknownValueType(path: String, key: String, type: UInt32)
    case invalidMetadata(path: String, detail: String)
    case invalidTensorInfo(path: String, tensor: String, detail: String)
    case unknownTensorType(path: String, tensor: String, type: UInt32)
    case unsupportedTensorType(path: String, tensor: String, type: String)
    case tensorOutOfBounds(path: String, tensor: String, end: Int, fileSize: Int)
    case duplicateTensor(path: String, tensor: String)
    /// A declared count whose items could not fit in any file (their size overflows 64 bits).
    case impossibleCount(path: String, what: String, count: UInt64, bytesEach: Int, fileSize: Int)

    public var errorDescription: String? {
        func name(_ p: String) -> String { p }
        switch self {
        case let .fileNotFound(p): return "\(name(p)): no such file"
        case let .notAFile(p): return "\(name(p)): is a directory, not a GGUF file"
        case let .unreadable(p, r): return "\(name(p)): cannot be read (\(r))"
        case let .badMagic(p, f): return "\(name(p)): not a GGUF file (magic \(f), expected \"GGUF\")"
        case let .unsupportedVersion(p, v): return "\(name(p)): unsupported GGUF version \(v) (supported: 2 and 3)"
        case let .truncated(p, what, needed, size):
            return "\(name(p)): truncated file: \(what) needs byte \(needed.formatted()) but the file has \(size.formatted()) bytes"
        case let .unknownValueType(p, key, t): return "\(name(p)): metadata '\(key)' has unknown value type \(t)"
        case let .invalidMetadata(p, d): return "\(name(p)): invalid metadata: \(d)"
        case let .invalidTensorInfo(p, t, d): return "\(name(p)): tensor '\(t)': \(d)"
        case let .unknownTensorType(p, t, type): return "\(name(p)): tensor '\(t)' has unknown ggml type \(type)"
        case let .unsupportedTensorType(p, t, type):
            return
                "\(name(p)): tensor '\(t)' uses \(type), which Topiary cannot dequantize (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, "
                + "Q5_1, Q8_0, Q2_K…Q6_K, Q8_K)"
        case let .tensorOutOfBounds(p, t, end, size):
            return "\(name(p)): tensor '\(t)' data ends at byte \(end.formatted()) but the file has \(size.formatted()) bytes"
        case let .duplicateTensor(p, t): return "\(name(p)): tensor '\(t)' appears twice"
        case let .impossibleCount(p, what, n, each, size):
            return
                "\(name(p)): damaged header: \(what) is \(n), but each entry takes at least \(each) bytes and the file has only "
                + "\(size.formatted()) bytes"
        }
    }
}
