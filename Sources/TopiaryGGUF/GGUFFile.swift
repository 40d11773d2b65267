import CTopiaryKernels
import Foundation
import TopiaryCore

/// Where one tensor's data lies in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions in ggml order (`ne[0]`, the fastest-varying, first).
    public let dimensions: [Int]
    public let type: GGMLType
    /// Absolute offset of the data in the file.
    public let offset: Int
    public let byteCount: Int

    /// Row-major shape (dimensions reversed): `[rows, columns]` for a matrix.
    public var shape: [Int] { dimensions.reversed() }
    public var elementCount: Int { dimensions.reduce(1, *) }
}

/// A memory-mapped GGUF file (versions 2 and 3): metadata, tensor table, and fp32 dequantization.
///
/// Every length read from the file is checked against the bytes that remain before anything is
/// allocated, so a damaged or hostile file gives a ``GGUFError`` instead of a crash or a huge allocation.
///
/// ```swift
/// let file = try GGUFFile(path: "model.gguf")
/// let layers = file.metadata["llama.block_count"]?.int
/// let w = try file.dequantize(file.tensor(named: "blk.0.attn_q.weight")!)
/// ```
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    public let alignment: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let dataOffset: Int
    public let fileSize: Int
    private let base: UnsafeRawPointer
    private let mapped: Bool
    private let index: [String: Int]

    /// Upper bounds for counts declared in a header, beyond what the file size already implies.
    static let maxDimensions = 4
    /// The longest metadata string or tensor name (a chat template is a few KiB).
    public static let maxStringLength = 1 << 24
    /// The most entries of one metadata array (the largest vocabularies and merge lists have a few hundred thousand).
    public static let maxArrayCount = 1 << 22
    /// The most metadata values in all, arrays' entries included: parsed values take ~24 bytes each in memory, so
    /// this bounds the metadata's memory (~200 MB) whatever the file declares.
    public static let maxMetadataValues = 1 << 23

    /// Bytes a complete file needs (the end of the last tensor's data); equal to or below ``fileSize`` unless the
    /// file was opened with `headerOnly` (the first part of a split download).
    public private(set) var requiredSize = 0

    /// Opens and checks a GGUF file. With `headerOnly`, tensors may lie past the end of the file (only the header was
    /// downloaded so far): metadata and the tensor table are read and checked, ``requiredSize`` tells how many bytes the
    /// whole file has, and reading a tensor that is not there throws.
    public init(path: String, headerOnly: Bool = false) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw GGUFError.fileNotFound(path: path) }
        guard !isDirectory.boolValue else { throw GGUFError.notAFile(path: path) }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GGUFError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw GGUFError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        fileSize = size
        guard size >= 8 else { throw GGUFError.truncated(path: path, what: "the header", needed: 24, fileSize: size) }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw GGUFError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(m)
        mapped = true
        var reader = Reader(base: base, size: size, path: path)
        do {
            let magic = try reader.bytes(4, what: "the magic")
            guard magic == [0x47, 0x47, 0x55, 0x46] else {
                let text = String(decoding: magic.map { $0 >= 32 && $0 < 127 ? $0 : 0x3F }, as: UTF8.self)
                throw GGUFError.badMagic(path: path, found: "\"\(text)\"")
            }
            let v = try reader.u32(what: "the version")
            guard v == 2 || v == 3 else {
                if v > 0xFFFF {
                    throw GGUFError.invalidMetadata(
                        path: path, detail: "version \(v) looks byte-swapped; big-endian GGUF files are not supported")
                }
                throw GGUFError.unsupportedVersion(path: path, version: v)
            }
            version = Int(v)
            let tensorCount = try reader.count(what: "the tensor count", minimumBytesEach: 24)
            let kvCount = try reader.count(what: "the metadata count", minimumBytesEach: 12)
            var md: [String: GGUFValue] = [:]
            var keys: [String] = []
            for i in 0..<kvCount {
                let key = try reader.string(what: "metadata key \(i)")
                let type = try reader.u32(what: "the type of '\(key)'")
                let value = try reader.value(type: type, key: key, depth: 0)
                if md[key] == nil { keys.append(key) }
                md[key] = value
            }
            metadata = md
            metadataKeys = keys
            let align = md["general.alignment"]?.int ?? 32
            guard align > 0, align & (align - 1) == 0, align <= 1 << 20 else {
                throw GGUFError.invalidMetadata(path: path, detail: "general.alignment \(align) is not a power of two")
            }
            alignment = align
            var raw: [(String, [Int], UInt32, Int)] = []
            for i in 0..<tensorCount {
                let name = try reader.string(what: "tensor info \(i)")
                let nDims = Int(try reader.u32(what: "tensor '\(name)'"))
                guard nDims >= 1, nDims <= Self.maxDimensions else {
                    throw GGUFError.invalidTensorInfo(
                        path: path, tensor: name, detail: "\(nDims) dimensions (1 to \(Self.maxDimensions) allowed)")
                }
                var dims: [Int] = []
                for _ in 0..<nDims {
                    let d = try reader.u64(what: "tensor '\(name)'")
                    guard d >= 1, d <= UInt64(Int32.max) else {
                        throw GGUFError.invalidTensorInfo(path: path, tensor: name, detail: "dimension \(d) out of range")
                    }
                    dims.append(Int(d))
                }
                let type = try reader.u32(what: "tensor '\(name)'")
                let offset = try reader.u64(what: "tensor '\(name)'")
                guard offset < UInt64(size) || (headerOnly && offset < UInt64(Int.max / 2)) else {
                    throw GGUFError.tensorOutOfBounds(path: path, tensor: name, end: Int(clamping: offset), fileSize: size)
                }
                raw.append((name, dims, type, Int(offset)))
            }
            dataOffset = (reader.position + align - 1) / align * align
            var infos: [GGUFTensorInfo] = []
            var idx: [String: Int] = [:]
            for (name, dims, typeCode, offset) in raw {
                guard let type = GGMLType(rawValue: typeCode) else {
                    throw GGUFError.unknownTensorType(path: path, tensor: name, type: typeCode)
                }
                let (count, overflow) = dims.reduce((1, false)) { acc, d in
                    let r = acc.0.multipliedReportingOverflow(by: d)
                    return (r.partialValue, acc.1 || r.overflow)
                }
                guard !overflow, dims[0] % type.blockSize == 0 else {
                    throw GGUFError.invalidTensorInfo(
                        path: path, tensor: name,
                        detail: "shape \(dims) does not hold whole \(type) blocks of \(type.blockSize)")
                }
                // Declared sizes are checked against the file before anything is allocated (a 2^40-element tensor in
                // a small file is refused here), with overflow-checked arithmetic.
                let (bytes, bytesOverflow) = (count / type.blockSize).multipliedReportingOverflow(by: type.bytesPerBlock)
                let start = dataOffset + offset
                let (end, endOverflow) = start.addingReportingOverflow(bytes)
                guard !bytesOverflow, !endOverflow else {
                    throw GGUFError.invalidTensorInfo(
                        path: path, tensor: name, detail: "shape \(dims) of \(type) needs more bytes than any file can hold")
                }
                guard end <= size || (headerOnly && end < Int.max / 2) else {
                    throw GGUFError.tensorOutOfBounds(path: path, tensor: name, end: end, fileSize: size)
                }
                guard start % align == 0 || version < 3 else {
                    throw GGUFError.invalidTensorInfo(path: path, tensor: name, detail: "offset \(offset) is not aligned to \(align)")
                }
                guard idx[name] == nil else { throw GGUFError.duplicateTensor(path: path, tensor: name) }
                idx[name] = infos.count
                infos.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: start, byteCount: bytes))
            }
            // Tensors never share bytes in a real file; overlapping ones would let a small file expand into many
            // copies of the same data when dequantized.
            let byStart = infos.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
            for (a, b) in zip(byStart, byStart.dropFirst()) where b.offset < a.offset + a.byteCount {
                throw GGUFError.invalidTensorInfo(path: path, tensor: b.name, detail: "its data overlaps tensor '\(a.name)'")
            }
            tensors = infos
            index = idx
            requiredSize = infos.map { $0.offset + $0.byteCount }.max() ?? dataOffset
        } catch {
            munmap(m, size)
            throw error
        }
    }

    deinit {
        if mapped { munmap(UnsafeMutableRawPointer(mutating: base), fileSize) }
    }

    public var architecture: String? { metadata["general.architecture"]?.string }

    public func tensor(named name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// The raw bytes of a tensor, in the file's mapping (valid while the file object lives).
    public func rawBytes(of info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        precondition(info.offset + info.byteCount <= fileSize, "\(path): tensor '\(info.name)' lies past the end of the file")
        return UnsafeRawBufferPointer(start: base + info.offset, count: info.byteCount)
    }

    /// Tells the kernel that the mapped pages of a tensor are not needed any more (after it was dequantized),
    /// so that they leave this process's resident memory; a later read maps them again from the page cache.
    public func releasePages(of info: GGUFTensorInfo) {
        guard mapped else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: base) + info.offset, end = start + info.byteCount
        let first = (start + page - 1) / page * page, last = end / page * page
        guard last > first else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), last - first, 4 /* MADV_DONTNEED */)
    }

    /// The whole tensor as fp32, shaped row-major (`info.shape`).
    public func dequantize(_ info: GGUFTensorInfo) throws -> Tensor {
        guard info.offset + info.byteCount <= fileSize else {
            throw GGUFError.truncated(path: path, what: "tensor '\(info.name)'", needed: info.offset + info.byteCount, fileSize: fileSize)
        }
        guard info.type.canDequantize else {
            throw GGUFError.unsupportedTensorType(path: path, tensor: info.name, type: "\(info.type)")
        }
        let out = Tensor(uninitialized: info.shape)
        guard tq_dequantize(info.type.rawValue, base + info.offset, out.pointer, info.elementCount) == 0 else {
            throw GGUFError.unsupportedTensorType(path: path, tensor: info.name, type: "\(info.type)")
        }
        return out
    }

    /// Rows `rows` of a tensor (rows = all but the first ggml dimension), as fp32 `[rows.count, ne0]`:
    /// lets a caller dequantize a large matrix piece by piece.
    public func dequantize(_ info: GGUFTensorInfo, rows: Range<Int>) throws -> Tensor {
        let rowLength = info.dimensions[0]
        let rowCount = info.elementCount / rowLength
        guard rows.lowerBound >= 0, rows.upperBound <= rowCount else {
            throw GGUFError.invalidTensorInfo(path: path, tensor: info.name, detail: "rows \(rows) outside 0..<\(rowCount)")
        }
        guard info.offset + info.byteCount <= fileSize else {
            throw GGUFError.truncated(path: path, what: "tensor '\(info.name)'", needed: info.offset + info.byteCount, fileSize: fileSize)
        }
        guard info.type.canDequantize else {
            throw GGUFError.unsupportedTensorType(path: path, tensor: info.name, type: "\(info.type)")
        }
        let rowBytes = rowLength / info.type.blockSize * info.type.bytesPerBlock
        let out = Tensor(uninitialized: [rows.count, rowLength])
        _ = tq_dequantize(info.type.rawValue, base + info.offset + rows.lowerBound * rowBytes, out.pointer, rows.count * rowLength)
        return out
    }
}

/// A bounds-checked little-endian cursor over the mapped file.
struct Reader {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var position = 0
    /// Metadata values read so far (array entries included), against ``GGUFFile/maxMetadataValues``.
    var values = 0

    mutating func need(_ n: Int, what: String) throws {
        guard n >= 0, position <= size - n else {
            throw GGUFError.truncated(path: path, what: what, needed: position &+ n, fileSize: size)
        }
    }

    mutating func bytes(_ n: Int, what: String) throws -> [UInt8] {
        try need(n, what: what)
        defer { position += n }
        return Array(UnsafeRawBufferPointer(start: base + position, count: n))
    }

    mutating func scalar<T: FixedWidthInteger>(_: T.Type, what: String) throws -> T {
        try need(MemoryLayout<T>.size, what: what)
        defer { position += MemoryLayout<T>.size }
        return T(littleEndian: base.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    mutating func u32(what: String) throws -> UInt32 { try scalar(UInt32.self, what: what) }
    mutating func u64(what: String) throws -> UInt64 { try scalar(UInt64.self, what: what) }

    /// A count whose items need at least `minimumBytesEach` bytes: refused when they cannot fit.
    mutating func count(what: String, minimumBytesEach: Int) throws -> Int {
        let n = try u64(what: what)
        let remaining = UInt64(size - position)
        let each = UInt64(max(minimumBytesEach, 1))
        guard n <= remaining / each else {
            // The bytes the items would need, when that is a number at all (2^62 items of 24 bytes overflow 64 bits).
            let (bytes, overflow) = n.multipliedReportingOverflow(by: each)
            let (end, endOverflow) = bytes.addingReportingOverflow(UInt64(position))
            if overflow || endOverflow || end > UInt64(Int.max) {
                throw GGUFError.impossibleCount(path: path, what: what, count: n, bytesEach: Int(each), fileSize: size)
            }
            throw GGUFError.truncated(path: path, what: "\(what) (\(n))", needed: Int(end), fileSize: size)
        }
        return Int(n)
    }

    mutating func string(what: String) throws -> String {
        let n = try u64(what: what)
        guard n <= UInt64(GGUFFile.maxStringLength) else {
            throw GGUFError.invalidMetadata(path: path, detail: "\(what): a string of \(n) bytes (at most \(GGUFFile.maxStringLength))")
        }
        guard n <= UInt64(size - position) else {
            throw GGUFError.truncated(
                path: path, what: "\(what): a string of \(n) bytes", needed: Int(clamping: UInt64(position) &+ n), fileSize: size)
        }
        let s = String(decoding: UnsafeRawBufferPointer(start: base + position, count: Int(n)), as: UTF8.self)
        position += Int(n)
        return s
    }

    mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        let what = "metadata '\(key)'"
        values += 1
        guard values <= GGUFFile.maxMetadataValues else {
            throw GGUFError.invalidMetadata(path: path, detail: "more than \(GGUFFile.maxMetadataValues) metadata values (at '\(key)')")
        }
        switch type {
        case 0: return .uint8(try scalar(UInt8.self, what: what))
        case 1: return .int8(try scalar(Int8.self, what: what))
        case 2: return .uint16(try scalar(UInt16.self, what: what))
        case 3: return .int16(try scalar(Int16.self, what: what))
        case 4: return .uint32(try scalar(UInt32.self, what: what))
        case 5: return .int32(try scalar(Int32.self, what: what))
        case 6: return .float32(Float(bitPattern: try scalar(UInt32.self, what: what)))
        case 7:
            let b = try scalar(UInt8.self, what: what)
            guard b <= 1 else { throw GGUFError.invalidMetadata(path: path, detail: "'\(key)' is a bool with value \(b)") }
            return .bool(b == 1)
        case 8: return .string(try string(what: what))
        case 9:
            guard depth < 4 else { throw GGUFError.invalidMetadata(path: path, detail: "'\(key)' nests arrays too deeply") }
            let elementType = try u32(what: what)
            let minimum: Int
            switch elementType {
            case 0, 1, 7: minimum = 1
            case 2, 3: minimum = 2
            case 4, 5, 6: minimum = 4
            case 8, 9, 10, 11, 12: minimum = 8
            default: throw GGUFError.unknownValueType(path: path, key: key, type: elementType)
            }
            let n = try count(what: "\(what): array count", minimumBytesEach: minimum)
            guard n <= GGUFFile.maxArrayCount else {
                throw GGUFError.invalidMetadata(
                    path: path, detail: "'\(key)' declares \(n) array entries (at most \(GGUFFile.maxArrayCount))")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(type: elementType, key: key, depth: depth + 1)) }
            return .array(items)
        case 10: return .uint64(try scalar(UInt64.self, what: what))
        case 11: return .int64(try scalar(Int64.self, what: what))
        case 12: return .float64(Double(bitPattern: try scalar(UInt64.self, what: what)))
        default: throw GGUFError.unknownValueType(path: path, key: key, type: type)
        }
    }
}
