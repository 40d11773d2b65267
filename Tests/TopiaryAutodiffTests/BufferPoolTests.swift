import Foundation
import TopiaryCore
import XCTest

/// Memory set aside with `BufferPool.reserve(bytes:)` and faulted in by a background thread while buffers carved
/// from it are already in use.
final class BufferPoolTests: XCTestCase {
    func testReservedMemoryServesNewBuffersAndKeepsTheirContents() throws {
        #if os(Linux)
        let pool = BufferPool.shared
        pool.drain()  // no recycled buffer may answer the requests below
        pool.reserve(bytes: 96 << 20)
        // A buffer carved from the front is written at once, while the background thread populates the region.
        let big = Tensor(uninitialized: [12 << 20])  // 48 MiB
        XCTAssertTrue(pool.isReserved(big.pointer), "a new big buffer comes from the reservation")
        for i in stride(from: 0, to: big.count, by: 1024) { big[i] = Float(i % 9973) + 0.5 }
        // A released reserved buffer is recycled for the same size, never handed to free().
        let address: UnsafeMutablePointer<Float> = {
            let small = Tensor(zeros: [300_001])
            XCTAssertTrue(pool.isReserved(small.pointer))
            XCTAssertTrue(small.pointer >= big.pointer + big.count || small.pointer + small.count <= big.pointer, "buffers overlap")
            XCTAssertEqual((0..<small.count).first { small[$0] != 0 }, nil, "Tensor(zeros:) from reserved memory is zero")
            return small.pointer
        }()
        // Populating memory in use keeps its contents (what the background thread does while buffers are in use).
        XCTAssertTrue(BufferPool.populate(UnsafeMutableRawPointer(big.pointer), bytes: big.count * 4))
        var intact = true
        for i in stride(from: 0, to: big.count, by: 1024) where big[i] != Float(i % 9973) + 0.5 { intact = false; break }
        XCTAssertTrue(intact, "populating the reservation changed a buffer in use")
        let again = Tensor(uninitialized: [300_001])
        XCTAssertEqual(again.pointer, address)
        // Beyond the reservation, buffers come from malloc as before.
        let outside = Tensor(uninitialized: [16 << 20])  // 64 MiB: more than is left
        XCTAssertFalse(pool.isReserved(outside.pointer))
        withExtendedLifetime((big, again, outside)) {}
        #endif
    }
}
