#!/usr/bin/env bash
# Builds ios/build/FourierFTFFI.xcframework: the Rust library libfourierft_ffi.a (crate
# bindings/, package fourierft-ffi) for iOS devices, the iOS simulator (arm64 + x86_64 in one
# lipo'd library) and macOS (arm64 + x86_64, so `swift test` runs on a Mac), with the uniffi C
# header and a module.modulemap declaring the Clang module FourierFTFFI. The root Package.swift
# uses it as the binary target FourierFTFFI; the Swift side (bindings/swift/FourierFT.swift) is
# generated and committed by the bindings' own script.
#
# Usage: ios/build-xcframework.sh [--no-macos]
#   --no-macos   skip the macOS slice (faster; then run the tests on a simulator, not `swift test`)
#
# Needs macOS with Xcode (xcodebuild, lipo) and rustup. Output (git-ignored): ios/build/.
set -euo pipefail

with_macos=1
for arg in "$@"; do
    case "$arg" in
        --no-macos) with_macos=0 ;;
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "$0")/.."
repo=$(pwd)

for tool in cargo rustup xcodebuild lipo; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found (this script needs macOS with Xcode and rustup)" >&2
        exit 1
    fi
done

crate=fourierft-ffi
lib=libfourierft_ffi.a
ffi_module=FourierFTFFI
build="$repo/ios/build"
out="$build/$ffi_module.xcframework"
target_dir=${CARGO_TARGET_DIR:-$repo/target}

# Keep in step with the platforms in Package.swift.
export IPHONEOS_DEPLOYMENT_TARGET=15.0
export MACOSX_DEPLOYMENT_TARGET=12.0

ios_targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
macos_targets=(aarch64-apple-darwin x86_64-apple-darwin)
targets=("${ios_targets[@]}")
if [ "$with_macos" = 1 ]; then
    targets+=("${macos_targets[@]}")
fi

echo "==> rustup targets: ${targets[*]}"
rustup target add "${targets[@]}"

for t in "${targets[@]}"; do
    echo "==> cargo rustc --release --lib -p $crate --target $t --crate-type staticlib"
    cargo rustc --release --lib -p "$crate" --target "$t" --crate-type staticlib
done

rm -rf "${build:?}/lib" "${build:?}/headers" "${build:?}/bindgen" "$out"
mkdir -p "$build/lib/ios" "$build/lib/ios-simulator" "$build/lib/macos" "$build/headers" "$build/bindgen"

cp "$target_dir/aarch64-apple-ios/release/$lib" "$build/lib/ios/$lib"
echo "==> lipo: simulator arm64 + x86_64"
lipo -create \
    "$target_dir/aarch64-apple-ios-sim/release/$lib" \
    "$target_dir/x86_64-apple-ios/release/$lib" \
    -output "$build/lib/ios-simulator/$lib"
if [ "$with_macos" = 1 ]; then
    echo "==> lipo: macOS arm64 + x86_64"
    lipo -create \
        "$target_dir/aarch64-apple-darwin/release/$lib" \
        "$target_dir/x86_64-apple-darwin/release/$lib" \
        -output "$build/lib/macos/$lib"
fi

# The C header and module map, read from the library itself (uniffi library mode; the names
# come from bindings/uniffi.toml). Preferred: a `uniffi-bindgen-swift` binary in the bindings
# crate (fn main() { uniffi::uniffi_bindgen_swift() }), which writes exactly these two files;
# otherwise the crate's `uniffi-bindgen` (uniffi_bindgen_main), whose Swift output is renamed.
device_lib="$build/lib/ios/$lib"
if grep -q '^name = "uniffi-bindgen-swift"' "$repo/bindings/Cargo.toml"; then
    echo "==> uniffi-bindgen-swift: $ffi_module.h + module.modulemap"
    cargo run --quiet -p "$crate" --features cli --bin uniffi-bindgen-swift -- \
        --headers --modulemap \
        --module-name "$ffi_module" --modulemap-filename module.modulemap \
        "$device_lib" "$build/headers"
else
    echo "==> uniffi-bindgen generate --language swift: $ffi_module.h + module.modulemap"
    cargo run --quiet -p "$crate" --features cli --bin uniffi-bindgen -- \
        generate --library "$device_lib" --language swift --no-format --out-dir "$build/bindgen"
    cp "$build/bindgen/$ffi_module.h" "$build/headers/$ffi_module.h"
    cp "$build/bindgen/$ffi_module.modulemap" "$build/headers/module.modulemap"
fi

# The committed Swift bindings call exactly the functions this header declares (and check
# their checksums at run time): refuse to package a library they do not match.
if ! cmp -s "$build/headers/$ffi_module.h" "$repo/bindings/swift/$ffi_module.h"; then
    echo "error: bindings/swift/$ffi_module.h differs from the header of the library just built;" >&2
    echo "       regenerate the committed bindings (see bindings/README.md), then run this again." >&2
    diff -u "$repo/bindings/swift/$ffi_module.h" "$build/headers/$ffi_module.h" | head -40 >&2 || true
    exit 1
fi

xc_args=(
    -library "$build/lib/ios/$lib" -headers "$build/headers"
    -library "$build/lib/ios-simulator/$lib" -headers "$build/headers"
)
if [ "$with_macos" = 1 ]; then
    xc_args+=(-library "$build/lib/macos/$lib" -headers "$build/headers")
fi
echo "==> xcodebuild -create-xcframework"
xcodebuild -create-xcframework "${xc_args[@]}" -output "$out"

echo
echo "Built $out"
echo "Next: 'swift build' / 'swift test' at the repository root, or add the package in Xcode (ios/README.md)."
