import Foundation
import TopiaryCore
@testable import TopiaryGGUF
import XCTest

/// Topiary's K-quant quantizers (Q4_K, Q5_K, Q6_K and the fallbacks Q5_0, Q5_1) against the references.
///
/// `Fixtures/kquants.gguf` holds a fixed input (ten rows of 256, each a different distribution) and the blocks
/// Topiary wrote for it; `Fixtures/kquants_reference.gguf`, made from that file by
/// `scripts/reference/make_gguf_fixtures.py --kquants`, holds what the `gguf` Python package dequantizes those blocks
/// to, gguf's own Q5_0/Q5_1 blocks of the input and llama.cpp's K-quant blocks of it (ggml's `ggml_quantize_chunk`,
/// through llama-cpp-python). Record both again after a deliberate change to the quantizers:
/// `TOPIARY_RECORD_FIXTURES=1 swift test --filter KQuantTests`, then the script.
final class KQuantTests: XCTestCase {
    static let types: [GGMLType] = [.q4_K, .q5_K, .q6_K, .q5_0, .q5_1]

    /// Ten rows of 256: Gaussian; Gaussian with outliers; Laplace; all positive; all negative; sub-blocks whose
    /// scale grows 4× from one to the next (the 6-bit sub-scales); zeros, a constant run and noise; all zeros; and
    /// values on Q4_1 and Q4_0 grids, as in a model requantized from those types (SmolLM2's Q4_1 file): there the
    /// scale search meets exact ties, which only arithmetic in ggml's order resolves as llama.cpp does.
    static func fixtureInput() -> Tensor {
        var rng = SplitMix64(seed: 2025)
        func gaussian() -> Float {
            let u = max(rng.nextDouble(), 1e-12), v = rng.nextDouble()
            return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
        }
        var x = [Float](repeating: 0, count: 10 * 256)
        var step: Float = 0, low: Float = 0
        for i in 0..<256 {
            x[i] = 0.02 * gaussian()
            x[256 + i] = 0.02 * gaussian() * (i % 61 == 7 ? 8 : 1)
            let u = rng.nextFloat(-0.5, 0.5)
            x[512 + i] = -0.01 * (u < 0 ? -1 : 1) * Float(log(1 - 2 * Double(abs(u)) + 1e-9))
            x[768 + i] = rng.nextFloat(0.001, 0.05)
            x[1024 + i] = -rng.nextFloat(0.001, 0.05)
            x[1280 + i] = 1e-4 * Float(1 << (2 * (i / 32))) * gaussian()
            x[1536 + i] = i < 128 ? 0 : i < 192 ? 0.01 : 0.03 * gaussian()
            if i % 32 == 0 { (step, low) = (rng.nextFloat(0.002, 0.008), -rng.nextFloat(0.01, 0.05)) }
            x[2048 + i] = low + step * Float(Int(rng.nextFloat(0, 16)))
            x[2304 + i] = step * Float(Int(rng.nextFloat(0, 16)) - 8)
        }
        return Tensor(shape: [10, 256], values: x)
    }

    static var fixtureDirectory: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures" }

    /// With TOPIARY_RECORD_FIXTURES set, writes Fixtures/kquants.gguf (the input and Topiary's blocks of it).
    func testRecordFixtureWhenAsked() throws {
        guard ProcessInfo.processInfo.environment["TOPIARY_RECORD_FIXTURES"] != nil else {
            throw XCTSkip("set TOPIARY_RECORD_FIXTURES=1 to record Fixtures/kquants.gguf")
        }
        let input = Self.fixtureInput()
        var w = GGUFWriter()
        w.set("general.description", .string("Topiary K-quant blocks of `input` (KQuantTests.fixtureInput)"))
        try w.addTensor(name: "input", tensor: input)
        for type in Self.types { try w.addTensor(name: "\(type)".lowercased(), tensor: input, type: type) }
        try w.write(to: Self.fixtureDirectory + "/kquants.gguf")
    }

    func rmse(_ a: [Float], _ b: [Float]) -> Double {
        (zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / Double(a.count)).squareRoot()
    }

    /// Topiary still writes the recorded blocks; the gguf package reads them to the values Topiary reads (so the byte
    /// layout is ggml's); Topiary's Q5_0/Q5_1 blocks equal gguf's; and its K-quant blocks are llama.cpp's, byte for byte
    /// (the same scale search, arithmetic in the same order).
    func testKQuantBlocksMatchTheGGUFPackageAndLlamaCpp() throws {
        let file = try GGUFFile(path: fixture("kquants.gguf")), reference = try GGUFFile(path: fixture("kquants_reference.gguf"))
        let input = try file.dequantize(try XCTUnwrap(file.tensor(named: "input")))
        XCTAssertEqual(input.array, Self.fixtureInput().array, "the fixture's input is not fixtureInput(): record it again")
        for type in Self.types {
            let name = "\(type)".lowercased()
            let recorded = try XCTUnwrap(file.tensor(named: name))
            XCTAssertEqual(recorded.type, type)
            let bytes = try GGUFWriter.encode(input, as: type, name: name)
            XCTAssertEqual(
                bytes, Data(file.rawBytes(of: recorded)), "\(type): Topiary's blocks changed (record the fixtures again if on purpose)")

            let ours = try file.dequantize(recorded).array
            let theirs = try reference.dequantize(try XCTUnwrap(reference.tensor(named: "gguf." + name))).array
            XCTAssertEqual(ours.count, theirs.count)
            var worst: Float = 0
            for i in 0..<ours.count { worst = max(worst, abs(ours[i] - theirs[i]) / max(1e-3, abs(theirs[i]))) }
            XCTAssertLessThan(worst, 1e-5, "\(type): Topiary and gguf.quants.dequantize read the blocks differently")

            if type == .q5_0 || type == .q5_1 {
                let gguf = try XCTUnwrap(reference.tensor(named: "ggufq." + name))
                XCTAssertEqual(bytes, Data(reference.rawBytes(of: gguf)), "\(type): gguf.quants.quantize writes other blocks")
                continue
            }
            let llama = try XCTUnwrap(reference.tensor(named: "llama." + name), "the reference has no llama.cpp blocks")
            let llamaBytes = Data(reference.rawBytes(of: llama)), block = type.bytesPerBlock
            let differing = (0..<(bytes.count / block)).filter {
                bytes[($0 * block)..<(($0 + 1) * block)] != llamaBytes[($0 * block)..<(($0 + 1) * block)]
            }
            XCTAssertEqual(differing, [], "\(type): these rows' super-blocks differ from llama.cpp's")
        }
    }

    /// RMSE on 256K Gaussian weights (σ = 1): llama.cpp's reference quantizers reach Q4_K 0.0713, Q5_K 0.0361 and Q6_K
    /// 0.0177 on such data (llama-cpp-python 0.3.36 on numpy's N(0,1), printed by make_gguf_fixtures.py --kquants); the
    /// bounds are 1% above. The K-quants' searched scales beat the round-to-nearest 32-blocks of about the same bits.
    func testQuantizationErrorIsLlamaCppsOnGaussianWeights() throws {
        var rng = SplitMix64(seed: 99)
        let n = 1024 * 256
        var values = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let u = max(rng.nextDouble(), 1e-12), v = rng.nextDouble()
            values[i] = Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
        }
        let x = Tensor(shape: [1024, 256], values: values)
        var error: [GGMLType: Double] = [:]
        for type in [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K] {
            var w = GGUFWriter()
            try w.addTensor(name: "x", tensor: x, type: type)
            let path = NSTemporaryDirectory() + "topiary-kquant-\(getpid())-\(type).gguf"
            defer { unlink(path) }
            try w.write(to: path)
            let file = try GGUFFile(path: path)
            error[type] = rmse(try file.dequantize(file.tensor(named: "x")!).array, values)
        }
        let e = error.mapValues { ($0 * 1e4).rounded() / 1e4 }
        XCTAssertLessThan(error[.q6_K]!, 0.0180, "\(e)")
        XCTAssertLessThan(error[.q5_K]!, 0.0365, "\(e)")
        XCTAssertLessThan(error[.q4_K]!, 0.0720, "\(e)")
        XCTAssertLessThan(error[.q6_K]!, error[.q5_K]!)
        XCTAssertLessThan(error[.q5_K]!, error[.q5_1]!)
        XCTAssertLessThan(error[.q5_1]!, error[.q5_0]!)
        XCTAssertLessThan(error[.q4_K]!, error[.q4_1]!)
        XCTAssertLessThan(error[.q4_1]!, error[.q4_0]!)
        XCTAssertLessThan(error[.q8_0]!, error[.q6_K]!)
    }

    /// Rows of Q5_0 and Q5_1 (the fallbacks) and of the K-quants encode one by one: a tensor of many rows quantized on
    /// several threads gives the bytes of its rows quantized one at a time.
    func testRowsEncodeIndependently() throws {
        var rng = SplitMix64(seed: 5)
        let x = Tensor(shape: [300, 512], values: (0..<(300 * 512)).map { _ in rng.nextFloat(-1, 1) })
        for type in Self.types {
            let whole = try GGUFWriter.encode(x, as: type)
            var rows = Data()
            for r in 0..<300 {
                rows.append(try GGUFWriter.encode(Tensor(shape: [1, 512], values: Array(x.array[(r * 512)..<((r + 1) * 512)])), as: type))
            }
            XCTAssertEqual(whole, rows, "\(type)")
        }
        XCTAssertThrowsError(try GGUFWriter.encode(Tensor(shape: [2, 288], values: [Float](repeating: 0, count: 576)), as: .q4_K)) {
            XCTAssertTrue("\($0)".contains("288"), "\($0)")
        }
    }
}
