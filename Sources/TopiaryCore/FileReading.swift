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
