//! Bad adapters get a clear error that names the file and what was expected.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{copy_dir, fixtures, scratch};
use fourierft::fourier::{Adapter, CpuMethod};
use fourierft::weights::writer::{write_safetensors, OutTensor};
use fourierft::weights::ModelFiles;

fn llama_a_copy(name: &str) -> std::path::PathBuf {
    let d = scratch(name).join("adapter");
    copy_dir(&fixtures().join("adapters/llama_a"), &d);
    d
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("adapter_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn err(dir: &Path) -> String {
    match Adapter::load(dir) {
        Ok(_) => panic!("{} loaded but should have been refused", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_peft_type() {
    let d = llama_a_copy("peft_type");
    edit_config(&d, |m| {
        m.insert("peft_type".into(), "LORA".into());
    });
    let e = err(&d);
    assert!(
        e.contains("adapter_config.json") && e.contains("\"LORA\"") && e.contains("FOURIERFT"),
        "{e}"
    );
}

#[test]
fn unknown_keys_alpha_and_ifft2_norm() {
    let d = llama_a_copy("unknown");
    edit_config(&d, |m| {
        m.insert("alpha".into(), 8.0.into());
        m.insert("ifft2_norm".into(), "ortho".into());
    });
    let e = err(&d);
    assert!(
        e.contains("adapter_config.json") && e.contains("'alpha'") && e.contains("'ifft2_norm'"),
        "{e}"
    );
}

#[test]
fn malformed_config_json() {
    let d = llama_a_copy("badjson");
    std::fs::write(
        d.join("adapter_config.json"),
        "{\"peft_type\": \"FOURIERFT\", ",
    )
    .unwrap();
    let e = err(&d);
    assert!(
        e.contains("adapter_config.json") && e.contains("invalid JSON"),
        "{e}"
    );
}

#[test]
fn spectrum_length_differs_from_n() {
    let d = llama_a_copy("length");
    edit_config(&d, |m| {
        m.insert("n_frequency".into(), 49.into());
    });
    let e = err(&d);
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("[49]") && e.contains("[50]"),
        "{e}"
    );
}

#[test]
fn truncated_adapter_file() {
    let d = llama_a_copy("truncated");
    let p = d.join("adapter_model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = err(&d);
    assert!(e.contains("adapter_model.safetensors"), "{e}");
}

fn write_adapter(dir: &Path, tensors: &[OutTensor]) {
    write_safetensors(&dir.join("adapter_model.safetensors"), tensors, None).unwrap();
}

#[test]
fn nan_and_inf_coefficients() {
    for (i, bad) in [f32::NAN, f32::INFINITY].into_iter().enumerate() {
        let d = llama_a_copy(&format!("nan{i}"));
        let mut c = vec![0.01f32; 50];
        c[7] = bad;
        write_adapter(
            &d,
            &[OutTensor::f32(
                "base_model.model.model.layers.0.self_attn.q_proj.fourierft_spectrum",
                vec![50],
                &c,
            )],
        );
        let e = err(&d);
        assert!(
            e.contains("fourierft_spectrum") && e.contains("finite") && e.contains("index 7"),
            "{e}"
        );
    }
}

#[test]
fn unexpected_tensor_is_refused() {
    let d = llama_a_copy("lora");
    write_adapter(
        &d,
        &[
            OutTensor::f32(
                "base_model.model.model.layers.0.self_attn.q_proj.fourierft_spectrum",
                vec![50],
                &[0.0; 50],
            ),
            OutTensor::f32(
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                vec![2, 2],
                &[0.0; 4],
            ),
        ],
    );
    let e = err(&d);
    assert!(
        e.contains("lora_A") && e.contains("unexpected tensor"),
        "{e}"
    );
}

#[test]
fn two_dimensional_spectrum_is_refused() {
    let d = llama_a_copy("shape");
    write_adapter(
        &d,
        &[OutTensor::f32(
            "base_model.model.model.layers.0.self_attn.q_proj.fourierft_spectrum",
            vec![5, 10],
            &[0.0; 50],
        )],
    );
    let e = err(&d);
    assert!(e.contains("1-D spectrum"), "{e}");
}

#[test]
fn pickle_only_folder() {
    let d = scratch("pickle").join("adapter");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("adapter_config.json"), "{}").unwrap();
    std::fs::write(d.join("adapter_model.bin"), b"PK").unwrap();
    let e = err(&d);
    assert!(
        e.contains("adapter_model.bin") && e.contains("safe_serialization"),
        "{e}"
    );
}

#[test]
fn missing_folder() {
    let e = err(Path::new("/nonexistent/fourierft-adapter"));
    assert!(e.contains("/nonexistent/fourierft-adapter"), "{e}");
}

#[test]
fn adapter_for_another_model() {
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    let bert = ModelFiles::open(&fixtures().join("tiny_bert")).unwrap();
    let e = a.fit(&bert).unwrap_err().to_string();
    assert!(
        e.contains("llama_a")
            && e.contains("tiny_bert")
            && e.contains("model.layers.0.self_attn.q_proj"),
        "{e}"
    );
    // The BERT classifier adapter on GPT-2: its modules do not exist there either.
    let b = Adapter::load(&fixtures().join("adapters/bert_cls")).unwrap();
    let gpt2 = ModelFiles::open(&fixtures().join("tiny_gpt2")).unwrap();
    assert!(b
        .fit(&gpt2)
        .unwrap_err()
        .to_string()
        .contains("does not fit"));
}

#[test]
fn n_larger_than_the_layer() {
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    let m = a.require_module("model.layers.0.self_attn.q_proj").unwrap();
    let e = a
        .module_delta(m, 4, 4, CpuMethod::Fast)
        .err()
        .expect("n=50 > 16 refused")
        .to_string();
    assert!(e.contains("n = 50") && e.contains("4x4"), "{e}");
    let e = a.require_module("model.nope").unwrap_err().to_string();
    assert!(e.contains("model.nope") && e.contains("q_proj"), "{e}");
}

#[test]
fn packed_file_with_bad_metadata_or_positions() {
    let dir = scratch("packedbad");
    let cfg =
        std::fs::read_to_string(fixtures().join("adapters/llama_a/adapter_config.json")).unwrap();
    let spectrum = OutTensor::f32(
        "model.layers.0.self_attn.q_proj.fourierft_spectrum",
        vec![50],
        &[0.01; 50],
    );
    let meta = |v: &str| {
        let mut m = HashMap::new();
        m.insert("format".to_string(), "fourierft.adapter".to_string());
        m.insert("format_version".to_string(), v.to_string());
        m.insert("peft_config".to_string(), cfg.clone());
        m
    };
    let p = dir.join("v9.safetensors");
    write_safetensors(&p, std::slice::from_ref(&spectrum), Some(meta("9"))).unwrap();
    let e = Adapter::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("v9.safetensors") && e.contains("format_version '9'"),
        "{e}"
    );

    // Positions outside the layer.
    let p = dir.join("pos.safetensors");
    let mut pos: Vec<u32> = (0..50).collect();
    pos.extend(vec![40u32; 50]);
    let positions = OutTensor::u32(
        "model.layers.0.self_attn.q_proj.fourierft_positions",
        vec![2, 50],
        &pos,
    );
    write_safetensors(&p, &[spectrum, positions], Some(meta("1"))).unwrap();
    let a = Adapter::load(&p).unwrap();
    let model = ModelFiles::open(&fixtures().join("tiny_llama")).unwrap();
    let e = a.fit(&model).unwrap_err().to_string();
    assert!(e.contains("outside"), "{e}");
}
