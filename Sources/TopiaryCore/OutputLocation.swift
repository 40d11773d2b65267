import Foundation

/// Checks, before any work, that an output path can be written, and turns the operating system's errors into one
/// line naming the path and the cause in plain words.
public enum OutputLocation {
    /// What will be written at the path.
    public enum Kind: Sendable { case file, directory }

    public struct Failure: Error, LocalizedError, Equatable {
        public let path: String
        public let reason: String
        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }
        public var errorDescription: String? { "\(path): \(reason)" }
    }

    /// Fails unless `path` can be created (or replaced) as a `kind`: a file where a directory is wanted (or the other way
    /// round), a parent that is a file, and a parent where nothing can be created (permissions, a read-only or virtual
    /// file system) are reported; the nearest existing parent (an existing output folder itself) is probed by creating
    /// and removing an empty folder in it. Nothing is left behind.
    public static func checkWritable(_ path: String, as kind: Kind) throws {
        guard !path.isEmpty else { throw Failure(path: "\"\"", reason: "an empty path cannot be written") }
        let full = (path as NSString).standardizingPath
        var isDirectory: ObjCBool = false
        var existingDirectory = false
        if FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory) {
            existingDirectory = isDirectory.boolValue
            if kind == .directory && !isDirectory.boolValue {
                throw Failure(path: path, reason: "exists and is a file, not a directory (choose a folder path)")
            }
            if kind == .file && isDirectory.boolValue {
                throw Failure(path: path, reason: "is a directory (expected a file path)")
            }
        }
        // An existing folder is written into; otherwise the nearest ancestor that exists must be a directory in which
        // something can be created.
        var ancestor = existingDirectory ? full : (full as NSString).deletingLastPathComponent
        if ancestor.isEmpty { ancestor = "." }
        while !FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
            let up = (ancestor as NSString).deletingLastPathComponent
            if up == ancestor { break }
            ancestor = up.isEmpty ? "." : up  // a relative path's first component lives in the working directory
        }
        guard FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) else {
            throw Failure(path: path, reason: "no parent directory exists")
        }
        guard isDirectory.boolValue else { throw Failure(path: path, reason: "cannot be created: \(ancestor) is a file, not a directory") }
        var template = Array((ancestor + "/.topiary-write-check-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else {
            throw Failure(path: path, reason: "cannot be written: nothing can be created in \(ancestor) (\(plainCause(errno)))")
        }
        rmdir(made)
    }

    /// `error` of writing through the temporary path `temporary` as one line about `final`, the path the user gave: the
    /// temporary path (a detail of atomic writing) never appears in a message.
    public static func naming(_ final: String, for error: Error, temporary: String) -> Error {
        let text = (describe(error) ?? error.localizedDescription).replacingOccurrences(of: temporary, with: final)
        return text.contains(final) ? Message(text) : Failure(path: final, reason: "cannot be written (\(text))")
    }

    /// An error whose text is already one line naming its path.
    public struct Message: Error, LocalizedError, Equatable {
        public let text: String
        public init(_ text: String) { self.text = text }
        public var errorDescription: String? { text }
    }

    /// `errno` in plain words: "permission denied", "read-only file system", "no space left on device" ….
    public static func plainCause(_ code: Int32) -> String {
        switch code {
        case EACCES, EPERM: return "permission denied"
        case ENOENT: return "no such file or directory"
        case EEXIST: return "already exists"
        case ENOTDIR: return "a part of the path is a file, not a directory"
        case EISDIR: return "is a directory"
        case EROFS: return "read-only file system"
        case ENOSPC: return "no space left on device"
        case EDQUOT: return "disk quota exceeded"
        case ENAMETOOLONG: return "file name too long"
        default: return String(cString: strerror(code)).lowercased()
        }
    }

    /// An error from Foundation's file APIs (`NSCocoaErrorDomain`, `NSPOSIXErrorDomain`) as "path: cause", or nil for
    /// any other error (those describe themselves). The path is the one in the error, or `path` when it names none.
    public static func describe(_ error: Error, path fallback: String? = nil) -> String? {
        let ns = error as NSError
        guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return nil }
        let path =
            (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
            ?? (ns.userInfo["NSURL"] as? URL)?.path ?? fallback
        var cause: String
        if ns.domain == NSPOSIXErrorDomain {
            cause = plainCause(Int32(ns.code))
        } else if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            cause = plainCause(Int32(underlying.code))
        } else {
            switch CocoaError.Code(rawValue: ns.code) {
            case .fileNoSuchFile, .fileReadNoSuchFile: cause = "no such file or directory"
            case .fileWriteFileExists: cause = "already exists"
            case .fileReadNoPermission, .fileWriteNoPermission: cause = "permission denied"
            case .fileWriteOutOfSpace: cause = "no space left on device"
            case .fileWriteVolumeReadOnly: cause = "read-only file system"
            case .fileReadCorruptFile: cause = "damaged or in an unexpected format"
            case .fileReadInapplicableStringEncoding: cause = "not text in the expected encoding"
            case .fileReadTooLarge: cause = "too large to read"
            case .fileWriteInvalidFileName: cause = "invalid file name"
            default: cause = ns.code < 1024 ? "the file operation failed (code \(ns.code))" : "the operation failed (code \(ns.code))"
            }
        }
        if cause.isEmpty { cause = "failed" }
        return path.map { "\($0): \(cause)" } ?? cause
    }
}
