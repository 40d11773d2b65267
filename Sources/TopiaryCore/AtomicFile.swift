import Foundation

/// Writes files so that a reader never sees a half-written one: the bytes go to a temporary file in
/// the same directory, are flushed to disk, and the temporary file is renamed over the target.
public enum AtomicFile {
    public enum Failure: Error, LocalizedError {
        case cannotWrite(path: String, reason: String)
        public var errorDescription: String? {
            switch self { case let .cannotWrite(path, reason): return "\(path): cannot write (\(reason))" }
        }
    }

    /// Writes `data` to `path` atomically, creating the parent directory if needed.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { handle in try handle.write(contentsOf: data) }
    }

    /// Writes `text` as UTF-8.
    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Streams content through `body` into a temporary file, then renames it to `path`.
    public static func write(to path: String, _ body: (FileHandle) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw Failure.cannotWrite(path: path, reason: "cannot create directory \(dir)")
        }
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let handle = FileHandle(forWritingAtPath: tmp) else {
            throw Failure.cannotWrite(path: path, reason: String(cString: strerror(errno)))
        }
        do {
            try body(handle)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            unlink(tmp)
            throw Failure.cannotWrite(path: path, reason: "\(error.localizedDescription)")
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw Failure.cannotWrite(path: path, reason: reason)
        }
    }
}
