//! The Engine: swaps, per-request adapters, concurrency, cancel, KV cache, LRU eviction, a
//! soak of 300 swaps — on the tiny llama (whose greedy outputs transformers+PEFT fixed in
//! golden/llama_logits) with a word-level tokenizer whose words are the token ids.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{copy_dir, fixtures, scratch};
use fourierft::backend::BackendChoice;
use fourierft::model::{GenerateOptions, StopReason};
use fourierft::weights::SafeTensorsFile;
use fourierft::{AdapterChoice, Engine, EngineConfig, Generation, Request};

/// tiny_llama + a tokenizer.json mapping "t<i>" to id i (and back, space-separated).
fn model_dir(name: &str) -> PathBuf {
    let dir = scratch(name).join("tiny");
    copy_dir(&fixtures().join("tiny_llama"), &dir);
    let vocab: serde_json::Map<String, serde_json::Value> = (0..64)
        .map(|i| (format!("t{i}"), serde_json::json!(i)))
        .collect();
    let tok = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}
    });
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(&tok).unwrap(),
    )
    .unwrap();
    dir
}

fn golden() -> (String, Vec<u32>, Vec<u32>) {
    let g = SafeTensorsFile::open(&fixtures().join("golden/llama_logits.safetensors")).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        g.tensor(k)
            .unwrap()
            .to_i64_vec()
            .unwrap()
            .iter()
            .map(|&t| t as u32)
            .collect()
    };
    let prompt = ids("tokens")
        .iter()
        .map(|t| format!("t{t}"))
        .collect::<Vec<_>>()
        .join(" ");
    (prompt, ids("greedy_base"), ids("greedy_adapter_a"))
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: n,
        ..Default::default()
    }
}

/// A greedy request of `n` tokens for `prompt` under `adapter`.
fn run(e: &Engine, prompt: &str, adapter: AdapterChoice, n: usize) -> Generation {
    e.generate(
        prompt,
        &Request {
            adapter,
            options: greedy(n),
            ..Default::default()
        },
        &mut |_| true,
    )
    .unwrap()
}

fn open(dir: &Path, budget: u64) -> Engine {
    Engine::open(
        dir,
        EngineConfig {
            backend: BackendChoice::Cpu,
            max_ctx: 64,
            overlay_budget_bytes: budget,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn swaps_per_request_adapters_and_goldens() {
    let dir = model_dir("engine-swap");
    let (prompt, want_base, want_a) = golden();
    let e = open(&dir, 1 << 30);
    let base = run(&e, &prompt, AdapterChoice::Current, 8);
    assert_eq!(base.tokens, want_base, "base greedy tokens = transformers'");
    let a = e
        .load_adapter(&fixtures().join("adapters/llama_a"))
        .unwrap();
    let b = e
        .load_adapter(&fixtures().join("adapters/llama_b"))
        .unwrap();
    e.set_adapter(Some(a)).unwrap();
    let s = e.stats();
    assert_eq!(
        (s.adapters_loaded, s.active_adapter, s.last_swap_warm),
        (2, Some(a), false)
    );
    let ra = run(&e, &prompt, AdapterChoice::Current, 8);
    assert_eq!(
        ra.tokens, want_a,
        "adapter A greedy tokens = transformers+PEFT's"
    );
    assert_eq!(ra.adapter, Some(a));
    // Per-request adapter B, then back to A (the current one): a cached, warm swap.
    let rb = run(&e, &prompt, AdapterChoice::Id(b), 8);
    assert_ne!(rb.tokens, ra.tokens);
    let ra2 = run(&e, &prompt, AdapterChoice::Current, 8);
    assert_eq!(ra2.tokens, ra.tokens, "swapping back reproduces A");
    assert!(e.stats().last_swap_warm, "A's overlays were cached");
    assert_eq!(e.stats().cached_overlays, 1);
    // The plain base for one request.
    let rbase = run(&e, &prompt, AdapterChoice::Base, 8);
    assert_eq!(rbase.tokens, want_base);
    // Logits under the current adapter equal a fresh computation (no stale KV cache).
    let l1 = e.logits(&[1, 2, 3]).unwrap();
    let l2 = e.logits(&[1, 2, 3]).unwrap();
    assert_eq!(l1, l2);
    // Unload: the current adapter falls back to the base.
    e.unload_adapter(a).unwrap();
    assert!(e.unload_adapter(a).is_err());
    let r = run(&e, &prompt, AdapterChoice::Current, 8);
    assert_eq!(r.tokens, want_base);
}

#[test]
fn bad_adapters_are_refused_before_any_work() {
    let dir = model_dir("engine-bad");
    let e = open(&dir, 1 << 30);
    let err = e
        .load_adapter(&fixtures().join("adapters/bert_cls"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bert_cls") && err.contains("does not fit"),
        "{err}"
    );
    assert!(e
        .load_adapter(Path::new("/nonexistent/adapter"))
        .unwrap_err()
        .to_string()
        .contains("/nonexistent/adapter"));
    assert!(e
        .load_adapter_bytes("junk.bin", vec![1, 2, 3])
        .unwrap_err()
        .to_string()
        .contains("junk.bin"));
    assert!(e.set_adapter(Some(999)).is_err());
    assert_eq!(e.stats().adapters_loaded, 0);
    // From bytes: a packed file an app downloaded.
    let a = fourierft::fourier::Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    let p = scratch("engine-bytes").join("a.safetensors");
    a.write_packed(&p, fourierft::weights::DType::F16, None)
        .unwrap();
    let id = e
        .load_adapter_bytes("a.safetensors", std::fs::read(&p).unwrap())
        .unwrap();
    e.set_adapter(Some(id)).unwrap();
}

#[test]
fn cancel_stops_within_one_token_and_the_engine_stays_usable() {
    let dir = model_dir("engine-cancel");
    let (prompt, want_base, _) = golden();
    let e = Arc::new(open(&dir, 1 << 30));
    let mut pieces = 0;
    let e2 = e.clone();
    let opts = GenerateOptions {
        max_tokens: 40,
        stop_at_eos: false,
        ..Default::default()
    };
    let r = e
        .generate(
            &prompt,
            &Request {
                options: opts,
                ..Default::default()
            },
            &mut |_| {
                pieces += 1;
                if pieces == 3 {
                    e2.cancel();
                }
                true
            },
        )
        .unwrap();
    assert_eq!(r.stats.stop_reason, StopReason::Cancelled);
    assert!(
        r.tokens.len() <= 4,
        "stopped after {} tokens",
        r.tokens.len()
    );
    let again = run(&e, &prompt, AdapterChoice::Current, 8);
    assert_eq!(again.tokens, want_base);
}

#[test]
fn a_swap_during_a_generation_waits_and_never_mixes_adapters() {
    let dir = model_dir("engine-concurrent");
    let (prompt, _, want_a) = golden();
    let e = Arc::new(open(&dir, 1 << 30));
    let a = e
        .load_adapter(&fixtures().join("adapters/llama_a"))
        .unwrap();
    let b = e
        .load_adapter(&fixtures().join("adapters/llama_b"))
        .unwrap();
    e.set_adapter(Some(a)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let e1 = e.clone();
    let p1 = prompt.clone();
    let worker = std::thread::spawn(move || {
        e1.generate(
            &p1,
            &Request {
                options: greedy(8),
                ..Default::default()
            },
            &mut |_| {
                let _ = tx.send(());
                std::thread::sleep(std::time::Duration::from_millis(5));
                true
            },
        )
        .unwrap()
    });
    rx.recv().unwrap(); // the generation is running
    e.set_adapter(Some(b)).unwrap(); // waits for it
    let r = worker.join().unwrap();
    assert_eq!(
        r.tokens, want_a,
        "the running request kept adapter A throughout"
    );
    let rb = run(&e, &prompt, AdapterChoice::Current, 8);
    assert_eq!(rb.adapter, Some(b));
}

#[test]
fn soak_300_swaps_with_lru_eviction() {
    let dir = model_dir("engine-soak");
    let (prompt, _, _) = golden();
    let names = ["llama_a", "llama_b", "llama_pattern"];
    // Each set's bytes, measured with nothing cached. The budget holds either smaller set but
    // never two, and never the largest: swaps hit the cache, miss it and evict.
    let probe = open(&dir, 0);
    let mut sizes: Vec<u64> = names
        .iter()
        .map(|n| {
            let id = probe
                .load_adapter(&fixtures().join("adapters").join(n))
                .unwrap();
            probe.set_adapter(Some(id)).unwrap();
            probe.stats().overlay_bytes
        })
        .collect();
    sizes.sort();
    assert!(sizes[0] > 0 && sizes[1] < sizes[2], "{sizes:?}");
    let e = open(&dir, sizes[1]);
    let ids: Vec<u64> = names
        .iter()
        .map(|n| {
            e.load_adapter(&fixtures().join("adapters").join(n))
                .unwrap()
        })
        .collect();
    let reference: Vec<Vec<u32>> = ids
        .iter()
        .map(|&id| run(&e, &prompt, AdapterChoice::Id(id), 3).tokens)
        .collect();
    let mut g = fourierft::fourier::mt19937::Mt19937::new(42);
    let mut warm = 0;
    for i in 0..300 {
        let k = (g.next_u32() % 3) as usize;
        e.set_adapter(Some(ids[k])).unwrap();
        if i % 10 == 0 {
            let r = run(&e, &prompt, AdapterChoice::Current, 3);
            assert_eq!(r.tokens, reference[k], "swap {i} to {}", names[k]);
        }
        let st = e.stats();
        assert!(st.cached_overlays <= 1, "the budget holds one cached set");
        warm += st.last_swap_warm as usize;
    }
    assert!(
        warm > 20 && warm < 280,
        "{warm} of 300 swaps were warm: both paths must run"
    );
}

/// The same soak on the GPU backend: outputs equal the single-adapter references and, after
/// warm-up, the number of live GPU buffers and their bytes stay constant.
#[test]
fn gpu_soak_300_swaps_keeps_buffers_constant() {
    if common::gpu().is_none() {
        return;
    }
    let dir = model_dir("engine-gpu-soak");
    let (prompt, want_base, want_a) = golden();
    let e = Engine::open(
        &dir,
        EngineConfig {
            backend: BackendChoice::Gpu,
            max_ctx: 64,
            overlay_budget_bytes: 12_000,
            ..Default::default()
        },
    )
    .unwrap();
    let base = run(&e, &prompt, AdapterChoice::Current, 8);
    assert_eq!(base.tokens, want_base, "GPU engine, base = transformers");
    // Three adapters of the same layers (q, v of both layers), so every state holds the same
    // number of overlays: llama_a, llama_f16 and llama_a re-seeded (other positions).
    let mut reseeded =
        fourierft::fourier::Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    reseeded
        .config
        .raw
        .insert("random_loc_seed".into(), serde_json::json!(99));
    let p = scratch("engine-gpu-soak-a99").join("a99.fft.safetensors");
    reseeded
        .write_packed(&p, fourierft::weights::DType::F32, None)
        .unwrap();
    let names = ["llama_a", "llama_f16", "a99"];
    let paths = [
        fixtures().join("adapters/llama_a"),
        fixtures().join("adapters/llama_f16"),
        p,
    ];
    let ids: Vec<u64> = paths.iter().map(|p| e.load_adapter(p).unwrap()).collect();
    let a = run(&e, &prompt, AdapterChoice::Id(ids[0]), 8);
    assert_eq!(
        a.tokens, want_a,
        "GPU engine, adapter A = transformers+PEFT"
    );
    let reference: Vec<Vec<u32>> = ids
        .iter()
        .map(|&id| run(&e, &prompt, AdapterChoice::Id(id), 3).tokens)
        .collect();
    let mut g = fourierft::fourier::mt19937::Mt19937::new(7);
    let mut steady = None;
    for i in 0..300 {
        let k = (g.next_u32() % 3) as usize;
        e.set_adapter(Some(ids[k])).unwrap();
        if i % 15 == 0 {
            let r = run(&e, &prompt, AdapterChoice::Current, 3);
            assert_eq!(r.tokens, reference[k], "swap {i} to {}", names[k]);
        }
        // Warm-up: every adapter has been built and every set evicted at least once.
        if i == 30 {
            steady = e.gpu_buffers();
        }
        if i > 30 && i % 10 == 0 {
            assert_eq!(
                e.gpu_buffers(),
                steady,
                "live GPU buffers (count, bytes) after swap {i}"
            );
        }
    }
}

/// `spectral_gpu_layers`: the GPU engine keeps adapted layers as base + spectral ΔW. Outputs
/// equal transformers + PEFT, adapters hold far fewer bytes than merged overlays, and a swap
/// back to a cached adapter is warm.
#[test]
fn gpu_engine_with_spectral_layers_matches_transformers() {
    if common::gpu().is_none() {
        return;
    }
    let dir = model_dir("engine-gpu-spectral");
    let (prompt, want_base, want_a) = golden();
    let open = |spectral: bool| {
        Engine::open(
            &dir,
            EngineConfig {
                backend: BackendChoice::Gpu,
                max_ctx: 64,
                spectral_gpu_layers: spectral,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let tokens = |e: &Engine, adapter: AdapterChoice| run(e, &prompt, adapter, 8).tokens;
    let e = open(true);
    let a = e
        .load_adapter(&fixtures().join("adapters/llama_a"))
        .unwrap();
    let b = e
        .load_adapter(&fixtures().join("adapters/llama_b"))
        .unwrap();
    assert_eq!(tokens(&e, AdapterChoice::Id(a)), want_a, "adapter A");
    let spectral_bytes = e.stats().overlay_bytes;
    let from_b = tokens(&e, AdapterChoice::Id(b));
    assert_ne!(from_b, want_a, "adapter B differs from A");
    assert_eq!(tokens(&e, AdapterChoice::Id(a)), want_a, "A again");
    assert!(e.stats().last_swap_warm, "switching back to A is warm");
    assert_eq!(tokens(&e, AdapterChoice::Base), want_base, "the plain base");

    let merged = open(false);
    let am = merged
        .load_adapter(&fixtures().join("adapters/llama_a"))
        .unwrap();
    assert_eq!(tokens(&merged, AdapterChoice::Id(am)), want_a);
    let merged_bytes = merged.stats().overlay_bytes;
    assert!(
        spectral_bytes * 2 < merged_bytes,
        "spectral layers hold {spectral_bytes} bytes, merged overlays {merged_bytes}"
    );
}
