//! Corrupted files never panic: every load path returns Ok or a clean Err.
//! (A seeded mutation sweep over the fixture files: truncations and byte flips.)

mod common;

use std::path::Path;

use common::{copy_dir, fixtures, scratch};
use fourierft::fourier::mt19937::Mt19937;
use fourierft::fourier::{Adapter, CpuMethod};
use fourierft::weights::{ModelFiles, SafeTensorsFile};

fn exercise_adapter(dir: &Path, model: &ModelFiles) {
    if let Ok(a) = Adapter::load(dir) {
        if let Ok(fits) = a.fit(model) {
            for f in fits {
                if let Ok(m) = a.require_module(&f.module) {
                    let _ = a.module_delta(m, f.out_features, f.in_features, CpuMethod::Fast);
                }
            }
        }
    }
}

fn exercise_model(dir: &Path) {
    if let Ok(m) = ModelFiles::open(dir) {
        let _ = m.summary();
        let names: Vec<String> = m.weights.names().iter().map(|s| s.to_string()).collect();
        for n in names {
            if let Some(module) = n.strip_suffix(".weight") {
                let _ = m.linear_dims(module);
                let _ = m.dequantize_weight(module);
            }
        }
    }
}

/// Mutations of `bytes`: truncations at many points and single-byte flips, mostly in the header.
fn mutations(bytes: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut g = Mt19937::new(seed);
    let header_end = bytes
        .get(..8)
        .map(|b| 8 + u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .unwrap_or(bytes.len())
        .min(bytes.len());
    let mut out = Vec::new();
    for i in 0..count {
        let mut b = bytes.to_vec();
        match i % 3 {
            0 => b.truncate(g.next_u32() as usize % bytes.len().max(1)),
            1 => {
                let at = g.next_u32() as usize % header_end.max(1);
                b[at] = g.next_u32() as u8;
            }
            _ => {
                let at = g.next_u32() as usize % b.len().max(1);
                b[at] ^= 1 << (g.next_u32() % 8);
            }
        }
        out.push(b);
    }
    out
}

#[test]
fn mutated_adapters_never_panic() {
    let model = ModelFiles::open(&fixtures().join("tiny_llama")).unwrap();
    let dir = scratch("mut-adapter").join("a");
    for name in ["llama_a", "llama_pattern", "llama_f16"] {
        let src = fixtures().join("adapters").join(name);
        for file in ["adapter_model.safetensors", "adapter_config.json"] {
            let orig = std::fs::read(src.join(file)).unwrap();
            for (k, m) in mutations(&orig, 7 + k_seed(name, file), 150)
                .into_iter()
                .enumerate()
            {
                copy_dir(&src, &dir);
                std::fs::write(dir.join(file), &m).unwrap();
                let r = std::panic::catch_unwind(|| exercise_adapter(&dir, &model));
                assert!(r.is_ok(), "{name}/{file}: mutation {k} panicked");
            }
        }
    }
}

#[test]
fn mutated_models_never_panic() {
    let dir = scratch("mut-model").join("m");
    for name in ["tiny_llama_mlx4", "tiny_gpt2"] {
        let src = fixtures().join(name);
        for file in ["model.safetensors", "config.json"] {
            let orig = std::fs::read(src.join(file)).unwrap();
            for (k, m) in mutations(&orig, 99 + k_seed(name, file), 120)
                .into_iter()
                .enumerate()
            {
                copy_dir(&src, &dir);
                std::fs::write(dir.join(file), &m).unwrap();
                let r = std::panic::catch_unwind(|| {
                    exercise_model(&dir);
                    let _ = SafeTensorsFile::open(&dir.join("model.safetensors"));
                });
                assert!(r.is_ok(), "{name}/{file}: mutation {k} panicked");
            }
        }
    }
}

fn k_seed(a: &str, b: &str) -> u64 {
    a.bytes()
        .chain(b.bytes())
        .fold(0u64, |h, c| h.wrapping_mul(31).wrapping_add(c as u64))
}
