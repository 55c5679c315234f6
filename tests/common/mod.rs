//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod llama_check;

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh, empty scratch folder under the system temp dir, unique per test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourierft-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Copy a fixture folder into a scratch folder so a test can corrupt it.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
        }
    }
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let m = b.iter().fold(0f64, |m, &x| m.max(x.abs() as f64));
    let d = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    d / m.max(f64::MIN_POSITIVE)
}

/// A GPU context for a test, or `None` (with a note) when the machine has no adapter. Under
/// `FOURIERFT_REQUIRE_GPU=1` (set in CI) a missing adapter fails the test instead of skipping.
pub fn gpu() -> Option<fourierft::backend::wgpu::GpuContext> {
    match fourierft::backend::wgpu::GpuContext::new() {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("FOURIERFT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("FOURIERFT_REQUIRE_GPU=1 but no GPU: {e}");
            }
            eprintln!("SKIPPED (no GPU adapter; set FOURIERFT_REQUIRE_GPU=1 to fail instead): {e}");
            None
        }
    }
}
