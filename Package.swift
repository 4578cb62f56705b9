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
        .executable(name: "lathe", targets: ["lathe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // C kernels: GEMM, elementwise, reductions, thread pool; chosen at run time by CPU features.
        .target(name: "CLatheKernels"),
        .target(name: "LatheTensor", dependencies: ["CLatheKernels"]),
        .target(name: "LatheNN", dependencies: ["LatheTensor", "LatheIO", "CLatheKernels"]),
        .target(name: "LatheData", dependencies: ["LatheTensor", "CLatheKernels"], resources: [.copy("Resources")]),
        .target(name: "LatheIO", dependencies: ["LatheTensor"]),
        .target(name: "LatheCompress", dependencies: ["LatheNN", "LatheIO", "CLatheKernels"]),
        .target(name: "LatheTrain", dependencies: ["LatheNN", "LatheData", "LatheIO", .product(name: "Yams", package: "Yams")]),
        .target(name: "Lathe", dependencies: ["LatheTensor", "LatheNN", "LatheData", "LatheIO", "LatheTrain", "LatheCompress"]),
        .executableTarget(
            name: "lathe",
            dependencies: ["Lathe", "CLatheKernels", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(name: "_LatheTestSupport", dependencies: ["LatheTensor"]),
        .testTarget(
            name: "LatheTensorTests",
            dependencies: ["LatheTensor", "CLatheKernels", "_LatheTestSupport"]
        ),
        .testTarget(name: "LatheNNTests", dependencies: ["Lathe", "_LatheTestSupport"]),
        .testTarget(name: "LatheDataTests", dependencies: ["LatheData", "_LatheTestSupport"]),
        .testTarget(name: "LatheIOTests", dependencies: ["LatheIO", "_LatheTestSupport"]),
        .testTarget(name: "LatheTrainTests", dependencies: ["Lathe", "_LatheTestSupport"]),
        .testTarget(name: "LatheCompressTests", dependencies: ["Lathe", "CLatheKernels", "_LatheTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
