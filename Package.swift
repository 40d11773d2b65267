// swift-tools-version:6.0
// Topiary: structural pruning, LoRA recovery and evaluation of LLMs on a plain CPU.
//
// Layers (a lower layer never imports a higher one):
//   CBLAS/CLAPACKE/CHDF5/CTopiaryKernels (C)  →  TopiaryCore (tensors, BLAS, kernels, I/O helpers)
//   →  TopiaryAutodiff (tape)  →  TopiaryGGUF, TopiaryTokenizers (file formats)  →  TopiaryModels (architectures)
//   →  TopiaryEval (evaluation), TopiaryGraph (dependency graph)  →  TopiaryPrune, TopiaryRecover (LoRA), TopiaryExport (GGUF / HF export)
//   →  TopiaryPipeline (recipes, runs, reports)  →  TopiaryCLI (`topiary`)
import PackageDescription

// Kernels may fuse multiply-adds except where a file's `#pragma clang fp contract(off)` says not to (kquant.c keeps
// ggml's reference arithmetic, so that its blocks are llama.cpp's byte for byte on every machine).
#if arch(x86_64)
// Kernels are built for the machine that builds them (Topiary is built from source where it runs).
// Set TOPIARY_PORTABLE=1 to build a binary that runs on any x86-64 CPU with AVX2.
import Foundation
let portable = ProcessInfo.processInfo.environment["TOPIARY_PORTABLE"] != nil
let kernelFlags: [String] =
    ["-O3", "-ffp-contract=fast-honor-pragmas", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
    + (portable ? ["-mavx2", "-mfma", "-mf16c"] : ["-march=native"])
#else
let kernelFlags: [String] = [
    "-O3", "-ffp-contract=fast-honor-pragmas", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
]
#endif

let package = Package(
    name: "Topiary",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "topiary", targets: ["TopiaryCLI"]),
        .library(
            name: "Topiary",
            targets: [
                "TopiaryCore", "TopiaryAutodiff", "TopiaryGGUF", "TopiaryTokenizers", "TopiaryModels", "TopiaryEval",
                "TopiaryGraph", "TopiaryPrune", "TopiaryRecover", "TopiaryPipeline", "TopiaryExport",
            ]),
        // "Parse these bytes" entry points per input format, for the fuzzers in Fuzz/ and the replay tests.
        .library(name: "TopiaryFuzzEntries", targets: ["TopiaryFuzzEntries"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CLAPACKE", pkgConfig: "lapacke", providers: [.apt(["liblapacke-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .target(name: "CTopiaryKernels", cSettings: [.unsafeFlags(kernelFlags)]),

        .target(name: "TopiaryCore", dependencies: ["CBLAS", "CLAPACKE", "CTopiaryKernels"]),
        .target(name: "TopiaryAutodiff", dependencies: ["TopiaryCore"]),
        .target(name: "TopiaryGGUF", dependencies: ["TopiaryCore", "CTopiaryKernels"]),
        .target(name: "TopiaryTokenizers", dependencies: []),
        .target(name: "TopiaryModels", dependencies: ["TopiaryCore", "TopiaryAutodiff", "TopiaryGGUF", "TopiaryTokenizers", "CHDF5"]),
        .target(name: "TopiaryEval", dependencies: ["TopiaryCore", "TopiaryModels", "TopiaryTokenizers"]),
        .target(name: "TopiaryGraph", dependencies: ["TopiaryCore", "TopiaryAutodiff", "TopiaryModels"]),
        .target(name: "TopiaryRecover", dependencies: ["TopiaryCore", "CTopiaryKernels", "TopiaryAutodiff", "TopiaryModels"]),
        .target(
            name: "TopiaryPrune",
            dependencies: ["TopiaryCore", "CTopiaryKernels", "CLAPACKE", "TopiaryAutodiff", "TopiaryModels", "TopiaryGraph"]),
        .target(
            name: "TopiaryExport", dependencies: ["TopiaryCore", "TopiaryAutodiff", "TopiaryGGUF", "TopiaryTokenizers", "TopiaryModels"]),
        .target(
            name: "TopiaryPipeline",
            dependencies: [
                "TopiaryCore", "TopiaryAutodiff", "TopiaryModels", "TopiaryEval", "TopiaryGraph", "TopiaryPrune", "TopiaryRecover",
                "TopiaryTokenizers", .product(name: "Yams", package: "Yams"),
            ]),
        .target(
            name: "TopiaryFuzzEntries",
            dependencies: ["TopiaryCore", "TopiaryGGUF", "TopiaryTokenizers", "TopiaryModels", "TopiaryEval", "TopiaryPipeline"]),
        .executableTarget(
            name: "TopiaryCLI",
            dependencies: [
                "TopiaryCore", "TopiaryGGUF", "TopiaryTokenizers", "TopiaryModels", "TopiaryEval", "TopiaryGraph", "TopiaryPrune",
                "TopiaryRecover",
                "TopiaryPipeline", "TopiaryExport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "TopiaryAutodiffTests", dependencies: ["TopiaryCore", "TopiaryAutodiff", "TopiaryModels"]),
        .testTarget(name: "TopiaryGGUFTests", dependencies: ["TopiaryGGUF"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TopiaryTokenizersTests", dependencies: ["TopiaryTokenizers"]),
        .testTarget(
            name: "TopiaryModelsTests", dependencies: ["TopiaryModels", "TopiaryEval", "TopiaryGraph", "TopiaryPrune"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "TopiaryRecoverTests", dependencies: ["TopiaryModels", "TopiaryRecover", "TopiaryEval"]),
        .testTarget(
            name: "TopiaryEvalTests", dependencies: ["TopiaryEval", "TopiaryTokenizers", "TopiaryModels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TopiaryCLITests", dependencies: ["TopiaryCLI", "TopiaryPipeline"]),
        .testTarget(name: "TopiaryPipelineTests", dependencies: ["TopiaryPipeline", "TopiaryModels", "TopiaryCore"]),
        .testTarget(name: "TopiaryPruneTests", dependencies: ["TopiaryModels", "TopiaryGraph", "TopiaryPrune", "TopiaryEval"]),
        .testTarget(
            name: "TopiaryExportTests",
            dependencies: [
                "TopiaryExport", "TopiaryModels", "TopiaryGGUF", "TopiaryTokenizers", "TopiaryEval", "TopiaryGraph", "TopiaryPrune",
            ],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "TopiaryReliabilityTests",
            dependencies: ["TopiaryFuzzEntries", "TopiaryCore", "TopiaryGGUF", "TopiaryModels", "TopiaryPipeline", "TopiaryRecover"],
            resources: [.copy("Fixtures")]),
    ]
)
