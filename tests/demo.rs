//! The embedded demo (assets/demo, made by tools/train_demo.py): each adapter steers the same
//! prompt towards its topic, and our greedy tokens equal transformers + PEFT's (golden.json),
//! on the CPU and on the GPU.

mod common;

use std::path::PathBuf;

use fourierft::backend::BackendChoice;
use fourierft::model::GenerateOptions;
use fourierft::{AdapterChoice, Engine, EngineConfig, Request};

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn topic_hits(text: &str, words: &[String]) -> usize {
    let lower = text.to_lowercase();
    words
        .iter()
        .map(|w| lower.matches(w.as_str()).count())
        .sum()
}

fn check(backend: BackendChoice) {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(assets().join("golden.json")).unwrap())
            .unwrap();
    let n = g["max_new_tokens"].as_u64().unwrap() as usize;
    let e = Engine::open(
        &assets().join("model"),
        EngineConfig {
            backend,
            max_ctx: 128,
            overlay_budget_bytes: 64 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let opts = GenerateOptions {
        max_tokens: n,
        stop_at_eos: false,
        ..Default::default()
    };
    let prompt = g["prompts"][0]["text"].as_str().unwrap();
    assert_eq!(
        e.tokenizer().encode(prompt, true).unwrap(),
        ids(&g["prompts"][0]["ids"]),
        "prompt ids (BOS included)"
    );
    let base = e
        .generate(
            prompt,
            &Request {
                adapter: AdapterChoice::Base,
                options: opts.clone(),
                ..Default::default()
            },
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(
        base.tokens,
        ids(&g["prompts"][0]["base"]["ids"]),
        "{backend:?} base vs transformers: {:?}",
        base.text
    );
    let adapters = g["adapters"].as_object().unwrap();
    assert!(adapters.len() >= 2);
    for (name, a) in adapters {
        let path = assets().join(a["packed"].as_str().unwrap());
        assert!(
            std::fs::metadata(&path).unwrap().len() < 64 << 10,
            "{name}: a packed adapter of a few KB"
        );
        let id = e.load_adapter(&path).unwrap();
        let r = e
            .generate(
                prompt,
                &Request {
                    adapter: AdapterChoice::Id(id),
                    options: opts.clone(),
                    ..Default::default()
                },
                &mut |_| true,
            )
            .unwrap();
        let out = &a["outputs"][0];
        assert_eq!(out["prompt"].as_str().unwrap(), prompt);
        assert_eq!(
            r.tokens,
            ids(&out["ids"]),
            "{backend:?} {name} vs transformers+PEFT: {:?}",
            r.text
        );
        let words: Vec<String> = a["topic_words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect();
        assert!(
            topic_hits(&r.text, &words) > topic_hits(&base.text, &words),
            "{name} should steer towards its topic: {:?} vs base {:?}",
            r.text,
            base.text
        );
        assert_ne!(r.text, base.text);
    }
}

#[test]
fn demo_adapters_steer_and_match_transformers_on_the_cpu() {
    check(BackendChoice::Cpu);
}

#[test]
fn demo_adapters_steer_and_match_transformers_on_the_gpu() {
    if common::gpu().is_none() {
        return;
    }
    check(BackendChoice::Gpu);
}

#[test]
fn cargo_run_demo_shows_every_adapter_and_an_identical_swap_back() {
    // `fourierft` with no arguments (what `cargo run --release` runs) is the demo.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fourierft"))
        .env("FOURIERFT_BACKEND", "cpu")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "[base model]",
        "[animals]",
        "[cooking]",
        "[pirates]",
        "again]",
        "output identical",
    ] {
        assert!(out.contains(needle), "'{needle}' missing:\n{out}");
    }
}
