import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryGGUF

/// `topiary header`: what a GGUF file's header declares, readable from its first bytes alone.
struct Header: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read only a GGUF file's header: architecture, tensor count, parameters and the bytes the complete file has.",
        discussion: """
            Works on the first part of a split download (the header and tensor table come first), so a set-up script \
            can tell how many parts to fetch: --json prints required_bytes, file_bytes, complete, tensors, parameters.
            """)

    @Argument(help: ArgumentHelp("A GGUF file, complete or only its beginning.", valueName: "path")) var path: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try reportingErrors {
            let file = try GGUFFile(path: path, headerOnly: true)
            var types: [String: Int] = [:]
            for t in file.tensors { types["\(t.type)", default: 0] += 1 }
            let parameters = file.tensors.reduce(0) { $0 + $1.elementCount }
            let info: [String: Any] = [
                "path": path, "architecture": file.architecture ?? "", "tensors": file.tensors.count, "parameters": parameters,
                "required_bytes": file.requiredSize, "file_bytes": file.fileSize, "complete": file.requiredSize <= file.fileSize,
                "tensor_types": types,
            ]
            if json {
                print(
                    String(
                        decoding: try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
                return
            }
            print(
                "\(path): \(file.architecture ?? "?"), \(file.tensors.count) tensors, \(parameters.formatted()) parameters "
                    + "(\(types.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")))")
            print(
                "the complete file has \(file.requiredSize.formatted()) bytes; this one has \(file.fileSize.formatted())"
                    + (file.requiredSize <= file.fileSize
                        ? " (complete)" : " (\((file.requiredSize - file.fileSize).formatted()) bytes missing)"))
        }
    }
}

/// `topiary synthesize`: a random-weight model with another model's shapes, for memory and speed measurements.
struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model with the shapes (and tokenizer) of a GGUF header and random weights, to measure memory and time.",
        discussion: """
            Reads only the header of --like (the first part of a split download is enough) and writes the same tensors \
            with uniform random weights: 4–5-bit types as Q4_0 (the same 4.5 bits per weight as Q4_K), 6–8-bit types as \
            Q8_0, norms 1. Its perplexity means nothing; its memory and time in `topiary perplexity/prune/sparsify \
            --stream-layers` are those of the real model within the Q4_0/Q4_K and Q8_0/Q6_K difference.

            Example: topiary synthesize --like part_0000.gguf --out checkpoints/models/qwen2-7b-shaped.gguf
            """)

    @Option(help: ArgumentHelp("GGUF file (or its first part) whose shapes to copy.", valueName: "path")) var like: String
    @Option(help: ArgumentHelp("Output GGUF path.", valueName: "path")) var out: String
    @Option(help: "Seed of the random weights.") var seed: UInt64 = 0
    @Flag(help: "Replace --out if it exists.") var force = false

    func run() throws {
        try reportingErrors {
            if FileManager.default.fileExists(atPath: out) && !force { throw CLIError("\(out) exists; pass --force to replace it") }
            try OutputLocation.checkWritable(out, as: .file)
            let header = try GGUFFile(path: like, headerOnly: true)
            let start = Date()
            let bytes = try SyntheticModel.write(like: header, to: out, seed: seed)
            print(
                String(
                    format: "wrote %@ (%@ bytes, %d tensors) in %.0f s", out, bytes.formatted(), header.tensors.count,
                    Date().timeIntervalSince(start)))
        }
    }
}
