import Foundation

/// Reads a whole regular file, or nil when it is missing, unreadable or not a regular file.
///
/// An empty file gives empty data without going through `FileManager.contents(atPath:)`, which leaks a 4 KiB
/// buffer for empty files in this Foundation (found by the safetensors fuzzer, LeakSanitizer).
public func readWholeFile(_ path: String) -> Data? {
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
    if st.st_size == 0 { return access(path, R_OK) == 0 ? Data() : nil }
    return FileManager.default.contents(atPath: path)
}

/// A text file that cannot be used, named with its problem.
public struct TextFileError: Error, LocalizedError, Equatable {
    public let path: String
    public let problem: String
    public init(_ path: String, _ problem: String) {
        self.path = path
        self.problem = problem
    }
    public var errorDescription: String? { "\(path): \(problem)" }
}

/// Reads a whole UTF-8 text file with a clear error when it is missing, unreadable or empty.
public func readText(_ path: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw TextFileError(path, "no such file") }
    guard !isDirectory.boolValue else { throw TextFileError(path, "is a directory, expected a text file") }
    guard let data = readWholeFile(path) else { throw TextFileError(path, "cannot be read") }
    guard !data.isEmpty else { throw TextFileError(path, "the file is empty") }
    return String(decoding: data, as: UTF8.self)
}
