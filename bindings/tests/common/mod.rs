//! Shared by the bindings tests: the repository root and the FFI build (the same command as
//! bindings/generate.sh, under the test profile so it reuses `cargo test`'s fourierft build).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bindings/ has a parent")
        .to_path_buf()
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `target/debug` (the test profile writes there too).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("debug")
}

/// Build the cdylib and uniffi-bindgen as bindings/generate.sh does; return the cdylib's path.
pub fn build_ffi() -> PathBuf {
    let status = Command::new(cargo())
        .current_dir(root())
        .args([
            "build",
            "--quiet",
            "--locked",
            "--profile",
            "test",
            "-p",
            "fourierft-ffi",
            "--features",
            "cli",
            "--lib",
            "--bin",
            "uniffi-bindgen",
        ])
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build -p fourierft-ffi failed");
    let lib = target_dir().join(format!(
        "{}fourierft_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}
