// swift-tools-version:6.0
// libFuzzer harness for Topiary's parsers of outside input. Not part of the normal build; see `make fuzz`.
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   TOPIARY_FUZZ_TARGET=gguf .build/debug/topiary-fuzz CORPUS_DIR -max_total_time=600
import PackageDescription

let package = Package(
    name: "TopiaryFuzz",
    dependencies: [.package(name: "Topiary", path: "..")],
    targets: [
        .executableTarget(name: "topiary-fuzz", dependencies: [.product(name: "TopiaryFuzzEntries", package: "Topiary")]),
    ]
)
