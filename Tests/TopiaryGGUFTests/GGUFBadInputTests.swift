import Foundation
import TopiaryCore
@testable import TopiaryGGUF
import XCTest

/// Hand-built GGUF bytes, so each test can damage exactly one field.
struct GGUFBytes {
    var data = Data()
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); data.append(contentsOf: Array(s.utf8)) }
    mutating func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
        data.append(contentsOf: Array("GGUF".utf8)); u32(version); u64(tensors); u64(kvs)
    }
    mutating func pad(_ a: Int = 32) { while data.count % a != 0 { data.append(0) } }

    /// A valid file with one F32 tensor `w` of 4×8 and one string key.
    static func valid(dims: [UInt64] = [8, 4], type: UInt32 = 0, offset: UInt64 = 0, dataBytes: Int = 128) -> GGUFBytes {
        var b = GGUFBytes()
        b.header(tensors: 1, kvs: 1)
        b.str("general.architecture"); b.u32(8); b.str("llama")
        b.str("w"); b.u32(UInt32(dims.count)); dims.forEach { b.u64($0) }; b.u32(type); b.u64(offset)
        b.pad()
        b.data.append(Data(count: dataBytes))
        return b
    }
}

final class GGUFBadInputTests: XCTestCase {
    var files: [String] = []
    override func tearDown() { files.forEach { unlink($0) } }

    func write(_ d: Data) -> String {
        let p = NSTemporaryDirectory() + "bad-\(getpid())-\(files.count).gguf"
        FileManager.default.createFile(atPath: p, contents: d)
        files.append(p)
        return p
    }

    func expect(_ d: Data, file: StaticString = #filePath, line: UInt = #line, _ check: (GGUFError) -> Bool) {
        let p = write(d)
        XCTAssertThrowsError(try GGUFFile(path: p), file: file, line: line) { error in
            guard let e = error as? GGUFError else { return XCTFail("not a GGUFError: \(error)", file: file, line: line) }
            XCTAssertTrue(check(e), "unexpected error \(e)", file: file, line: line)
            let message = e.localizedDescription
            XCTAssertTrue(message.hasPrefix(p), "message does not name the file: \(message)", file: file, line: line)
            XCTAssertFalse(message.contains("\n"), file: file, line: line)
        }
    }

    func testTheValidBaseFileLoads() throws {
        let f = try GGUFFile(path: write(GGUFBytes.valid().data))
        XCTAssertEqual(f.tensors.first?.shape, [4, 8])
    }

    func testMissingPathAndDirectory() {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) {
            XCTAssertEqual($0 as? GGUFError, .fileNotFound(path: "/nonexistent/model.gguf"))
        }
        XCTAssertThrowsError(try GGUFFile(path: NSTemporaryDirectory())) {
            XCTAssertEqual($0 as? GGUFError, .notAFile(path: NSTemporaryDirectory()))
        }
    }

    func testEmptyFileAndWrongMagicAndVersion() {
        expect(Data()) {
            if case .truncated = $0 { return true }; return false
        }
        var d = GGUFBytes.valid().data
        d.replaceSubrange(0..<4, with: Array("GGML".utf8))
        expect(d) {
            if case .badMagic = $0 { return true }; return false
        }
        var v = GGUFBytes.valid().data
        v.replaceSubrange(4..<8, with: [1, 0, 0, 0])
        expect(v) { $0 == .unsupportedVersion(path: $0.path, version: 1) }
    }

    func testTruncationAtEveryStage() {
        let full = GGUFBytes.valid().data
        for cut in [6, 20, 30, 50, 70, 90, full.count - 1] {
            expect(full.prefix(cut)) {
                switch $0 {
                case .truncated, .tensorOutOfBounds: return true;
                default: return false
                }
            }
        }
    }

    func testHugeDeclaredLengthsAreRefusedBeforeAllocating() {
        var b = GGUFBytes()
        b.header(tensors: 0, kvs: 1)
        b.u64(1 << 60)  // key length 2^60
        expect(b.data) {
            if case .truncated = $0 { return true }; return false
        }
        var a = GGUFBytes()
        a.header(tensors: 0, kvs: 1)
        a.str("arr"); a.u32(9); a.u32(4); a.u64(1 << 62)
        // 2^62 × 4 bytes overflows 64 bits: the count itself is reported, not a wrapped-around byte offset.
        expect(a.data) {
            guard case let .impossibleCount(_, what, count, bytesEach, _) = $0 else { return false }
            return what == "metadata 'arr': array count" && count == 1 << 62 && bytesEach == 4
                && !$0.localizedDescription.contains("byte 0")
        }
        var c = GGUFBytes()
        c.header(tensors: 1 << 40, kvs: 0)
        expect(c.data) {
            if case .truncated = $0 { return true }; return false
        }
    }

    func testUnknownTypes() {
        var b = GGUFBytes()
        b.header(tensors: 0, kvs: 1)
        b.str("k"); b.u32(99); b.u32(0)
        expect(b.data) { $0 == .unknownValueType(path: $0.path, key: "k", type: 99) }
        expect(GGUFBytes.valid(type: 77).data) { $0 == .unknownTensorType(path: $0.path, tensor: "w", type: 77) }
    }

    func testBadTensorTables() {
        expect(GGUFBytes.valid(offset: 64).data) {
            if case .tensorOutOfBounds = $0 { return true }; return false
        }
        expect(GGUFBytes.valid(dims: [8, 4, 1, 1, 1, 1, 1]).data) {
            if case .invalidTensorInfo = $0 { return true }; return false
        }
        expect(GGUFBytes.valid(dims: [8, 0]).data) {
            if case .invalidTensorInfo = $0 { return true }; return false
        }
        expect(GGUFBytes.valid(dims: [10, 4], type: 8).data) {
            if case .invalidTensorInfo = $0 { return true }; return false
        }
        expect(GGUFBytes.valid(dims: [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1]).data) {
            switch $0 {
            case .invalidTensorInfo, .tensorOutOfBounds: return true;
            default: return false
            }
        }
        var dup = GGUFBytes()
        dup.header(tensors: 2, kvs: 0)
        for _ in 0..<2 { dup.str("w"); dup.u32(1); dup.u64(8); dup.u32(0); dup.u64(0) }
        dup.pad()
        dup.data.append(Data(count: 64))
        expect(dup.data) { $0 == .duplicateTensor(path: $0.path, tensor: "w") }
    }

    func testUnsupportedButKnownTypeFailsAtDequantization() throws {
        // IQ2_XXS (type 16): a known layout Topiary does not decode.
        let f = try GGUFFile(path: write(GGUFBytes.valid(dims: [256, 1], type: 16, dataBytes: 96).data))
        XCTAssertThrowsError(try f.dequantize(f.tensors[0])) {
            guard case .unsupportedTensorType = $0 as? GGUFError else { return XCTFail("\($0)") }
        }
    }
}

extension GGUFError {
    var path: String {
        switch self {
        case let .fileNotFound(p), let .notAFile(p), let .unreadable(p, _), let .badMagic(p, _), let .unsupportedVersion(p, _),
            let .truncated(p, _, _, _), let .unknownValueType(p, _, _), let .invalidMetadata(p, _), let .invalidTensorInfo(p, _, _),
            let .unknownTensorType(p, _, _), let .unsupportedTensorType(p, _, _), let .tensorOutOfBounds(p, _, _, _),
            let .duplicateTensor(p, _), let .impossibleCount(p, _, _, _, _):
            return p
        }
    }
}
