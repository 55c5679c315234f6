//! The CLI contract: outputs, exit codes (0 ok, 1 bad input, 2 usage) and one-line errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures, rel_err, scratch};
use fourierft::weights::{ModelFiles, SafeTensorsFile};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fourierft"))
        .args(args)
        .output()
        .expect("run fourierft")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Exit 1, one line on stderr, naming `needle`.
fn assert_fails(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "'{needle}' not in: {err}");
    err
}

fn check_delta_file(file: &Path, golden: &str, module: &str) {
    let got = SafeTensorsFile::open(file).unwrap();
    let want = SafeTensorsFile::open(&fixtures().join("golden").join(golden)).unwrap();
    let gw = got.tensor("delta_w").unwrap();
    let ww = want.tensor(&format!("{module}.delta_w")).unwrap();
    assert_eq!(gw.shape, ww.shape);
    assert_eq!(gw.dtype.to_string(), "F32");
    let e = rel_err(&gw.to_f32_vec().unwrap(), &ww.to_f32_vec().unwrap());
    assert!(e <= 1e-5, "{module}: rel err {e}");
    let gi = got.tensor("indices").unwrap();
    assert_eq!(gi.dtype.to_string(), "I64");
    assert_eq!(
        gi.to_i64_vec().unwrap(),
        want.tensor(&format!("{module}.indices"))
            .unwrap()
            .to_i64_vec()
            .unwrap()
    );
}

#[test]
fn delta_with_model_and_with_shape() {
    let d = scratch("cli-delta");
    let out = d.join("q.safetensors");
    let adapter = fixtures().join("adapters/llama_pattern");
    let model = fixtures().join("tiny_llama");
    let module = "model.layers.1.self_attn.v_proj";
    let o = run(&[
        "delta",
        "--adapter",
        s(&adapter),
        "--module",
        module,
        "--model",
        s(&model),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_delta_file(&out, "llama_pattern_delta.safetensors", module);

    // GPT-2 Conv1D: ΔW is still [out, in] = [96, 32].
    let out2 = d.join("c.safetensors");
    let module = "transformer.h.1.attn.c_attn";
    let adapter = fixtures().join("adapters/gpt2_conv1d");
    let o = run(&[
        "delta",
        "--adapter",
        s(&adapter),
        "--module",
        module,
        "--shape",
        "96x32",
        "--out",
        s(&out2),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_delta_file(&out2, "gpt2_conv1d_delta.safetensors", module);
    let o = run(&[
        "delta",
        "--adapter",
        s(&adapter),
        "--module",
        module,
        "--model",
        s(&fixtures().join("tiny_gpt2")),
        "--out",
        s(&out2),
    ]);
    assert!(o.status.success());
    check_delta_file(&out2, "gpt2_conv1d_delta.safetensors", module);
}

#[test]
fn pack_then_delta_and_inspect() {
    let d = scratch("cli-pack");
    let packed = d.join("bert.safetensors");
    let adapter = fixtures().join("adapters/bert_cls");
    let model = fixtures().join("tiny_bert");
    let o = run(&[
        "pack-adapter",
        "--in",
        s(&adapter),
        "--out",
        s(&packed),
        "--model",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let module = "bert.encoder.layer.1.attention.self.value";
    let out = d.join("v.safetensors");
    let o = run(&[
        "delta",
        "--adapter",
        s(&packed),
        "--module",
        module,
        "--model",
        s(&model),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_delta_file(&out, "bert_cls_delta.safetensors", module);

    let o = run(&["inspect", s(&packed), "--json", "--model", s(&model)]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "adapter");
    assert_eq!(v["format"], "packed");
    assert_eq!(v["modules_adapted"], 4);
    assert_eq!(v["random_loc_seed"], 11);
    assert_eq!(v["fits"]["ok"], true);
    assert!(v["extra_tensors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "classifier.weight"));

    // f16 packing halves the coefficient bytes.
    let p16 = d.join("bert16.safetensors");
    assert!(run(&[
        "pack-adapter",
        "--in",
        s(&adapter),
        "--out",
        s(&p16),
        "--dtype",
        "f16"
    ])
    .status
    .success());
    let o = run(&["inspect", s(&p16), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["modules"][0]["dtype"], "F16");
}

#[test]
fn inspect_model_and_adapter_fit() {
    let o = run(&["inspect", s(&fixtures().join("tiny_llama_mlx4")), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "model");
    let text = v.to_string();
    assert!(text.contains("llama") && text.contains("U32"), "{text}");

    let o = run(&[
        "inspect",
        s(&fixtures().join("adapters/llama_a")),
        "--json",
        "--model",
        s(&fixtures().join("tiny_gpt2")),
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fits"]["ok"], false);
    assert!(v["fits"]["reason"].as_str().unwrap().contains("q_proj"));
    assert_eq!(v["n_values"], serde_json::json!([50]));
    assert_eq!(v["scaling"], 150.0);

    // Text output works too.
    let o = run(&["inspect", s(&fixtures().join("adapters/llama_pattern"))]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("n_frequency_pattern"));
}

#[test]
fn quantize_writes_an_mlx_folder() {
    let d = scratch("cli-quant");
    let out = d.join("q8");
    let o = run(&[
        "quantize",
        "--in",
        s(&fixtures().join("tiny_llama")),
        "--out",
        s(&out),
        "--bits",
        "8",
        "--group-size",
        "32",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = ModelFiles::open(&out).unwrap();
    let q = m.config.quantization.as_ref().expect("quantization key");
    assert_eq!((q.default.bits, q.default.group_size), (8, 32));
    assert!(m.is_quantized("model.layers.0.self_attn.q_proj"));
    // Refuses to overwrite.
    let o = run(&[
        "quantize",
        "--in",
        s(&fixtures().join("tiny_llama")),
        "--out",
        s(&out),
    ]);
    assert_fails(&o, s(&out));
    // Usage errors: exit 2.
    let o = run(&["quantize", "--in", "x", "--out", "y", "--bits", "3"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn exit_codes_and_one_line_errors() {
    let d = scratch("cli-errors");
    // Usage errors: 2.
    for args in [
        vec!["delta", "--adapter", "a", "--module", "m", "--out", "o"],
        vec![
            "delta",
            "--adapter",
            "a",
            "--module",
            "m",
            "--shape",
            "12",
            "--out",
            "o",
        ],
        vec!["no-such-command"],
        vec!["inspect"],
    ] {
        assert_eq!(run(&args).status.code(), Some(2), "{args:?}");
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));

    // Bad input: 1 with one line naming the file.
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"\x05\x00\x00").unwrap();
    assert_fails(&run(&["inspect", s(&junk)]), "junk.safetensors");
    let lying = d.join("lying.safetensors");
    let mut b = 1_000_000u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    std::fs::write(&lying, &b).unwrap();
    assert_fails(&run(&["inspect", s(&lying), "--json"]), "lying.safetensors");
    assert_fails(
        &run(&["inspect", "/nonexistent/model"]),
        "/nonexistent/model",
    );
    let adapter = fixtures().join("adapters/llama_a");
    let out = d.join("o.safetensors");
    assert_fails(
        &run(&[
            "delta",
            "--adapter",
            s(&adapter),
            "--module",
            "model.layers.0.self_attn.q_proj",
            "--shape",
            "4x4",
            "--out",
            s(&out),
        ]),
        "n = 50",
    );
    assert_fails(
        &run(&[
            "delta",
            "--adapter",
            s(&adapter),
            "--module",
            "model.layers.9.self_attn.q_proj",
            "--shape",
            "32x32",
            "--out",
            s(&out),
        ]),
        "llama_a",
    );
    assert_fails(
        &run(&[
            "delta",
            "--adapter",
            s(&adapter),
            "--module",
            "model.layers.0.self_attn.q_proj",
            "--model",
            s(&fixtures().join("tiny_bert")),
            "--out",
            s(&out),
        ]),
        "tiny_bert",
    );
    assert_fails(
        &run(&["pack-adapter", "--in", s(&junk), "--out", s(&out)]),
        "junk.safetensors",
    );
}

#[test]
fn demo_on_any_model_shows_each_adapter_and_an_identical_swap_back() {
    // tiny_llama with a word-level tokenizer whose words "t<i>" are the ids.
    let dir = scratch("cli-demo").join("tiny");
    common::copy_dir(&fixtures().join("tiny_llama"), &dir);
    let vocab: serde_json::Map<String, serde_json::Value> = (0..64)
        .map(|i| (format!("t{i}"), serde_json::json!(i)))
        .collect();
    let tok = serde_json::json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}});
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    let (a, b) = (
        fixtures().join("adapters/llama_a"),
        fixtures().join("adapters/llama_b"),
    );
    let o = run(&[
        "demo",
        "--model",
        s(&dir),
        "--adapter",
        s(&a),
        "--adapter",
        s(&b),
        "--prompt",
        "t1 t5 t9",
        "--max-tokens",
        "6",
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "[base model]",
        "[llama_a]",
        "[llama_b]",
        "[llama_a again]",
        "output identical",
        "pointer switch",
    ] {
        assert!(out.contains(needle), "'{needle}' missing from:\n{out}");
    }
    assert_fails(
        &run(&["demo", "--model", "/nonexistent/model", "--backend", "cpu"]),
        "/nonexistent/model",
    );
}

#[test]
fn delta_on_the_gpu_backend() {
    let d = scratch("cli-gpu");
    let out = d.join("g.safetensors");
    let module = "transformer.h.0.attn.c_attn";
    let adapter = fixtures().join("adapters/gpt2_conv1d");
    let model = fixtures().join("tiny_gpt2");
    let o = run(&[
        "delta",
        "--adapter",
        s(&adapter),
        "--module",
        module,
        "--model",
        s(&model),
        "--out",
        s(&out),
        "--backend",
        "gpu",
    ]);
    if common::gpu().is_some() {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("on gpu"));
        check_delta_file(&out, "gpt2_conv1d_delta.safetensors", module);
        // FOURIERFT_BACKEND picks the backend when --backend is absent.
        let o = Command::new(env!("CARGO_BIN_EXE_fourierft"))
            .args([
                "delta",
                "--adapter",
                s(&adapter),
                "--module",
                module,
                "--shape",
                "96x32",
                "--out",
                s(&out),
            ])
            .env("FOURIERFT_BACKEND", "gpu")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&o.stderr).contains("on gpu"));
        check_delta_file(&out, "gpt2_conv1d_delta.safetensors", module);
        let o = run(&["inspect", "--gpu", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
    } else {
        assert_fails(&o, "no GPU adapter");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_fourierft"))
        .args([
            "delta",
            "--adapter",
            s(&adapter),
            "--module",
            module,
            "--shape",
            "96x32",
            "--out",
            s(&out),
        ])
        .env("FOURIERFT_BACKEND", "tpu")
        .output()
        .unwrap();
    assert_fails(&o, "FOURIERFT_BACKEND");
}

#[test]
fn logits_command_matches_transformers() {
    let d = scratch("cli-logits");
    let out = d.join("l.safetensors");
    let g = SafeTensorsFile::open(&fixtures().join("golden/llama_logits.safetensors")).unwrap();
    let tokens: Vec<String> = g
        .tensor("tokens")
        .unwrap()
        .to_i64_vec()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    let tokens = tokens.join(",");
    let model = fixtures().join("tiny_llama");
    for (adapter, key) in [(None, "base"), (Some("llama_b"), "adapter_b")] {
        let mut args = vec![
            "logits",
            "--model",
            s(&model),
            "--tokens",
            &tokens,
            "--out",
            s(&out),
            "--backend",
            "cpu",
        ];
        let ap = adapter.map(|a| fixtures().join("adapters").join(a));
        if let Some(ap) = &ap {
            args.extend(["--adapter", s(ap)]);
        }
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = SafeTensorsFile::open(&out).unwrap();
        let t = got.tensor("logits").unwrap();
        assert_eq!(t.shape, &[12, 64]);
        let (a, b) = (
            t.to_f32_vec().unwrap(),
            g.tensor(key).unwrap().to_f32_vec().unwrap(),
        );
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d <= 1e-4, "{key}: {d}");
    }
    assert_fails(
        &run(&[
            "logits",
            "--model",
            s(&model),
            "--tokens",
            "1,64",
            "--out",
            s(&out),
        ]),
        "outside the vocabulary",
    );
    assert_fails(
        &run(&[
            "logits",
            "--model",
            s(&fixtures().join("tiny_bert")),
            "--tokens",
            "1",
            "--out",
            s(&out),
        ]),
        "tiny_bert",
    );
    assert_eq!(
        run(&[
            "logits",
            "--model",
            s(&model),
            "--tokens",
            "a",
            "--out",
            s(&out)
        ])
        .status
        .code(),
        Some(2)
    );
}
