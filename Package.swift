// swift-tools-version: 5.9
//
// FourierFT for Swift: the uniffi bindings (bindings/swift/FourierFT.swift, generated and
// committed) over the Rust library, which ios/build-xcframework.sh builds into
// ios/build/FourierFTFFI.xcframework (not committed: run the script before resolving this
// package). See ios/README.md.

import PackageDescription

let package = Package(
    name: "FourierFT",
    platforms: [
        .iOS(.v15),
        .macOS(.v12),
    ],
    products: [
        .library(name: "FourierFT", targets: ["FourierFT"]),
    ],
    targets: [
        // The static library libfourierft_ffi.a per platform, with the C module FourierFTFFI.
        .binaryTarget(
            name: "FourierFTFFI",
            path: "ios/build/FourierFTFFI.xcframework"
        ),
        // The Swift API (Engine, EngineConfig, GenerateOptions, TokenListener, FourierftError).
        .target(
            name: "FourierFT",
            dependencies: ["FourierFTFFI"],
            path: "bindings/swift",
            exclude: ["FourierFTFFI.h", "FourierFTFFI.modulemap"],
            sources: ["FourierFT.swift"],
            linkerSettings: [
                // What the Rust static library needs from the system (wgpu's Metal backend,
                // std); a static library does not carry these itself.
                .linkedFramework("Foundation"),
                .linkedFramework("Metal"),
                .linkedFramework("QuartzCore"),
                .linkedFramework("CoreGraphics"),
                .linkedFramework("UIKit", .when(platforms: [.iOS])),
                .linkedFramework("AppKit", .when(platforms: [.macOS])),
                .linkedLibrary("iconv"),
            ]
        ),
        // Runs the demo model from assets/demo (found through #filePath): `swift test` on a Mac,
        // or on a simulator through Xcode.
        .testTarget(
            name: "FourierFTTests",
            dependencies: ["FourierFT"],
            path: "ios/Tests/FourierFTTests"
        ),
    ]
)
