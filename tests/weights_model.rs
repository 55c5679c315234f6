//! Model folders: quantised and plain weights through ModelFiles, and the quantiser.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use fourierft::weights::writer::{write_safetensors, OutTensor};
use fourierft::weights::{quantize_model_dir, Arch, DType, ModelFiles, QuantSpec, SafeTensorsFile};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "fourierft-wmodel-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const LLAMA_MODULES: &[&str] = &[
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

#[test]
fn mlx_quantized_llama_dims_and_dequant_match_mlx() {
    let m = ModelFiles::open(&fixtures().join("tiny_llama_mlx4")).unwrap();
    assert_eq!(m.config.arch, Arch::Llama);
    let q = m.config.quantization.as_ref().unwrap();
    assert_eq!(
        q.for_module("lm_head"),
        Some(QuantSpec {
            bits: 8,
            group_size: 32
        })
    );
    assert_eq!(
        m.linear_dims("model.layers.0.self_attn.q_proj").unwrap(),
        (32, 32)
    );
    assert_eq!(
        m.linear_dims("model.layers.0.self_attn.k_proj").unwrap(),
        (16, 32)
    );
    assert_eq!(
        m.linear_dims("model.layers.1.mlp.down_proj").unwrap(),
        (32, 64)
    );
    assert_eq!(
        m.linear_dims("model.layers.1.mlp.up_proj.weight").unwrap(),
        (64, 32)
    );
    assert_eq!(m.linear_dims("lm_head").unwrap(), (64, 32));
    assert_eq!(m.linear_dims("model.embed_tokens").unwrap(), (64, 32));
    assert!(m.is_quantized("lm_head"));
    assert!(!m.is_quantized("model.norm"));

    let golden =
        SafeTensorsFile::open(&fixtures().join("golden/tiny_llama_mlx4_dequant.safetensors"))
            .unwrap();
    let mut n = 0;
    for name in golden.names() {
        let module = name.strip_suffix(".weight").unwrap();
        let want = golden.tensor(name).unwrap().to_f32_vec().unwrap();
        let got = m.dequantize_weight(module).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let bad = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(bad, 0, "{name}: {bad} values differ from mx.dequantize");
        let mlx = m.quantized(module).unwrap().dequantize_mlx().unwrap();
        assert_eq!(mlx, want, "{name}");
        n += 1;
    }
    assert!(n >= 2 * LLAMA_MODULES.len() + 2, "{n}");

    let s = m.summary();
    assert_eq!(s.tensor_count, m.weights.len());
    let qs = s.quantization.as_ref().unwrap();
    assert_eq!((qs.bits, qs.group_size, qs.overrides), (4, 32, 1));
    assert_eq!(qs.quantized_modules, n);
    assert_eq!(s.dtypes.get("U32"), Some(&n));
    assert!(s.total_bytes > 0);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["arch"], "Llama");
    assert_eq!(json["quantization"]["bits"], 4);
}

#[test]
fn plain_models_dims_and_weights() {
    let m = ModelFiles::open(&fixtures().join("tiny_llama")).unwrap();
    assert!(!m.is_quantized("model.layers.0.self_attn.q_proj"));
    assert_eq!(
        m.linear_dims("model.layers.0.mlp.gate_proj").unwrap(),
        (64, 32)
    );
    let w = m.dequantize_weight("model.layers.0.mlp.gate_proj").unwrap();
    let raw = m
        .weights
        .tensor("model.layers.0.mlp.gate_proj.weight")
        .unwrap()
        .to_f32_vec()
        .unwrap();
    assert_eq!(w, raw);
    assert!(m.summary().quantization.is_none());

    let e = m
        .linear_dims("model.layers.9.mlp.gate_proj")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tiny_llama")
            && e.contains("model.layers.9.mlp.gate_proj.weight")
            && e.contains("not found"),
        "{e}"
    );
    // A 1-D weight is not a linear layer.
    let e = m.linear_dims("model.norm").unwrap_err().to_string();
    assert!(e.contains("model.norm.weight") && e.contains("2-D"), "{e}");

    let b = ModelFiles::open(&fixtures().join("tiny_bert")).unwrap();
    assert_eq!(b.config.arch, Arch::Bert);
    let g = ModelFiles::open(&fixtures().join("tiny_gpt2")).unwrap();
    assert_eq!(g.config.arch, Arch::Gpt2);
}

#[test]
fn quantized_shape_errors_name_file_tensor_and_shape() {
    let d = temp_dir("badq");
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type":"llama","hidden_size":64,"intermediate_size":64,"num_hidden_layers":1,
           "num_attention_heads":4,"vocab_size":8,"quantization":{"group_size":32,"bits":4}}"#,
    )
    .unwrap();
    write_safetensors(
        &d.join("model.safetensors"),
        &[
            OutTensor::u32("a.weight", vec![2, 8], &[0; 16]),
            OutTensor::f32("a.scales", vec![2, 3], &[0.0; 6]), // should be [2, 2]
            OutTensor::f32("a.biases", vec![2, 2], &[0.0; 4]),
            OutTensor::u32("b.weight", vec![2, 5], &[0; 10]), // 40 cols: not a multiple of 32
            OutTensor::f32("b.scales", vec![2, 1], &[0.0; 2]),
            OutTensor::f32("b.biases", vec![2, 1], &[0.0; 2]),
            OutTensor::f32("c.weight", vec![2, 32], &[0.0; 64]),
            OutTensor::f32("c.scales", vec![2, 1], &[0.0; 2]),
            OutTensor::f32("c.biases", vec![2, 1], &[0.0; 2]),
        ],
        None,
    )
    .unwrap();
    let m = ModelFiles::open(&d).unwrap();
    let e = m.linear_dims("a").unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("tensor 'a.scales'"),
        "{e}"
    );
    assert!(
        e.contains("expected shape [2, 2]") && e.contains("found shape [2, 3]"),
        "{e}"
    );
    let e = m.dequantize_weight("b").unwrap_err().to_string();
    assert!(
        e.contains("tensor 'b.weight'") && e.contains("group size 32"),
        "{e}"
    );
    let e = m.dequantize_weight("c").unwrap_err().to_string();
    assert!(
        e.contains("tensor 'c.weight'") && e.contains("expected dtype U32"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn quantizer_reproduces_mlx_on_tiny_llama() {
    let out = temp_dir("q4").join("out");
    let mut calls = 0;
    let spec = QuantSpec::new(4, 32).unwrap();
    let rep = quantize_model_dir(&fixtures().join("tiny_llama"), &out, spec, &mut |_, _| {
        calls += 1
    })
    .unwrap();
    assert!(calls > 0);
    assert!(rep.quantized.contains(&"model.embed_tokens".to_string()));
    assert!(rep
        .copied_files
        .contains(&"generation_config.json".to_string()));
    let ours = ModelFiles::open(&out).unwrap();
    let mlx = ModelFiles::open(&fixtures().join("tiny_llama_mlx4")).unwrap();
    // Every 4-bit module is bit-identical to mx.quantize (lm_head is 8-bit in the fixture).
    let mut n = 0;
    for name in mlx.weights.names() {
        if name.starts_with("lm_head") {
            continue;
        }
        let a = ours.weights.tensor(name).unwrap();
        let b = mlx.weights.tensor(name).unwrap();
        assert_eq!((a.dtype, a.shape), (b.dtype, b.shape), "{name}");
        assert_eq!(a.data, b.data, "{name}: bytes differ from MLX");
        n += 1;
    }
    assert_eq!(n + 3, mlx.weights.len());
    assert!(ours.is_quantized("lm_head"));
    assert_eq!(ours.config.quantization.as_ref().unwrap().default, spec);
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

/// A small F16 model folder with an extra non-divisible linear and a tokenizer.
fn synthetic_model(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut s = 12345u64;
    let mut rnd = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale;
                half::f16::from_f32(v).to_f32()
            })
            .collect()
    };
    let tensors = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![16, 64],
            rnd(16 * 64, 2.0),
        ),
        (
            "model.layers.0.self_attn.q_proj.weight".to_string(),
            vec![64, 64],
            rnd(64 * 64, 0.5),
        ),
        (
            "model.layers.0.mlp.down_proj.weight".to_string(),
            vec![64, 128],
            rnd(64 * 128, 0.1),
        ),
        (
            "model.layers.0.mlp.odd_proj.weight".to_string(),
            vec![8, 48],
            rnd(8 * 48, 1.0),
        ),
        (
            "model.layers.0.input_layernorm.weight".to_string(),
            vec![64],
            rnd(64, 1.0),
        ),
        ("model.norm.weight".to_string(), vec![64], rnd(64, 1.0)),
    ];
    let out: Vec<OutTensor> = tensors
        .iter()
        .map(|(n, sh, v)| {
            OutTensor::f16(
                n.clone(),
                sh.clone(),
                &v.iter()
                    .map(|x| half::f16::from_f32(*x))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &out, None).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,
           "num_attention_heads":4,"vocab_size":16,"torch_dtype":"float16","custom_key":[1,2,3],
           "tie_word_embeddings":true}"#,
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer.json"), r#"{"model":{"type":"BPE"}}"#).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"not copied").unwrap();
    tensors
}

#[test]
fn quantize_synthetic_folder_roundtrip() {
    let root = temp_dir("synth");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let tensors = synthetic_model(&input);
    let output = root.join("out");
    for spec in [
        QuantSpec::new(4, 32).unwrap(),
        QuantSpec::new(8, 64).unwrap(),
    ] {
        let _ = std::fs::remove_dir_all(&output);
        let mut last = (0, 0);
        let rep = quantize_model_dir(&input, &output, spec, &mut |d, t| last = (d, t)).unwrap();
        assert_eq!(last, (6, 6));
        assert_eq!(rep.quantized.len(), 3, "{:?}", rep.quantized);
        assert_eq!(
            rep.skipped,
            vec!["model.layers.0.mlp.odd_proj.weight".to_string()]
        );
        assert_eq!(
            rep.copied_files,
            vec![
                "tokenizer.json".to_string(),
                "tokenizer_config.json".to_string()
            ]
        );
        assert!(!output.join("pytorch_model.bin").exists());
        assert!(rep.output_bytes < rep.input_bytes);
        // No staging folder left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");

        let m = ModelFiles::open(&output).unwrap();
        // Config round trip: original keys kept, quantization added (both spellings).
        let q = m.config.quantization.as_ref().unwrap();
        assert_eq!(q.default, spec);
        assert!(q.overrides.is_empty());
        assert_eq!(m.config.raw["custom_key"], serde_json::json!([1, 2, 3]));
        assert_eq!(m.config.raw["quantization_config"]["bits"], spec.bits);
        assert_eq!(m.config.raw["quantization"]["mode"], "affine");
        assert!(m.config.tie_word_embeddings);
        assert_eq!(
            std::fs::read_to_string(output.join("tokenizer.json")).unwrap(),
            r#"{"model":{"type":"BPE"}}"#
        );

        for (name, shape, orig) in &tensors {
            let module = name.strip_suffix(".weight").unwrap();
            if shape.len() == 1 || module.ends_with("odd_proj") {
                assert!(!m.is_quantized(module), "{name}");
                let t = m.weights.tensor(name).unwrap();
                assert_eq!(t.dtype, DType::F16);
                assert_eq!(
                    &t.to_f32_vec().unwrap(),
                    orig,
                    "{name} must be kept as it was"
                );
                continue;
            }
            assert!(m.is_quantized(module), "{name}");
            let (rows, cols) = m.linear_dims(module).unwrap();
            assert_eq!(vec![rows, cols], *shape);
            let qt = m.quantized(module).unwrap();
            assert_eq!(qt.dtype(), DType::F16, "scales/biases in the model dtype");
            let scales = qt.scales.to_f32_vec().unwrap();
            let deq = m.dequantize_weight(module).unwrap();
            let g = spec.group_size;
            let mut within_half = 0usize;
            for (k, (&a, &b)) in deq.iter().zip(orig).enumerate() {
                let step = scales[(k / cols) * (cols / g) + (k % cols) / g].abs();
                let e = (a - b).abs();
                // f16-rounded scale/bias add a little on top of the quantisation error.
                assert!(e <= 1.5 * step + 1e-3, "{name}[{k}]: err {e}, step {step}");
                if e <= 0.5 * step * 1.01 + 1e-3 {
                    within_half += 1;
                }
            }
            assert!(
                within_half as f64 >= 0.97 * deq.len() as f64,
                "{name}: {within_half}/{}",
                deq.len()
            );
        }
    }

    // Refuses to overwrite a non-empty output.
    let e = quantize_model_dir(
        &input,
        &output,
        QuantSpec::new(4, 64).unwrap(),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("out") && e.contains("refusing to overwrite"),
        "{e}"
    );
    // Refuses an already quantised model.
    let out2 = root.join("out2");
    let e = quantize_model_dir(
        &output,
        &out2,
        QuantSpec::new(4, 64).unwrap(),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("already quantised"), "{e}");
    // An existing empty output folder is fine.
    let out3 = root.join("out3");
    std::fs::create_dir_all(&out3).unwrap();
    quantize_model_dir(
        &input,
        &out3,
        QuantSpec::new(2, 128).unwrap(),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(ModelFiles::open(&out3)
        .unwrap()
        .is_quantized("model.layers.0.mlp.down_proj"));
    let _ = std::fs::remove_dir_all(&root);
}
