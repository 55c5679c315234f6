//! The tiny-llama check shared by tests/llama.rs (CPU) and tests/llama_gpu.rs (wgpu): logits
//! against transformers + PEFT for the base, adapter A, adapter B and A again, and greedy
//! tokens with the KV cache.

use std::sync::Arc;

use super::fixtures;
use fourierft::backend::Backend;
use fourierft::fourier::Adapter;
use fourierft::model::{Llama, LlamaOptions};
use fourierft::weights::{ModelFiles, SafeTensorsFile};

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn greedy<B: Backend>(m: &mut Llama<B>, prompt: &[u32], n: usize) -> Vec<i64> {
    m.reset();
    let mut logits = m.forward(prompt, false).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = fourierft::sampler::argmax(&logits);
        out.push(t as i64);
        logits = m.forward(&[t], false).unwrap();
    }
    out
}

/// [`check_tiny_llama`] with the whole prompt in one prefill step and in chunks of 5 (several
/// steps per submission), which must give the same logits.
pub fn check_tiny_llama_both_prefills<B: Backend>(backend: Arc<B>) {
    for max_batch in [64, 5] {
        check_tiny_llama(
            backend.clone(),
            LlamaOptions {
                max_ctx: 64,
                max_batch,
            },
        );
    }
}

pub fn check_tiny_llama<B: Backend>(backend: Arc<B>, options: LlamaOptions) {
    let dir = fixtures().join("tiny_llama");
    let files = ModelFiles::open(&dir).unwrap();
    let g = SafeTensorsFile::open(&fixtures().join("golden/llama_logits.safetensors")).unwrap();
    let tokens: Vec<u32> = g
        .tensor("tokens")
        .unwrap()
        .to_i64_vec()
        .unwrap()
        .iter()
        .map(|&t| t as u32)
        .collect();
    let mut m = Llama::new(backend, &files, options).unwrap();
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    let b = Adapter::load(&fixtures().join("adapters/llama_b")).unwrap();
    for (adapter, key) in [
        (None, "base"),
        (Some(&a), "adapter_a"),
        (Some(&b), "adapter_b"),
        (Some(&a), "adapter_a_again"),
        (None, "base"),
    ] {
        m.set_adapter(&files, adapter).unwrap();
        let got = m.forward(&tokens, true).unwrap();
        let want = g.tensor(key).unwrap().to_f32_vec().unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(
            d <= 1e-4,
            "{} {key}: max |Δlogit| {d:.2e}",
            m.backend().name()
        );
    }
    m.set_adapter(&files, None).unwrap();
    let want = g.tensor("greedy_base").unwrap().to_i64_vec().unwrap();
    assert_eq!(greedy(&mut m, &tokens, want.len()), want, "greedy base");
    m.set_adapter(&files, Some(&a)).unwrap();
    let want = g.tensor("greedy_adapter_a").unwrap().to_i64_vec().unwrap();
    assert_eq!(
        greedy(&mut m, &tokens, want.len()),
        want,
        "greedy adapter a"
    );
}
