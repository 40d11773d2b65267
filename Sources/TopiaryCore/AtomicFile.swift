import Foundation

/// Writes files so that a reader never sees a half-written one: the bytes go to a temporary file in
/// the same directory, are flushed to disk (`fsync`), the temporary file is renamed over the target, and the
/// directory is flushed so that the rename itself survives a power cut. Every file Topiary writes goes through here.
///
/// ```swift
/// try AtomicFile.write(jsonData, to: out + "/results.json")
/// try AtomicFile.write(to: out + "/model.h5") { tmp in try writeHDF5(to: tmp) }   // for C libraries that take a path
/// ```
public enum AtomicFile {
    public enum Failure: Error, LocalizedError {
        case cannotWrite(path: String, reason: String)
        public var errorDescription: String? {
            switch self {
            case let .cannotWrite(path, reason): return "\(path): cannot write (\(reason))"
            }
        }
    }

    /// Writes `data` to `path` atomically, creating the parent directory if needed.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { (handle: FileHandle) in try handle.write(contentsOf: data) }
    }

    /// Writes `text` as UTF-8.
    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Streams content through `body` into a temporary file, then renames it to `path`.
    public static func write(to path: String, _ body: (FileHandle) throws -> Void) throws {
        try replace(path) { tmp in
            guard FileManager.default.createFile(atPath: tmp, contents: nil), let handle = FileHandle(forWritingAtPath: tmp) else {
                throw Failure.cannotWrite(path: path, reason: String(cString: strerror(errno)))
            }
            do {
                try body(handle)
                try handle.close()
            } catch {
                try? handle.close()
                throw error
            }
        }
    }

    /// For writers that need a path (C libraries): `body` creates the file at the temporary path it is given;
    /// the file is then flushed, renamed to `path`, and the directory flushed. On any error the temporary file is removed.
    public static func write(to path: String, usingTemporaryPath body: (String) throws -> Void) throws {
        try replace(path, body)
    }

    private static func replace(_ path: String, _ body: (String) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            let cause = (OutputLocation.describe(error, path: dir) ?? error.localizedDescription)
            throw Failure.cannotWrite(
                path: path, reason: "cannot create directory \(dir): " + cause.replacingOccurrences(of: dir + ": ", with: ""))
        }
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try body(tmp)
            try sync(path: tmp, directory: false)
        } catch {
            unlink(tmp)
            if let e = error as? Failure { throw e }
            // Name the target, never the temporary file, and say the cause in plain words.
            let reason = (OutputLocation.describe(error, path: tmp) ?? error.localizedDescription)
                .replacingOccurrences(of: tmp + ": ", with: "").replacingOccurrences(of: tmp, with: path)
            throw Failure.cannotWrite(path: path, reason: reason)
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw Failure.cannotWrite(path: path, reason: reason)
        }
        try syncDirectory(dir)
    }

    /// Flushes a directory's entries (after a rename into it) to disk.
    public static func syncDirectory(_ directory: String) throws {
        try sync(path: directory, directory: true)
    }

    static func sync(path: String, directory: Bool) throws {
        let fd = open(path, directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY)
        guard fd >= 0 else { throw Failure.cannotWrite(path: path, reason: "cannot open to flush: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw Failure.cannotWrite(path: path, reason: "fsync: \(String(cString: strerror(errno)))") }
    }
}
