// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Lathe",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Lathe", targets: ["Lathe"]),
        .library(name: "LatheTensor", targets: ["LatheTensor"]),
        .library(name: "LatheNN", targets: ["LatheNN"]),
        .library(name: "LatheData", targets: ["LatheData"]),
        .library(name: "LatheIO", targets: ["LatheIO"]),
        .library(name: "LatheTrain", targets: ["LatheTrain"]),
        .library(name: "LatheCompress", targets: ["LatheCompress"]),
        .library(name: "LatheBench", targets: ["LatheBench"]),
        .library(name: "LatheText", targets: ["LatheText"]),
        .library(name: "LatheLM", targets: ["LatheLM"]),
        .library(name: "LatheMerge", targets: ["LatheMerge"]),
        .executable(name: "lathe", targets: ["lathe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // C kernels: GEMM, elementwise, reductions, thread pool; chosen at run time by CPU features.
        .target(name: "CLatheKernels"),
        // Machine limits for the benchmarks (FMA peak, STREAM bandwidth); not part of the kernels.
        .target(name: "CLatheBench", dependencies: ["CLatheKernels"]),
        .target(name: "LatheTensor", dependencies: ["CLatheKernels"]),
        .target(name: "LatheNN", dependencies: ["LatheTensor", "LatheIO", "CLatheKernels"]),
        .target(name: "LatheData", dependencies: ["LatheTensor", "LatheText", "CLatheKernels"], resources: [.copy("Resources")]),
        .target(name: "LatheIO", dependencies: ["LatheTensor", "CLatheKernels"]),
        // Tokenizers: byte-level BPE, SentencePiece BPE, WordPiece, Unigram; tokenizer.json and GGUF vocabularies.
        .target(name: "LatheText", dependencies: ["LatheIO"]),
        .target(name: "LatheCompress", dependencies: ["LatheNN", "LatheIO", "CLatheKernels"]),
        // Recipes, the trainer, and the pipelines built on them (compress: stages, variant reports).
        .target(name: "LatheTrain", dependencies: ["LatheNN", "LatheData", "LatheIO", "LatheCompress", "LatheLM", .product(name: "Yams", package: "Yams")]),
        // Pretrained language models: configs, decoders, key/value caches, generation.
        .target(name: "LatheLM", dependencies: ["LatheNN", "LatheIO", "LatheText", "LatheTensor", "LatheCompress", "CLatheKernels"]),
        // Model merging with mergekit's YAML and math: plan, per-tensor methods, streaming writer.
        .target(name: "LatheMerge", dependencies: ["LatheLM", "LatheNN", "LatheIO", "LatheTensor", .product(name: "Yams", package: "Yams")]),
        // Benchmark models, workloads and machine measurements (`lathe bench`).
        .target(name: "LatheBench", dependencies: ["LatheTrain", "LatheCompress", "LatheData", "LatheNN", "LatheIO", "LatheTensor", "LatheLM", "CLatheBench"]),
        .target(name: "Lathe", dependencies: ["LatheTensor", "LatheNN", "LatheData", "LatheIO", "LatheText", "LatheTrain", "LatheCompress", "LatheLM"]),
        .executableTarget(
            name: "lathe",
            dependencies: ["Lathe", "LatheBench", "LatheMerge", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(name: "_LatheTestSupport", dependencies: ["LatheTensor", "CLatheKernels"]),
        .testTarget(
            name: "LatheTensorTests",
            dependencies: ["LatheTensor", "CLatheKernels", "_LatheTestSupport"]
        ),
        .testTarget(name: "LatheNNTests", dependencies: ["Lathe", "_LatheTestSupport"]),
        .testTarget(name: "LatheDataTests", dependencies: ["LatheData", "_LatheTestSupport"]),
        .testTarget(name: "LatheIOTests", dependencies: ["LatheIO", "_LatheTestSupport"]),
        .testTarget(name: "LatheTextTests", dependencies: ["LatheText", "_LatheTestSupport"]),
        .testTarget(name: "LatheTrainTests", dependencies: ["Lathe", "_LatheTestSupport"]),
        .testTarget(name: "LatheLMTests", dependencies: ["LatheLM", "Lathe", "_LatheTestSupport"]),
        .testTarget(name: "LatheBenchTests", dependencies: ["LatheBench", "Lathe", "_LatheTestSupport"]),
        // End-to-end tests of the `lathe` executable (argument parsing, printing, exit status).
        .testTarget(name: "LatheCLITests", dependencies: ["Lathe", "_LatheTestSupport"]),
        .testTarget(name: "LatheMergeTests", dependencies: ["LatheMerge", "LatheLM", "_LatheTestSupport"]),
        .testTarget(name: "LatheCompressTests", dependencies: ["Lathe", "CLatheKernels", "_LatheTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
