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

/// `n` coefficients in [-1, 1) drawn from MT19937 with `seed`.
pub fn random_coeffs(n: usize, seed: u64) -> Vec<f32> {
    let mut g = fourierft::fourier::mt19937::Mt19937::new(seed);
    (0..n)
        .map(|_| g.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0)
        .collect()
}

/// A packed adapter file at `path` with one module, `layer`, holding `coeffs` (PEFT's
/// n_frequency = coeffs.len()), loaded back as a user would load it.
pub fn single_layer_adapter(
    path: &Path,
    coeffs: &[f32],
    scaling: f32,
    seed: u64,
) -> fourierft::fourier::Adapter {
    use fourierft::weights::writer::{write_safetensors, OutTensor};
    let n = coeffs.len();
    let cfg = format!(
        r#"{{"peft_type":"FOURIERFT","n_frequency":{n},"scaling":{scaling:?},"random_loc_seed":{seed}}}"#
    );
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "fourierft.adapter".to_string());
    meta.insert("format_version".to_string(), "1".to_string());
    meta.insert("peft_config".to_string(), cfg);
    write_safetensors(
        path,
        &[OutTensor::f32("layer.fourierft_spectrum", vec![n], coeffs)],
        Some(meta),
    )
    .expect("write a single-layer adapter");
    fourierft::fourier::Adapter::load(path).expect("load a single-layer adapter")
}
