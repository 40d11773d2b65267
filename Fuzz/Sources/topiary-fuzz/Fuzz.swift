import Foundation
import TopiaryFuzzEntries

// One libFuzzer binary for every target: TOPIARY_FUZZ_TARGET names it (gguf, safetensors, config, tokenizer, hdf5,
// recipe, tasks). `topiary-fuzz --make-seeds DIR [REPO] [DATA]` writes the seed corpora instead of fuzzing.
//
// SwiftPM renames an executable's `main` to `<module>_main` and links `main` to it, so libFuzzer's own `main`
// is not used: this one calls libFuzzer's `LLVMFuzzerRunDriver`.

nonisolated(unsafe) var selected: FuzzTarget = .gguf

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    selected.run(Data(bytes: bytes, count: count))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("topiary_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    let args = CommandLine.arguments
    if args.count >= 3, args[1] == "--make-seeds" {
        do {
            try FuzzSeeds.write(to: args[2], repository: args.count > 3 ? args[3] : nil, data: args.count > 4 ? args[4] : nil)
            return 0
        } catch {
            FileHandle.standardError.write(Data("topiary-fuzz: \(error.localizedDescription)\n".utf8))
            return 1
        }
    }
    let name = ProcessInfo.processInfo.environment["TOPIARY_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("topiary-fuzz: set TOPIARY_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))\n".utf8))
        return 2
    }
    selected = target
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzzOne)
}
