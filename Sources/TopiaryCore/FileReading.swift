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

/// Problems reading a text file; each description is one line naming the file.
public enum TextFileError: Error, LocalizedError, Equatable {
    case notFound(String)
    case isDirectory(String)
    case unreadable(String, reason: String)
    case empty(String)
    case invalidUTF8(String, offset: Int, byte: UInt8)

    public var errorDescription: String? {
        switch self {
        case let .notFound(p): return "\(p): no such file"
        case let .isDirectory(p): return "\(p): is a directory, expected a text file"
        case let .unreadable(p, reason): return "\(p): cannot be read (\(reason))"
        case let .empty(p): return "\(p): the file is empty"
        case let .invalidUTF8(p, offset, byte):
            return "\(p): not UTF-8 text: invalid byte 0x\(String(byte, radix: 16, uppercase: true)) at byte offset \(offset) "
                + "(convert the file to UTF-8, e.g. with iconv)"
        }
    }
}

/// Reads a whole UTF-8 text file: missing, unreadable, empty and non-UTF-8 files are errors naming the file (the
/// last with the offset of the first invalid byte), never text with replacement characters.
public func readTextFile(_ path: String) throws -> String {
    var st = stat()
    guard stat(path, &st) == 0 else {
        let code = errno
        if code == ENOENT || code == ENOTDIR { throw TextFileError.notFound(path) }
        throw TextFileError.unreadable(path, reason: String(cString: strerror(code)))
    }
    if (st.st_mode & S_IFMT) == S_IFDIR { throw TextFileError.isDirectory(path) }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw TextFileError.unreadable(path, reason: "not a regular file") }
    guard access(path, R_OK) == 0 else { throw TextFileError.unreadable(path, reason: String(cString: strerror(errno))) }
    guard let data = readWholeFile(path) else { throw TextFileError.unreadable(path, reason: "read failed") }
    guard !data.isEmpty else { throw TextFileError.empty(path) }
    if let offset = firstInvalidUTF8Offset(data) {
        throw TextFileError.invalidUTF8(path, offset: offset, byte: data[data.startIndex + offset])
    }
    return String(decoding: data, as: UTF8.self)
}

/// The offset of the first byte that does not belong to well-formed UTF-8 (overlong forms, surrogates and code points
/// above U+10FFFF are ill-formed, as in the Unicode standard), or nil when all of `data` is well-formed.
public func firstInvalidUTF8Offset(_ data: Data) -> Int? {
    data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Int? in
        let b = raw.bindMemory(to: UInt8.self)
        let n = b.count
        var i = 0
        while i < n {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            let length: Int
            var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; lower = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; upper = 0x9F
            case 0xF0: length = 4; lower = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; upper = 0x8F
            default: return i
            }
            guard i + 1 < n, b[i + 1] >= lower, b[i + 1] <= upper else { return i }
            for k in 2..<length where i + k >= n || b[i + k] < 0x80 || b[i + k] > 0xBF { return i }
            i += length
        }
        return nil
    }
}

/// ``readTextFile(_:)``: the text of a UTF-8 file, or one error naming it.
public func readText(_ path: String) throws -> String { try readTextFile(path) }

/// Bytes a file takes, or all files under a directory together (0 when the path does not exist).
public func sizeOnDisk(_ path: String) -> Int {
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { return 0 }
    guard isDirectory.boolValue else { return (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
    return ((try? fm.subpathsOfDirectory(atPath: path)) ?? []).reduce(0) {
        $0 + ((try? fm.attributesOfItem(atPath: path + "/" + $1)[.size] as? Int) ?? 0)
    }
}
