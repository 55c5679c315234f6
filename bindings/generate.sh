#!/usr/bin/env bash
# Regenerate the committed Kotlin and Swift sources from the FFI library's metadata, with the
# workspace's own uniffi-bindgen (library mode; names from bindings/uniffi.toml):
#   bindings/kotlin/dev/fourierft/fourierft_ffi.kt    desktop-JVM flavour (JNA), default settings
#   bindings/swift/FourierFT.swift, FourierFTFFI.h, FourierFTFFI.modulemap
# Usage: bindings/generate.sh [OUT_DIR]   (default: bindings/; tests/bindings_current.rs passes a
# temporary folder and compares). CARGO_PROFILE picks the cargo profile (default dev).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${1:-$root/bindings}"
profile="${CARGO_PROFILE:-dev}"
cargo="${CARGO:-cargo}"

"$cargo" build --quiet --locked --profile "$profile" -p fourierft-ffi --features cli \
    --lib --bin uniffi-bindgen

target="${CARGO_TARGET_DIR:-$root/target}"
case "$profile" in dev | test) dir=debug ;; bench) dir=release ;; *) dir="$profile" ;; esac
case "$(uname -s)" in Darwin) lib=libfourierft_ffi.dylib ;; *) lib=libfourierft_ffi.so ;; esac
bindgen="$target/$dir/uniffi-bindgen"
library="$target/$dir/$lib"

rm -rf "$out/kotlin" "$out/swift"
"$bindgen" generate --no-format --library "$library" --language kotlin --out-dir "$out/kotlin"
"$bindgen" generate --no-format --library "$library" --language swift --out-dir "$out/swift"
echo "wrote $out/kotlin and $out/swift"
