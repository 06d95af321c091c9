// swift-tools-version:6.1
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
        // `kvstore serve` only (the Server target). No default traits: swift-configuration
        // support is not used, and leaving it out keeps it out of the build.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The server's connection handlers (already in the build through Hummingbird).
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        // `kvstore serve --tls-cert` (already in the build through async-http-client and HummingbirdTLS).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        // S3 blob stores only (the SharedStore target).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // PostgreSQL indexes only (the SharedStore target).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CLinux"),
        // Kernels chosen at run time for instructions beyond the Swift targets' baseline.
        .target(name: "CKernels"),
        // Read-only file mappings that survive their file shrinking (SIGBUS) under a reader.
        .target(name: "CMapGuard"),
        // Extended attributes of open files (the daemon counts crashed ingests on the input).
        .target(name: "CFileAttributes"),
        .target(name: "LightKV", dependencies: ["CKernels"], swiftSettings: fastMath),
        .target(
            name: "Store",
            dependencies: ["LightKV", "CZstd", "CLZ4", "CSQLite", "CCrypto", "CXXHash", "CLinux", "CMapGuard"],
            swiftSettings: fastMath),
        .target(
            name: "Pipeline",
            dependencies: ["Store", "LightKV", "CLinux", "CFileAttributes", .product(name: "Logging", package: "swift-log")],
            swiftSettings: fastMath),
        .target(
            name: "SharedStore",
            dependencies: ["Store", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: fastMath),
        .target(
            name: "Server",
            dependencies: ["Pipeline", "Store", "LightKV",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HummingbirdCore", package: "hummingbird"),
                           // `--tls-cert`: swift-nio-ssl is in the build already (async-http-client).
                           .product(name: "HummingbirdTLS", package: "hummingbird"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "Logging", package: "swift-log")],
            resources: [.embedInCode("openapi.yaml")],
            swiftSettings: fastMath),
        .executableTarget(
            name: "kvstore",
            dependencies: ["Pipeline", "Store", "LightKV", "Server", "SharedStore", "CLinux",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: fastMath),
        .testTarget(name: "LightKVTests", dependencies: ["LightKV", "CKernels"], swiftSettings: fastMath),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Store", "LightKV"], swiftSettings: fastMath),
        .testTarget(name: "SharedStoreTests", dependencies: ["SharedStore", "Store"], swiftSettings: fastMath),
        .testTarget(name: "IntegrationTests", dependencies: ["LightKV", "Store", "kvstore"], swiftSettings: fastMath),
    ],
    swiftLanguageModes: [.v5]
)
