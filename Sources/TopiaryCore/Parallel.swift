import Foundation

/// Work split over the threads OpenBLAS would use, each item on one thread with single-threaded BLAS.
///
/// Many small GEMMs (attention per sequence and KV head, calibration windows, independent layers) run faster
/// side by side than one after another with every GEMM split over all threads: a 384 × 128 × 64 product is too
/// small to keep two threads busy, and the element-wise work between the GEMMs runs in parallel too. Inside
/// ``forEach`` BLAS is single-threaded, so nested calls run their items in order on their own thread.
public enum Parallel {
    /// Threads that ``forEach(_:_:)`` uses for `count` items.
    public static func workers(for count: Int) -> Int { max(1, min(BLAS.threads, count)) }

    /// Runs `body(item, worker)` for every item in `0..<count`, `worker` in `0..<workers(for: count)` naming the
    /// thread (for per-thread scratch buffers). Items go to threads in a fixed order (item `i` to worker
    /// `i mod workers`), so results do not depend on timing. Rethrows the first error; the other threads stop at
    /// their next item.
    public static func forEach(_ count: Int, _ body: (_ item: Int, _ worker: Int) throws -> Void) throws {
        let workers = workers(for: count)
        guard workers > 1 else { for c in 0..<count { try body(c, 0) }; return }
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        let failure = Locked<Error?>(nil)
        try withoutActuallyEscaping(body) { body in
            let work = Unchecked(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var c = w
                while c < count && failure.value == nil {
                    do { try work.value(c, w) } catch { failure.update { $0 = $0 ?? error } }
                    c += workers
                }
            }
            if let error = failure.value { throw error }
        }
    }

    /// `forEach` for a body that cannot fail.
    public static func forEach(_ count: Int, _ body: (_ item: Int, _ worker: Int) -> Void) {
        try! forEach(count) { (i: Int, w: Int) throws in body(i, w) }
    }

    /// Splits `0..<count` into one contiguous range per thread (at least `minimum` items each, so that small
    /// inputs run on the calling thread alone) and runs `body(range, worker)` for each side by side: element-wise
    /// and row-wise kernels between the GEMMs, which would otherwise leave the other cores idle.
    public static func ranges(_ count: Int, minimum: Int, _ body: (_ range: Range<Int>, _ worker: Int) -> Void) {
        let parts = min(BLAS.threads, count / max(minimum, 1))
        guard parts > 1 else { body(0..<count, 0); return }
        forEach(parts) { i, w in body((count * i / parts)..<(count * (i + 1) / parts), w) }
    }

    /// How many ranges ``ranges(_:minimum:_:)`` makes for `count` items.
    public static func rangeCount(_ count: Int, minimum: Int) -> Int { max(1, min(BLAS.threads, count / max(minimum, 1))) }

    /// Runs `body` with single-threaded BLAS (from the calling thread only; not inside ``forEach``).
    public static func withSingleThreadedBLAS<T>(_ body: () throws -> T) rethrows -> T {
        let saved = BLAS.threads
        guard saved > 1 else { return try body() }
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        return try body()
    }
}

/// A value shared between threads, read and changed under a lock.
public final class Locked<Value>: @unchecked Sendable {
    private var stored: Value
    private let lock = NSLock()
    public init(_ value: Value) { stored = value }
    public var value: Value { lock.lock(); defer { lock.unlock() }; return stored }
    public func update(_ change: (inout Value) -> Void) { lock.lock(); defer { lock.unlock() }; change(&stored) }
}

/// Hands a value to concurrent code that only reads it (see ``Parallel/forEach(_:_:)``).
public struct Unchecked<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
