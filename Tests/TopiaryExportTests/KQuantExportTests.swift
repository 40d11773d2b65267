import Foundation
import TopiaryAutodiff
import TopiaryCore
@testable import TopiaryExport
import TopiaryGGUF
import TopiaryModels
import XCTest

/// K-quant exports (q4_k, q5_k, q6_k and llama.cpp's Q4_K_M mix): the type of every tensor as llama.cpp's quantize
/// chooses it, the fallbacks of rows that do not hold whole super-blocks, and models that read back close to F32.
final class KQuantExportTests: XCTestCase {
    /// The layers whose attn_v / ffn_down llama.cpp's Q4_K_M stores Q6_K among `n`: `use_more_bits(i, n)` is
    /// `i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2`, worked out by hand for the sizes used here.
    static let moreBits: [Int: Set<Int>] = [
        30: [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29],
        16: [0, 1, 4, 7, 10, 13, 14, 15],
        14: [0, 3, 6, 9, 12, 13],
    ]

    /// Q4_K_M on a 16-layer model whose rows hold whole super-blocks, layers 1 and 2 without attention: ffn_down is
    /// Q6_K in the layers `use_more_bits(layer, 16)` picks, attn_v in those `use_more_bits(i, 14)` picks for the i-th
    /// attn_v of the file (so layers 0, 5, 8, 11, 14 and 15), the untied output Q6_K, everything else Q4_K, norms F32.
    func testQ4KMChoosesLlamaCppsTypeForEveryTensor() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let heads = (0..<16).map { [1, 2].contains($0) ? 0 : 4 }
        let model = try tinyModel(
            heads: heads, kvHeads: heads.map { $0 / 2 }, ffn: [Int](repeating: 512, count: 16), hidden: 256, headDim: 64, tied: false)
        let out = temporaryPath(self, "mix.q4_k_m.gguf")
        let report = try GGUFExporter.export(model: model, sourceMetadata: md, to: out, options: GGUFExportOptions(type: .q4_k_m))
        XCTAssertEqual(report.type, "Q4_K_M")
        XCTAssertEqual(report.fallbacks, [], "every row holds whole super-blocks")
        let file = try GGUFFile(path: out)
        XCTAssertEqual(file.metadata["general.file_type"], .uint32(15))
        XCTAssertEqual(file.metadata["general.quantization_version"], .uint32(2))
        let attentionLayers = (0..<16).filter { heads[$0] > 0 }
        let q6Values = Set(Self.moreBits[14]!.map { attentionLayers[$0] })
        XCTAssertEqual(q6Values, [0, 5, 8, 11, 14, 15])
        var expected: [String: GGMLType] = ["token_embd.weight": .q4_K, "output.weight": .q6_K, "output_norm.weight": .f32]
        for l in 0..<16 {
            let b = "blk.\(l)."
            if heads[l] > 0 {
                for t in ["attn_q", "attn_k", "attn_output"] { expected[b + t + ".weight"] = .q4_K }
                expected[b + "attn_v.weight"] = q6Values.contains(l) ? .q6_K : .q4_K
                expected[b + "attn_norm.weight"] = .f32
            }
            for t in ["ffn_gate", "ffn_up"] { expected[b + t + ".weight"] = .q4_K }
            expected[b + "ffn_down.weight"] = Self.moreBits[16]!.contains(l) ? .q6_K : .q4_K
            expected[b + "ffn_norm.weight"] = .f32
        }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.type) }), expected)
        let bits = 8 * file.tensors.reduce(0) { $0 + $1.byteCount }, weights = file.tensors.reduce(0) { $0 + $1.elementCount }
        XCTAssertEqual(report.bitsPerWeight, Double(bits) / Double(weights), accuracy: 1e-9)
        XCTAssertEqual(report.bitsPerWeight, 4.5, accuracy: 0.5)
        XCTAssertEqual(try GGUFModelLoader.load(path: out).model.config, model.config)
    }

    /// The plan alone, for 30 layers with the embedding tied to the output (SmolLM2's shape at 512 wide): the
    /// embedding is the output matrix (Q6_K); attn_v and ffn_down are Q6_K in the same 14 layers.
    func testQ4KMPlanFor30LayersAndATiedEmbedding() {
        var plan = TensorTypePlan(requested: .q4_k_m, tiedEmbeddings: true, attentionValueCount: 30, layerCount: 30)
        XCTAssertEqual(plan.type(name: "token_embd.weight", shape: [49_152, 512]).0, .q6_K)
        for l in 0..<30 {
            let more = Self.moreBits[30]!.contains(l)
            XCTAssertEqual(plan.type(name: "blk.\(l).attn_q.weight", shape: [512, 512]).0, .q4_K)
            XCTAssertEqual(plan.type(name: "blk.\(l).attn_v.weight", shape: [128, 512]).0, more ? .q6_K : .q4_K, "layer \(l)")
            XCTAssertEqual(plan.type(name: "blk.\(l).ffn_down.weight", shape: [512, 1536]).0, more ? .q6_K : .q4_K, "layer \(l)")
            XCTAssertEqual(plan.type(name: "blk.\(l).ffn_norm.weight", shape: [512]).0, .f32)
        }
        var untied = TensorTypePlan(requested: .q4_k, tiedEmbeddings: false, attentionValueCount: 30, layerCount: 30)
        XCTAssertEqual(untied.type(name: "token_embd.weight", shape: [96, 512]).0, .q4_K)
        XCTAssertEqual(untied.type(name: "output.weight", shape: [96, 512]).0, .q6_K)
        XCTAssertEqual(untied.type(name: "blk.0.attn_v.weight", shape: [128, 512]).0, .q4_K, "only q4_k_m mixes")
        // llama.cpp's fallbacks: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16 past a multiple of 32; the output
        // matrix is Q8_0 when its rows do not hold whole super-blocks.
        XCTAssertEqual(untied.type(name: "output.weight", shape: [96, 576]).0, .q8_0)
        XCTAssertEqual(untied.type(name: "blk.0.ffn_up.weight", shape: [96, 576]).0, .q5_0)
        XCTAssertEqual(untied.type(name: "blk.0.ffn_down.weight", shape: [96, 1215]).0, .f16)
        XCTAssertEqual(GGUFExportType.fallback(for: .q5_K, rowLength: 576), .q5_1)
        XCTAssertEqual(GGUFExportType.fallback(for: .q6_K, rowLength: 576), .q8_0)
        XCTAssertEqual(GGUFExportType.fallback(for: .q6_K, rowLength: 1215), .f16)
        XCTAssertEqual(GGUFExportType.fallback(for: .q4_K, rowLength: 1024), .q4_K)
    }

    /// q4_k, q5_k and q6_k on a tiny model: matrices in the type, the output matrix Q6_K (noted as a deviation for q4_k
    /// and q5_k), llama.cpp's file types, and weights read back with the error of their type.
    func testSingleKQuantTypesOnATinyModel() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [512, 512], hidden: 256, headDim: 64, tied: false)
        let bound: [GGUFExportType: Double] = [.q4_k: 0.08, .q5_k: 0.04, .q6_k: 0.02]
        var errors: [GGUFExportType: Double] = [:]
        for (type, fileType) in [(GGUFExportType.q4_k, UInt32(14)), (.q5_k, 16), (.q6_k, 18)] {
            let out = temporaryPath(self, "tiny.\(type).gguf")
            let report = try GGUFExporter.export(model: model, sourceMetadata: md, to: out, options: GGUFExportOptions(type: type))
            let file = try GGUFFile(path: out)
            XCTAssertEqual(file.metadata["general.file_type"], .uint32(fileType))
            XCTAssertEqual(file.tensor(named: "blk.1.ffn_up.weight")?.type, type.baseType)
            XCTAssertEqual(file.tensor(named: "token_embd.weight")?.type, type.baseType)
            XCTAssertEqual(file.tensor(named: "output.weight")?.type, .q6_K)
            XCTAssertEqual(file.tensor(named: "blk.0.attn_norm.weight")?.type, .f32)
            XCTAssertEqual(report.fallbacks.isEmpty, type == .q6_k, "\(report.fallbacks)")
            if type != .q6_k {
                XCTAssertEqual(
                    report.fallbacks, ["1 tensors: output matrix stored Q6_K (llama.cpp's K-quant types raise it) (output.weight)"])
            }
            let reloaded = try XCTUnwrap(try GGUFModelLoader.load(path: out).model as? DecoderModel)
            var squares = 0.0, energy = 0.0
            for (a, b) in [(model.layers[1].up, reloaded.layers[1].up), (model.layers[0].q, reloaded.layers[0].q)] {
                for (x, y) in zip(a.value.array, b.value.array) {
                    squares += Double(x - y) * Double(x - y)
                    energy += Double(x) * Double(x)
                }
            }
            errors[type] = (squares / energy).squareRoot()
            XCTAssertLessThan(errors[type]!, bound[type]!, "\(type): relative RMSE")
        }
        XCTAssertLessThan(errors[.q6_k]!, errors[.q5_k]!)
        XCTAssertLessThan(errors[.q5_k]!, errors[.q4_k]!)
    }

    /// SmolLM2 (576 wide: no row of 576 holds whole super-blocks) as Q4_K_M, the types llama.cpp gives it: the tied
    /// embedding Q8_0, the 576-long rows Q5_0 (Q8_0 for the attn_v that Q4_K_M raises), ffn_down (rows of 1536) Q4_K
    /// or Q6_K. It reads back with WikiText-2 perplexity within 6% of the F32 model (measured: 28.233 → 29.608, +4.9%;
    /// Q4_0 gives 32.88 and Q6_K 28.240, so a wrong block layout or mix would show).
    func testSmolLM2AsQ4KMReadsBackCloseToF32() throws {
        let (loaded, tokens) = try SmolLM2.load()
        let out = temporaryPath(self, "smollm2.q4_k_m.gguf")
        let report = try GGUFExporter.export(
            model: loaded.model, sourceMetadata: loaded.metadata, to: out, options: GGUFExportOptions(type: .q4_k_m))
        let file = try GGUFFile(path: out)
        XCTAssertEqual(file.metadata["general.file_type"], .uint32(15))
        XCTAssertEqual(file.tensor(named: "token_embd.weight")?.type, .q8_0)
        XCTAssertNil(file.tensor(named: "output.weight"))
        for l in 0..<30 {
            let more = Self.moreBits[30]!.contains(l), b = "blk.\(l)."
            XCTAssertEqual(file.tensor(named: b + "attn_v.weight")?.type, more ? .q8_0 : .q5_0, "layer \(l)")
            XCTAssertEqual(file.tensor(named: b + "ffn_down.weight")?.type, more ? .q6_K : .q4_K, "layer \(l)")
            for t in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
                XCTAssertEqual(file.tensor(named: b + t + ".weight")?.type, .q5_0)
            }
        }
        XCTAssertEqual(
            report.fallbacks.map { $0.prefix(while: { $0 != ":" }) }, ["1 tensors", "166 tensors", "14 tensors"], "\(report.fallbacks)")
        XCTAssertTrue(report.fallbacks[0].hasSuffix("stored Q8_0 (llama.cpp's choice) (token_embd.weight)"), report.fallbacks[0])
        XCTAssertTrue(report.fallbacks[2].contains("Q6_K's super-block of 256: stored Q8_0"), report.fallbacks[2])
        XCTAssertEqual(report.bitsPerWeight, 6.17, accuracy: 0.01, "bartowski's llama.cpp Q4_K_M of this model is 105 MB too")

        let f32 = try perplexity(loaded.model, tokens), q4km = try perplexity(try GGUFModelLoader.load(path: out).model, tokens)
        print(
            String(format: "SmolLM2 WikiText-2 ppl (2 windows of 512): F32 %.4f, Q4_K_M %.4f (%+.2f%%)", f32, q4km, 100 * (q4km / f32 - 1)))
        XCTAssertEqual(q4km, f32, accuracy: 0.06 * f32)
        XCTAssertNotEqual(q4km, f32)
    }

    /// A pruned SmolLM2 (FFN widths and head counts per layer) as Q4_K_M: every ffn_down and attn_output whose rows are
    /// not a multiple of 256 falls back as llama.cpp's quantize would (Q5_0, Q8_0 for the Q6_K layers, F16 past a
    /// multiple of 32), with a note in its tensor entry and its name in the report's fallbacks.
    func testPrunedWidthsReportTheirFallbacks() throws {
        let (loaded, _) = try SmolLM2.load()
        let model = try SmolLM2.pruned(loaded.model)
        let c = model.config
        let out = temporaryPath(self, "pruned.q4_k_m.gguf")
        let report = try GGUFExporter.export(
            model: model, sourceMetadata: loaded.metadata, to: out, options: GGUFExportOptions(type: .q4_k_m))
        let file = try GGUFFile(path: out)
        let entries = Dictionary(uniqueKeysWithValues: report.tensors.map { ($0.name, $0) })
        var fellBack: [String: Int] = [:], f16 = 0
        func check(_ name: String, row: Int, q6: Bool) throws {
            let chosen: GGMLType = q6 ? .q6_K : .q4_K
            let expected: GGMLType = row % 256 == 0 ? chosen : row % 32 != 0 ? .f16 : q6 ? .q8_0 : .q5_0
            XCTAssertEqual(file.tensor(named: name)?.type, expected, "\(name), rows of \(row)")
            let entry = try XCTUnwrap(entries[name])
            XCTAssertEqual(entry.type, "\(expected)")
            guard expected != chosen else { return XCTAssertNil(entry.note, name) }
            fellBack[String(name.split(separator: ".")[2]), default: 0] += 1
            if expected == .f16 { f16 += 1 }
            let note = try XCTUnwrap(entry.note, name)
            XCTAssertTrue(note.hasPrefix("row length \(row) is "), note)
            let line = try XCTUnwrap(report.fallbacks.first { $0.contains(note) }, "no fallback line for \(name)")
            XCTAssertTrue(line.contains(name) || line.contains(" more)"), line)
        }
        var attention = 0
        let attentionCount = c.heads.filter { $0 > 0 }.count
        for l in 0..<c.layerCount {
            try check("blk.\(l).ffn_down.weight", row: c.intermediateSizes[l], q6: Self.moreBits[30]!.contains(l))
            guard c.heads[l] > 0 else { continue }
            try check("blk.\(l).attn_output.weight", row: c.heads[l] * 64, q6: false)
            try check("blk.\(l).attn_v.weight", row: 576, q6: TensorTypePlan.useMoreBits(attention, attentionCount))
            attention += 1
        }
        XCTAssertEqual(fellBack["attn_v"], attentionCount, "rows of 576")
        XCTAssertGreaterThan(fellBack["ffn_down", default: 0], 20, "pruned FFN widths that are not multiples of 256")
        XCTAssertGreaterThan(f16, 0, "l2 pruning leaves FFN widths that are not multiples of 32")
        XCTAssertEqual(try GGUFModelLoader.load(path: out).model.config, c)
    }
}
