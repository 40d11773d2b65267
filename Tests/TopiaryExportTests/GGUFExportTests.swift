import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryExport
import TopiaryGGUF
import TopiaryModels
import XCTest

final class GGUFExportTests: XCTestCase {
    /// The dense model goes out as `llama` with llama.cpp's tensor layout: the exported bytes of
    /// `attn_q`/`attn_k` equal the source GGUF's (made by llama.cpp's converter) once both are decoded,
    /// so the q/k permutation is re-applied exactly; Topiary reads the export back to the same model.
    func testDenseSmolLM2ExportsAsLlamaInLlamaCppLayoutAndRoundTrips() throws {
        let (loaded, tokens) = try SmolLM2.load()
        let out = temporaryPath(self, "dense.gguf")
        let report = try GGUFExporter.export(model: loaded.model, sourceMetadata: loaded.metadata, to: out)
        XCTAssertEqual(report.architecture, "llama")
        XCTAssertTrue(report.uniform)
        XCTAssertEqual(report.tensors.count, 1 + 30 * 9 + 1)  // tied output: no output.weight
        XCTAssertTrue(report.fallbacks.isEmpty)

        let source = try GGUFFile(path: try smolLM2Path()), file = try GGUFFile(path: out)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.metadata["general.architecture"], .string("llama"))
        XCTAssertEqual(file.metadata["general.file_type"], .uint32(0))
        for key in [
            "llama.block_count", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
            "llama.attention.head_count_kv", "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon",
            "llama.context_length", "llama.rope.dimension_count", "llama.vocab_size",
        ] {
            XCTAssertEqual(file.metadata[key], source.metadata[key], key)
        }
        let tokenizerKeys = source.metadataKeys.filter { $0.hasPrefix("tokenizer.") }
        XCTAssertFalse(tokenizerKeys.isEmpty)
        for key in tokenizerKeys { XCTAssertEqual(file.metadata[key], source.metadata[key], key) }

        for name in [
            "token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.17.attn_q.weight", "blk.29.attn_k.weight",
            "blk.3.ffn_down.weight", "output_norm.weight",
        ] {
            let a = try XCTUnwrap(source.tensor(named: name)), b = try XCTUnwrap(file.tensor(named: name))
            XCTAssertEqual(b.dimensions, a.dimensions, name)
            XCTAssertEqual(b.type, .f32, name)
            XCTAssertEqual(try file.dequantize(b).array, try source.dequantize(a).array, name)
        }

        let reloaded = try GGUFModelLoader.load(path: out)
        XCTAssertEqual(reloaded.model.config, loaded.model.config)
        XCTAssertEqual(try perplexity(reloaded.model, tokens, windows: 1), try perplexity(loaded.model, tokens, windows: 1))
    }

    /// A 20%-pruned model (per-layer heads and FFN widths) goes out as `deci` with per-layer arrays;
    /// F32 reloads to the same perplexity, Q8_0 close to it; rows that do not hold whole Q8_0 blocks are F16.
    func testPrunedSmolLM2ExportsPerLayerArraysAndRoundTripsInF32AndQ8() throws {
        let (loaded, tokens) = try SmolLM2.load()
        let model = try SmolLM2.pruned(loaded.model)
        let c = model.config
        XCTAssertFalse(c.isUniform)
        XCTAssertEqual(c.heads[0], 9)
        XCTAssertEqual(c.heads[3], 6)
        let expected = try perplexity(model, tokens)

        let f32 = temporaryPath(self, "pruned.f32.gguf")
        let report = try GGUFExporter.export(model: model, sourceMetadata: loaded.metadata, to: f32)
        XCTAssertEqual(report.architecture, "deci")
        XCTAssertFalse(report.uniform)
        XCTAssertTrue(report.notes.contains { $0.contains("deci") }, "\(report.notes)")
        let file = try GGUFFile(path: f32)
        XCTAssertEqual(file.metadata["general.architecture"], .string("deci"))
        XCTAssertEqual(file.metadata["deci.attention.head_count"]?.intArray, c.heads)
        XCTAssertEqual(file.metadata["deci.attention.head_count_kv"]?.intArray, c.kvHeads)
        XCTAssertEqual(file.metadata["deci.feed_forward_length"]?.intArray, c.intermediateSizes)
        XCTAssertEqual(
            file.metadata["deci.attention.head_count"]?.array?.first?.typeCode, 5, "per-layer arrays are INT32 as gguf-py writes them")
        XCTAssertEqual(file.metadata["deci.attention.key_length"], .uint32(64))
        XCTAssertEqual(file.metadata["deci.block_count"], .uint32(30))
        XCTAssertEqual(file.tensor(named: "blk.3.attn_q.weight")?.dimensions, [576, 384])
        XCTAssertEqual(file.tensor(named: "blk.3.ffn_down.weight")?.dimensions, [c.intermediateSizes[3], 576])

        let reloaded = try GGUFModelLoader.load(path: f32)
        XCTAssertEqual(reloaded.model.config, c)
        XCTAssertEqual(try perplexity(reloaded.model, tokens), expected)

        let q8 = temporaryPath(self, "pruned.q8_0.gguf")
        let quantized = try GGUFExporter.export(
            model: model, sourceMetadata: loaded.metadata, to: q8, options: GGUFExportOptions(type: .q8_0))
        let qfile = try GGUFFile(path: q8)
        XCTAssertEqual(qfile.metadata["general.file_type"], .uint32(7))
        XCTAssertEqual(qfile.tensor(named: "blk.3.attn_norm.weight")?.type, .f32)
        XCTAssertEqual(qfile.tensor(named: "token_embd.weight")?.type, .q8_0)
        XCTAssertEqual(qfile.tensor(named: "blk.3.attn_q.weight")?.type, .q8_0)
        var odd = 0
        for l in 0..<c.layerCount {
            let down = try XCTUnwrap(qfile.tensor(named: "blk.\(l).ffn_down.weight"))
            XCTAssertEqual(down.type, c.intermediateSizes[l] % 32 == 0 ? .q8_0 : .f16, "layer \(l)")
            if c.intermediateSizes[l] % 32 != 0 { odd += 1 }
        }
        XCTAssertEqual(quantized.fallbacks.isEmpty, odd == 0, "\(quantized.fallbacks)")
        if odd > 0 { XCTAssertTrue(quantized.fallbacks[0].hasPrefix("\(odd) tensors: row length"), "\(quantized.fallbacks)") }
        // l2 pruning without recovery leaves a weak model (ppl ~1.5k on these windows), on which Q8_0 moves ppl ~2%;
        // a wrong layout or block would move it by orders of magnitude.
        let ppl8 = try perplexity(try GGUFModelLoader.load(path: q8).model, tokens)
        XCTAssertEqual(ppl8, expected, accuracy: 0.04 * expected)
        XCTAssertNotEqual(ppl8, expected, "Q8_0 should change the weights a little")

        // Exactly the weights of Q8_0 (or F16 for the odd rows) blocks: the same logits as the in-memory model
        // whose matrices went through the same blocks.
        var w = GGUFWriter()
        for p in model.parameters where p.shape.count == 2 {
            try w.addTensor(name: p.name, tensor: p.value, type: p.shape[1] % 32 == 0 ? .q8_0 : .f16)
        }
        let blocks = temporaryPath(self, "blocks.gguf")
        try w.write(to: blocks)
        let decoded = try GGUFFile(path: blocks)
        for p in model.parameters where p.shape.count == 2 {
            p.value = try decoded.dequantize(try XCTUnwrap(decoded.tensor(named: p.name)))
        }
        let ids = Array(tokens[1000..<1064])
        XCTAssertEqual(try logits(try GGUFModelLoader.load(path: q8).model, ids), try logits(model, ids))
    }

    /// Every type of 32-blocks on a tiny model: each weight read back lies within its block's rounding bound
    /// (Q8_0: amax/254, Q4_0: amax/8 at the clamped edge, Q4_1: (max−min)/30, plus the F16 scales' rounding),
    /// norms stay F32, a 4-bit export keeps the output matrix at Q8_0, and the logits stay close.
    func testEveryTypeRoundTripsOnATinyModel() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [96, 96], tied: false)
        let ids: [Int32] = [1, 5, 9, 33, 2, 70, 11, 4]
        let reference = try logits(model, ids)
        let scale = reference.map(abs).max()!
        // Logit error relative to the largest logit: loose (random weights, 2 layers amplify 4-bit noise); the
        // per-weight bounds below are the precise check.
        let tolerance: [GGUFExportType: Float] = [.f32: 0, .f16: 0.002, .q8_0: 0.04, .q4_0: 0.6, .q4_1: 0.6]
        for type in GGUFExporter.types where !type.isKQuant {
            let out = temporaryPath(self, "tiny.\(type).gguf")
            try GGUFExporter.export(model: model, sourceMetadata: md, to: out, options: GGUFExportOptions(type: type))
            let file = try GGUFFile(path: out)
            XCTAssertEqual(file.tensor(named: "blk.0.attn_norm.weight")?.type, .f32)
            XCTAssertEqual(file.tensor(named: "blk.1.ffn_up.weight")?.type, type.baseType)
            let outputType: GGMLType = type == .q4_0 || type == .q4_1 ? .q8_0 : type.baseType
            XCTAssertEqual(file.tensor(named: "output.weight")?.type, outputType)
            let reloaded = try XCTUnwrap(try GGUFModelLoader.load(path: out).model as? DecoderModel)
            XCTAssertEqual(reloaded.layers[1].ffnNorm.value.array, model.layers[1].ffnNorm.value.array)
            for (original, readBack, stored) in [
                (model.layers[1].up, reloaded.layers[1].up, type.baseType), (model.layers[0].q, reloaded.layers[0].q, type.baseType),
                (model.output, reloaded.output, outputType),
            ] {
                let (rows, cols) = (original.shape[0], original.shape[1])
                let a = original.value.array, b = readBack.value.array
                for r in 0..<rows {
                    for block in stride(from: 0, to: cols, by: 32) {
                        let x = Array(a[(r * cols + block)..<(r * cols + block + 32)]),
                            y = Array(b[(r * cols + block)..<(r * cols + block + 32)])
                        let amax = x.map(abs).max()!, lo = x.min()!, hi = x.max()!
                        let bound: Float
                        switch stored {
                        case .f32: bound = 0
                        case .f16: bound = amax * 0x1p-11
                        case .q8_0: bound = amax / 254 + amax * 0x1p-9
                        case .q4_0: bound = amax / 8 + amax * 0x1p-8
                        default: bound = (hi - lo) / 30 + (abs(lo) + (hi - lo)) * 0x1p-9
                        }
                        let worst = zip(x, y).map { abs($0 - $1) }.max()!
                        XCTAssertLessThanOrEqual(worst, bound, "\(type) \(original.name) row \(r) block \(block / 32)")
                    }
                }
            }
            let worst = maxAbsDifference(try logits(reloaded, ids), reference) / scale
            XCTAssertLessThanOrEqual(worst, tolerance[type]!, "\(type) (largest logit \(scale))")
            if type != .f32 { XCTAssertGreaterThan(worst, 0, "\(type) should not be lossless") }
        }
    }

    /// A layer whose attention was removed entirely is written without its attention tensors (as
    /// llama.cpp's deci loader expects) and read back by Topiary.
    func testAttentionFreeLayerRoundTrips() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 0, 2], kvHeads: [2, 0, 1], ffn: [96, 64, 40])
        let out = temporaryPath(self, "attention-free.gguf")
        let report = try GGUFExporter.export(model: model, sourceMetadata: md, to: out, options: GGUFExportOptions(type: .q8_0))
        XCTAssertEqual(report.architecture, "deci")
        XCTAssertTrue(report.fallbacks.contains { $0.contains("row length 40") }, "\(report.fallbacks)")
        let file = try GGUFFile(path: out)
        XCTAssertNil(file.tensor(named: "blk.1.attn_q.weight"))
        XCTAssertNil(file.tensor(named: "blk.1.attn_norm.weight"))
        XCTAssertEqual(file.tensor(named: "blk.2.ffn_down.weight")?.type, .f16)
        let f32 = temporaryPath(self, "attention-free.f32.gguf")
        try GGUFExporter.export(model: model, sourceMetadata: md, to: f32)
        let ids: [Int32] = [3, 1, 4, 1, 5, 9, 2, 6]
        XCTAssertEqual(try logits(try GGUFModelLoader.load(path: f32).model, ids), try logits(model, ids))
    }

    /// An unstructured-sparse model (zeros inside dense matrices) exports dense, says so, and reads back the same.
    func testUnstructuredSparseModelExportsDense() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [64, 64])
        for layer in model.layers {
            for p in [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down] {
                for i in stride(from: 0, to: p.value.count, by: 2) { p.value.pointer[i] = 0 }
            }
        }
        let out = temporaryPath(self, "sparse.gguf")
        let report = try GGUFExporter.export(model: model, sourceMetadata: md, to: out)
        XCTAssertTrue(report.notes.contains { $0.hasPrefix("50.0% of the linear weights are zero") }, "\(report.notes)")
        let ids: [Int32] = [4, 8, 15, 16, 23, 42]
        XCTAssertEqual(try logits(try GGUFModelLoader.load(path: out).model, ids), try logits(model, ids))
    }

    /// Unmerged LoRA adapters are folded into the exported weights; the model itself is unchanged.
    func testAdaptersAreMergedIntoTheExport() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [64, 64])
        var rng = SplitMix64(seed: 11)
        for p in [model.layers[0].q, model.layers[1].down] {
            let a = LoRAAdapter(target: p.name, outFeatures: p.shape[0], inFeatures: p.shape[1], rank: 4, alpha: 8, dropout: 0, rng: &rng)
            for i in 0..<a.b.value.count { a.b.value.pointer[i] = rng.nextFloat(-0.2, 0.2) }
            model.adapters[p.name] = a
        }
        let before = model.layers[0].q.value.array
        let ids: [Int32] = [7, 8, 9, 10, 11, 12]
        let adapted = try logits(model, ids)
        let out = temporaryPath(self, "adapted.gguf")
        let report = try GGUFExporter.export(model: model, sourceMetadata: md, to: out)
        XCTAssertEqual(report.mergedAdapters, 2)
        XCTAssertEqual(model.layers[0].q.value.array, before, "the exported model's own weights were changed")
        XCTAssertLessThanOrEqual(maxAbsDifference(try logits(try GGUFModelLoader.load(path: out).model, ids), adapted), 1e-4)
    }

    /// A checkpoint keeps tokenizer metadata as JSON (integers widened to Int64); the export writes the
    /// GGUF types llama.cpp checks (UINT32 token ids, an INT32 token_type array), as in the source file.
    func testTokenizerMetadataFromACheckpointKeepsGGUFTypes() throws {
        let source = try GGUFFile(path: try smolLM2Path())
        let dir = temporaryPath(self, "ckpt")
        try Checkpoint.save(model: try tinyModel(heads: [2], kvHeads: [1], ffn: [32]), tokenizerMetadata: source.metadata, to: dir)
        let loaded = try ModelLoader.load(path: dir)
        XCTAssertEqual(loaded.metadata["tokenizer.ggml.bos_token_id"], .int64(1), "the checkpoint widened the id (what this test is about)")
        let out = temporaryPath(self, "from-ckpt.gguf")
        try GGUFExporter.export(model: loaded.model, sourceMetadata: loaded.metadata, to: out)
        let file = try GGUFFile(path: out)
        for key in source.metadataKeys where key.hasPrefix("tokenizer.") {
            XCTAssertEqual(file.metadata[key], source.metadata[key], key)
        }
        XCTAssertEqual(file.metadata["general.name"], .string("Topiary export"))
    }

    func testShapesLlamaCppCannotExpressAndBadOptionsAreRefused() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let out = temporaryPath(self, "refused.gguf")
        func refuse(
            _ model: DecoderModel, _ options: GGUFExportOptions = GGUFExportOptions(), metadata: [String: GGUFValue]? = nil,
            mentions: String, line: UInt = #line
        ) {
            XCTAssertThrowsError(
                try GGUFExporter.export(model: model, sourceMetadata: metadata ?? md, to: out, options: options), line: line
            ) {
                XCTAssertTrue($0.localizedDescription.contains(mentions), "\($0.localizedDescription)", line: line)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused export left a file", line: line)
        }
        let differing = try tinyModel(heads: [4, 2], kvHeads: [2, 1], ffn: [64, 32])
        refuse(differing, GGUFExportOptions(architecture: try GGUFArchitecture(parsing: "llama")), mentions: "export with --arch deci")
        refuse(
            try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [64, 0]), mentions: "layer 1 keeps 4 attention heads but no FFN channels")
        refuse(try tinyModel(heads: [0, 4], kvHeads: [0, 2], ffn: [64, 64]), mentions: "layer 0 has no attention heads")
        refuse(differing, metadata: md.filter { !$0.key.hasPrefix("tokenizer.") }, mentions: "no tokenizer metadata")

        XCTAssertThrowsError(try GGUFExporter.parseType("q3_k")) {
            XCTAssertEqual(
                $0.localizedDescription,
                "--type q3_k: unknown tensor type (expected one of f32, f16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, q4_k_m)")
        }
        XCTAssertEqual(try GGUFExporter.parseType("Q8_0"), .q8_0)
        XCTAssertEqual(try GGUFExporter.parseType("Q4_K_M"), .q4_k_m)
        XCTAssertThrowsError(try GGUFArchitecture(parsing: "mistral")) { XCTAssertTrue($0.localizedDescription.contains("--arch mistral")) }
        // A uniform model may be written as either architecture.
        let uniform = try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [64, 64])
        XCTAssertEqual(try GGUFExporter.resolveArchitecture(uniform.config, .auto), "llama")
        XCTAssertEqual(try GGUFExporter.resolveArchitecture(uniform.config, try GGUFArchitecture(parsing: "deci")), "deci")
        XCTAssertEqual(try GGUFExporter.resolveArchitecture(differing.config, .auto), "deci")
    }
}
