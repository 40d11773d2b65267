import Foundation
@testable import TopiaryAutodiff
import TopiaryCore
import XCTest

/// Dropout masks are drawn in C; they must be exactly the SplitMix64 sequence (reproducible runs, resumable training).
final class DropoutTests: XCTestCase {
    func testMaskIsTheSplitMix64Sequence() throws {
        let g = Graph(recording: false)
        g.training = true
        g.dropoutSeed = 1234
        let n = 10_000, p: Float = 0.05
        let ones = g.input(Tensor(shape: [100, 100], values: [Float](repeating: 1, count: n)))
        for call in 1...2 {
            let y = try g.dropout(ones, p).value
            var rng = SplitMix64(seed: 1234 &+ UInt64(call) &* 0x9E37_79B9_7F4A_7C15)
            var dropped = 0
            for i in 0..<n {
                let want: Float = rng.nextDouble() < Double(p) ? 0 : 1 / (1 - p)
                XCTAssertEqual(y[i], want, "call \(call), element \(i)")
                if want == 0 { dropped += 1 }
                if y[i] != want { return }
            }
            XCTAssertEqual(Double(dropped) / Double(n), Double(p), accuracy: 0.01)
        }
    }
}
