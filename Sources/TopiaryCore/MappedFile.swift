import Foundation

/// A regular file mapped read-only into memory: its pages are read on first use and can be handed back to the kernel
/// (``releasePages(offset:count:)``) once their contents were converted, so that reading a large weight file tensor by
/// tensor keeps only one tensor's worth of it resident.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    /// The first byte of the mapping (nil for an empty file).
    public let base: UnsafeRawPointer?

    /// Why a file could not be mapped; each description names the file.
    public enum MapError: Error, LocalizedError, Equatable {
        case notFound(String)
        case notAFile(String)
        case unreadable(String, reason: String)

        public var errorDescription: String? {
            switch self {
            case let .notFound(p): return "\(p): no such file"
            case let .notAFile(p): return "\(p): not a regular file"
            case let .unreadable(p, reason): return "\(p): cannot be read (\(reason))"
            }
        }
    }

    public init(path: String) throws {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw MapError.notFound(path) }
            throw MapError.unreadable(path, reason: String(cString: strerror(code)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw MapError.notAFile(path) }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw MapError.unreadable(path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        size = Int(st.st_size)
        guard size > 0 else {
            base = nil
            return
        }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw MapError.unreadable(path, reason: String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(m)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// `count` bytes from `offset` (the caller has checked that they lie inside the file).
    public func bytes(offset: Int, count: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && count >= 0 && offset + count <= size, "\(path): bytes \(offset)+\(count) lie past the end")
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// Tells the kernel that the whole pages inside `offset..<offset+count` are not needed any more, so that they leave
    /// this process's resident memory (a later read maps them again from the page cache).
    public func releasePages(offset: Int, count: Int) {
        guard let base, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: base) + offset, end = start + count
        let first = (start + page - 1) / page * page, last = end / page * page
        guard last > first else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), last - first, 4 /* MADV_DONTNEED */)
    }
}
