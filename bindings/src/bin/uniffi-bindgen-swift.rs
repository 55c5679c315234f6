//! `uniffi-bindgen-swift`: the C header and module map for an XCFramework (used by
//! ios/build-xcframework.sh).
fn main() {
    uniffi::uniffi_bindgen_swift()
}
