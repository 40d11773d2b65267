import Foundation

/// A 64-byte aligned buffer of `Float`s owned by one or more ``Tensor`` values.
///
/// Storage is a reference type so that tensors are cheap to pass around; code that mutates
/// a tensor in place must own it (freshly allocated or documented as an in-place op).
/// Buffers come from ``BufferPool``, which recycles large ones so that a model run does not pay
/// page faults for every activation.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    private let bytes: Int

    /// Allocates `count` floats. Zero-filled when `zeroed` is true.
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "negative tensor size")
        bytes = max(count, 1) * MemoryLayout<Float>.stride
        pointer = BufferPool.shared.allocate(bytes: bytes).bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    deinit { BufferPool.shared.release(UnsafeMutableRawPointer(pointer), bytes: bytes) }
}

/// Recycles large buffers by exact size (activations of the same shapes recur every layer, window and
/// step) and asks the kernel for transparent huge pages, so big tensors cost no page faults after the
/// first use. Holds at most ``limitBytes`` of free buffers.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()
    /// Buffers smaller than this go straight to malloc.
    static let minimumPooled = 256 * 1024
    static let hugePage = 2 * 1024 * 1024
    /// Free buffers kept for reuse (the oldest are returned to the system beyond this): a sixth of
    /// physical memory, enough to recycle a training step's activations.
    public var limitBytes = Int(ProcessInfo.processInfo.physicalMemory / 6)
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var freeBytes = 0
    private let lock = NSLock()

    /// Sizes are rounded up to classes of 1/8 of a power of two, so that nearby shapes (sequences of
    /// different lengths) share buffers.
    static func sizeClass(_ bytes: Int) -> Int {
        guard bytes >= minimumPooled else { return bytes }
        let high = Int.bitWidth - 1 - bytes.leadingZeroBitCount  // 2^high <= bytes
        let step = 1 << max(0, high - 3)
        return (bytes + step - 1) / step * step
    }

    private var order: [(Int, UnsafeMutableRawPointer)] = []  // oldest first, for eviction

    /// Address space reserved by ``reserve(bytes:)``: new big buffers are carved from it (never returned to the system).
    private var arena: (base: UnsafeMutableRawPointer, size: Int)?
    private var arenaUsed = 0

    private func inArena(_ p: UnsafeMutableRawPointer) -> Bool {
        guard let arena else { return false }
        return p >= arena.base && p < arena.base + arena.size
    }

    /// Whether `p` lies in the memory set aside by ``reserve(bytes:)``.
    public func isReserved(_ p: UnsafeRawPointer) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return inArena(UnsafeMutableRawPointer(mutating: p))
    }

    /// Sets aside `bytes` of memory for the big buffers about to be needed (a training step's activations and
    /// gradients) and has a background thread fault its pages in — the kernel zeroes every fresh page on first touch,
    /// which costs a calibration pass on a cold process about a quarter of its time — while the caller does
    /// something else (tracing the graph, tokenizing). New buffers that no recycled one fits are carved from it;
    /// pages already touched are left as they are (`MADV_POPULATE_WRITE`, Linux 5.14+; elsewhere the pages fault
    /// in on first use, as without a reservation). At most a quarter of physical memory; one reservation per
    /// process, later calls do nothing.
    public func reserve(bytes requested: Int) {
        #if os(Linux)
        // At most a quarter of physical memory: an estimate too large for the machine reserves what fits, and
        // the rest of the step allocates as without a reservation.
        let capped = min(requested, Int(ProcessInfo.processInfo.physicalMemory / 4))
        let size = (capped + Self.hugePage - 1) / Self.hugePage * Self.hugePage
        lock.lock()
        guard arena == nil, size > 0 else { lock.unlock(); return }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else {
            lock.unlock(); return
        }
        _ = madvise(base, size, 14 /* MADV_HUGEPAGE */)
        arena = (base, size)
        lock.unlock()
        let region = Unchecked(base)
        Thread.detachNewThread {
            let chunk = 32 << 20
            var offset = 0
            while offset < size {
                guard BufferPool.populate(region.value + offset, bytes: min(chunk, size - offset)) else { return }
                offset += chunk
            }
        }
        #endif
    }

    /// Faults the pages of `[p, p + bytes)` in, writable, without changing what is already there (Linux
    /// `MADV_POPULATE_WRITE`), so it is safe on memory in use. False where the kernel cannot.
    @discardableResult
    public static func populate(_ p: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        #if os(Linux)
        return madvise(p, bytes, 23 /* MADV_POPULATE_WRITE */) == 0
        #else
        return false
        #endif
    }

    func allocate(bytes requested: Int) -> UnsafeMutableRawPointer {
        let bytes = Self.sizeClass(requested)
        if bytes >= Self.minimumPooled {
            lock.lock()
            if var list = free[bytes], let p = list.popLast() {
                free[bytes] = list.isEmpty ? nil : list
                freeBytes -= bytes
                if let i = order.lastIndex(where: { $0.1 == p }) { order.remove(at: i) }
                lock.unlock()
                return p
            }
            if let arena, arenaUsed + bytes <= arena.size {
                let p = arena.base + arenaUsed
                arenaUsed += (bytes + 4095) / 4096 * 4096
                lock.unlock()
                return p
            }
            lock.unlock()
        }
        let alignment = bytes >= Self.hugePage ? Self.hugePage : 64
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, alignment, bytes) == 0, let raw else {
            // Tensors are made by non-throwing code everywhere, so this cannot be thrown; sizes a user types are checked
            // against the memory before work starts (`ResourceCheck`). Fail with one line and no crash report.
            FileHandle.standardError.write(
                Data(
                    ("topiary: error: " + SystemMemory.outOfMemoryMessage(bytes) + "\n").utf8))
            exit(1)
        }
        #if os(Linux)
        if bytes >= Self.hugePage { _ = madvise(raw, bytes, 14 /* MADV_HUGEPAGE */) }
        #endif
        return raw
    }

    func release(_ p: UnsafeMutableRawPointer, bytes requested: Int) {
        let bytes = Self.sizeClass(requested)
        if bytes >= Self.minimumPooled && bytes <= limitBytes {
            lock.lock()
            // Keep the newest buffers: evict the oldest until this one fits.
            while freeBytes + bytes > limitBytes, !order.isEmpty {
                let (size, old) = order.removeFirst()
                if var list = free[size], let i = list.firstIndex(of: old) {
                    list.remove(at: i)
                    free[size] = list.isEmpty ? nil : list
                    freeBytes -= size
                    if !inArena(old) { Foundation.free(old) }
                }
            }
            free[bytes, default: []].append(p)
            order.append((bytes, p))
            freeBytes += bytes
            lock.unlock()
            return
        }
        if bytes >= Self.minimumPooled {  // only big buffers are carved from the arena
            lock.lock()
            let carved = inArena(p)
            lock.unlock()
            if carved { return }
        }
        Foundation.free(p)
    }

    /// Returns every pooled buffer to the system.
    public func drain() {
        lock.lock()
        for (_, list) in free { for p in list where !inArena(p) { Foundation.free(p) } }
        free.removeAll()
        order.removeAll()
        freeBytes = 0
        lock.unlock()
    }
}

/// A dense, contiguous, row-major fp32 tensor.
///
/// `Tensor` is the value every layer of Topiary exchanges: weights, activations and gradients.
/// The last axis is the fastest varying one, so a `[out, in]` weight matrix is stored as `out` rows.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public private(set) var storage: TensorStorage
    /// Offset in elements into `storage` (views made by ``rows(_:)`` share storage).
    public let offset: Int

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }

    /// A new zero-filled tensor.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *))
        self.offset = 0
    }

    /// A new tensor whose contents are unspecified (to be fully overwritten by the caller).
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *), zeroed: false)
        self.offset = 0
    }

    /// A tensor holding a copy of `values`.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    /// A tensor filled with `value`.
    public init(shape: [Int], repeating value: Float) {
        self.init(uninitialized: shape)
        pointer.update(repeating: value, count: count)
    }

    /// A view that shares storage (no copy).
    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        precondition(offset + shape.reduce(1, *) <= storage.count, "view \(shape)+\(offset) exceeds storage of \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.offset = offset
    }

    /// The same data seen with another shape of the same element count (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var newShape = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            newShape[inferred] = known == 0 ? 0 : count / known
        }
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage, offset: offset)
    }

    /// Rows `range` of the first axis, as a view sharing storage.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "rows \(range) out of \(shape)")
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: [range.count] + shape.dropFirst(), storage: storage, offset: offset + range.lowerBound * inner)
    }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        let out = Tensor(uninitialized: shape)
        out.pointer.update(from: pointer, count: count)
        return out
    }

    /// The values as a Swift array (tests and small tensors only).
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    public subscript(_ index: Int) -> Float {
        get { pointer[index] }
        nonmutating set { pointer[index] = newValue }
    }

    /// True when this tensor is the only holder of its whole storage, so it may be updated in place.
    public mutating func isUniquelyOwned() -> Bool {
        offset == 0 && storage.count == count && isKnownUniquelyReferenced(&storage)
    }

    /// Fills with zeros in place.
    public func zero() { pointer.update(repeating: 0, count: count) }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = array.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}
