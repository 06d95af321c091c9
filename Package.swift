// swift-tools-version:6.0
import PackageDescription

// F16C turns every Float16 conversion into one instruction instead of a library call
// (../shared/PLATFORM.md: 230 ms -> 41 ms for 64M values).
#if arch(x86_64)
let fastMath: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let fastMath: [SwiftSetting] = []
#endif

let package = Package(
    name: "kvstore",
    products: [
        .executable(name: "kvstore", targets: ["kvstore"]),
        .library(name: "LightKV", targets: ["LightKV"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CLinux"),
        .target(name: "LightKV", swiftSettings: fastMath),
        .target(
            name: "Store",
            dependencies: ["LightKV", "CZstd", "CLZ4", "CSQLite", "CCrypto", "CXXHash", "CLinux"],
            swiftSettings: fastMath),
        .target(
            name: "Pipeline",
            dependencies: ["Store", "LightKV", "CLinux", .product(name: "Logging", package: "swift-log")],
            swiftSettings: fastMath),
        .executableTarget(
            name: "kvstore",
            dependencies: ["Pipeline", "Store", "LightKV", "CLinux",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: fastMath),
        .testTarget(name: "LightKVTests", dependencies: ["LightKV"], swiftSettings: fastMath),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Store", "LightKV"], swiftSettings: fastMath),
        .testTarget(name: "IntegrationTests", dependencies: ["LightKV", "kvstore"], swiftSettings: fastMath),
    ],
    swiftLanguageModes: [.v5]
)
