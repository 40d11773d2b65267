import Foundation
import TopiaryCore
@testable import TopiaryGGUF
import XCTest

/// Where the default model lives for real-model tests (skipped when absent).
func smolLM2Path() -> String? {
    if let p = ProcessInfo.processInfo.environment["TOPIARY_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let p = root.appendingPathComponent("checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    return FileManager.default.fileExists(atPath: p) ? p : nil
}

func fixture(_ name: String) -> String {
    Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil)!.path
}

final class GGUFReaderTests: XCTestCase {
    func testEveryBlockTypeMatchesTheGGUFPythonPackage() throws {
        let file = try GGUFFile(path: fixture("quants.gguf"))
        let expected =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture("quants.json"))))
            as! [String: [String: Any]]
        XCTAssertEqual(Set(file.tensors.map(\.name)), Set(expected.keys))
        XCTAssertEqual(expected.count, 13)
        for info in file.tensors {
            let e = expected[info.name]!
            XCTAssertEqual("\(info.type)", e["type"] as? String)
            XCTAssertEqual(info.shape, e["shape"] as? [Int], info.name)
            let values = (e["values"] as! [NSNumber]).map { $0.floatValue }
            let t = try file.dequantize(info)
            XCTAssertEqual(t.count, values.count, info.name)
            var worst: Float = 0
            for i in 0..<values.count { worst = max(worst, abs(t[i] - values[i]) / max(1e-3, abs(values[i]))) }
            XCTAssertLessThan(worst, 1e-5, "\(info.name) differs from gguf.quants.dequantize")
        }
    }

    func testRowRangesDequantizeLikeTheWholeTensor() throws {
        let file = try GGUFFile(path: fixture("quants.gguf"))
        for info in file.tensors {
            let whole = try file.dequantize(info)
            let row1 = try file.dequantize(info, rows: 1..<2)
            XCTAssertEqual(row1.array, Array(whole.array[info.dimensions[0]...]), info.name)
        }
        XCTAssertThrowsError(try file.dequantize(file.tensors[0], rows: 0..<3))
    }

    func testSmolLM2MetadataTensorsAndChecksums() throws {
        guard let path = smolLM2Path() else { throw XCTSkip("SmolLM2 GGUF not found (run `make model`)") }
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.tensors.count, 272)
        XCTAssertEqual(file.architecture, "llama")
        XCTAssertEqual(file.metadata["llama.block_count"]?.int, 30)
        XCTAssertEqual(file.metadata["llama.embedding_length"]?.int, 576)
        XCTAssertEqual(file.metadata["tokenizer.ggml.tokens"]?.stringArray?.count, 49_152)
        XCTAssertEqual(file.metadata["tokenizer.ggml.pre"]?.string, "smollm")
        let expected =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture("smollm2_tensors.json"))))
            as! [String: Any]
        for (name, value) in expected["tensors"] as! [String: [String: Any]] {
            let info = try XCTUnwrap(file.tensor(named: name))
            XCTAssertEqual("\(info.type)", value["type"] as? String)
            let t = try file.dequantize(info)
            var sum = 0.0, squares = 0.0
            for i in 0..<t.count { sum += Double(t[i]); squares += Double(t[i]) * Double(t[i]) }
            XCTAssertEqual(sum, (value["sum"] as! NSNumber).doubleValue, accuracy: 1e-6 * max(1, squares), name)
            XCTAssertEqual(squares, (value["sum_squares"] as! NSNumber).doubleValue, accuracy: 1e-9 * squares, name)
            XCTAssertEqual(Array(t.array.prefix(8)), (value["head"] as! [NSNumber]).map(\.floatValue), name)
        }
    }

    func testWriterRoundTripsEveryValueTypeAndTensors() throws {
        var w = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("u8", .uint8(200)), ("i8", .int8(-5)), ("u16", .uint16(60000)), ("i16", .int16(-300)), ("u32", .uint32(4_000_000_000)),
            ("i32", .int32(-7)), ("u64", .uint64(1 << 40)), ("i64", .int64(-(1 << 40))), ("f32", .float32(1.5)), ("f64", .float64(-2.25)),
            ("bool", .bool(true)), ("str", .string("naïve ☃")), ("arr", .array([.string("a"), .string("b")])),
            ("nested", .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])])), ("empty", .array([])),
        ]
        for (k, v) in values { w.set(k, v) }
        var rng = SplitMix64(seed: 3)
        let x = Tensor(shape: [3, 64], values: (0..<192).map { _ in rng.nextFloat(-1, 1) })
        for type in [GGMLType.f32, .f16, .q8_0, .q4_0, .q4_1] { try w.addTensor(name: "t_\(type)", tensor: x, type: type) }
        let path = NSTemporaryDirectory() + "topiary-writer-\(getpid()).gguf"
        defer { unlink(path) }
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        for (k, v) in values where k != "empty" { XCTAssertEqual(f.metadata[k], v, k) }
        XCTAssertEqual(f.metadataKeys, values.map(\.0))
        let tolerance: [GGMLType: Float] = [.f32: 0, .f16: 1e-3, .q8_0: 1e-2, .q4_0: 0.15, .q4_1: 0.08]
        for type in [GGMLType.f32, .f16, .q8_0, .q4_0, .q4_1] {
            let info = try XCTUnwrap(f.tensor(named: "t_\(type)"))
            XCTAssertEqual(info.type, type)
            XCTAssertEqual(info.shape, [3, 64])
            let y = try f.dequantize(info)
            var worst: Float = 0
            for i in 0..<x.count { worst = max(worst, abs(x[i] - y[i])) }
            XCTAssertLessThanOrEqual(worst, tolerance[type]!, "\(type)")
        }
    }
}
