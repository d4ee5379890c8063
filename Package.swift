// swift-tools-version: 6.0
// ImageFactory: an image factory for Azure DevTest Labs and Azure Compute Gallery.
//
// Layers depend one way: FactoryModel <- FactoryEngine <- backends (FactoryGit, LocalCloud, AzureBackend) <- LocalServe <- ImageFactoryCLI <- imagefactory.
// ARCHITECTURE.md says what each target may import and how a run flows.
import PackageDescription

let package = Package(
    name: "ImageFactory",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "imagefactory", targets: ["imagefactory"]),
        .library(name: "FactoryModel", targets: ["FactoryModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // `local serve`: HTTP/1.1 straight on SwiftNIO (no web framework: a much lighter build), TLS through
        // swift-nio-ssl, and the self-signed certificate made with swift-certificates.
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.3.0"),
        // The Azure backend's one HTTP client (ARM, Blob and token endpoints).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.24.0"),
        // Tests only: parse the pipeline examples.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // libgit2 from Debian's libgit2-dev: read configuration straight from git objects.
        .systemLibrary(
            name: "CGit2",
            pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"])]
        ),
        // Pure data and rules: configuration, diagnostics, image paths, naming, records, plans,
        // and the backend protocol every cloud implements. No effects, no printing.
        .target(
            name: "FactoryModel",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // Reads a factory configuration from a git commit (or the working tree) through libgit2.
        .target(
            name: "FactoryGit",
            dependencies: ["CGit2", "FactoryModel"]
        ),
        // The planner and the executor: the factory's stages, on any backend.
        .target(
            name: "FactoryEngine",
            dependencies: [
                "FactoryModel",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What a run leaves for people and CI: the versioned JSON run report, JUnit XML, the Markdown
        // summary and the HTML image catalogue. Pure renderers over the engine's results.
        .target(
            name: "FactoryReports",
            dependencies: ["FactoryModel", "FactoryEngine"]
        ),
        // The embedded local cloud: SQLite records (GRDB) and sparse VHD files in a state directory.
        .target(
            name: "LocalCloud",
            dependencies: [
                "FactoryModel",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The local cloud's Azure face: ARM, token and Blob REST endpoints over the embedded local cloud,
        // so Azure's own SDKs and tools (and our Azure backend's tests) can run against it on loopback.
        .target(
            name: "LocalServe",
            dependencies: [
                "FactoryModel", "LocalCloud",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                // RSA (RS256 / PS256) for client certificate assertions; swift-certificates already builds it.
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // The Azure backend: ARM and Blob REST through one HTTP client that owns authentication (every
        // CI login azure-identity knows), retries, the per-subscription adaptive throttle and errors.
        .target(
            name: "AzureBackend",
            dependencies: [
                "FactoryModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The command line as a library: commands, option groups, renderers and the local cloud's
        // bootstrap. The only target that imports ArgumentParser; tests run its commands in-process.
        .target(
            name: "ImageFactoryCLI",
            dependencies: [
                "FactoryModel", "FactoryGit", "FactoryEngine", "FactoryReports", "LocalCloud", "LocalServe", "AzureBackend",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The executable: one line that hands the process to ImageFactoryCLI.
        .executableTarget(name: "imagefactory", dependencies: ["ImageFactoryCLI"]),
        // Benchmarks that print figures (never timed unit tests).
        .executableTarget(
            name: "imagefactory-bench",
            dependencies: ["FactoryModel", "FactoryGit", "FactoryEngine", "LocalCloud", "LocalServe", "AzureBackend"]
        ),
        // What every test target shares: the git repository fixture and the operations-log reader.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "FactoryModelTests", dependencies: ["FactoryModel"]),
        .testTarget(name: "FactoryGitTests", dependencies: ["FactoryGit", "FactoryModel", "TestSupport"]),
        .testTarget(name: "LocalCloudTests", dependencies: ["LocalCloud", "FactoryModel", "LocalServe", "AzureBackend"]),
        .testTarget(name: "AzureBackendTests", dependencies: [
            "AzureBackend", "LocalServe", "LocalCloud", "FactoryModel",
            // The client-certificate tests make a certificate of their own.
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ], exclude: ["Specs"]),
        .testTarget(name: "LocalServeTests", dependencies: [
            "LocalServe", "LocalCloud", "FactoryModel",
            // Tests sign client assertions with certificates of their own, as a client would.
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        .testTarget(name: "FactoryEngineTests", dependencies: ["FactoryEngine", "FactoryModel", "LocalCloud", "TestSupport"]),
        .testTarget(name: "FactoryReportsTests", dependencies: ["FactoryReports", "FactoryEngine", "FactoryModel"], exclude: ["Golden"]),
        .testTarget(name: "EndToEndTests", dependencies: ["FactoryModel", "FactoryEngine", "ImageFactoryCLI", "TestSupport", .product(name: "Yams", package: "Yams")]),
    ],
    swiftLanguageModes: [.v6]
)
