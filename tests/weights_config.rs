//! config.json parsing for every supported architecture, RoPE variants and MLX quantisation.

use std::path::Path;

use fourierft::weights::config::RopeScaling;
use fourierft::weights::{Arch, ModelConfig, QuantSpec};

fn parse(s: &str) -> ModelConfig {
    ModelConfig::from_json_str(Path::new("/m/config.json"), s).unwrap_or_else(|e| panic!("{e}"))
}

fn err(s: &str) -> String {
    let e = ModelConfig::from_json_str(Path::new("/m/config.json"), s)
        .expect_err("expected an error")
        .to_string();
    assert!(
        e.contains("/m/config.json"),
        "message must name config.json: {e}"
    );
    e
}

const SMOLLM2: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
  "eos_token_id": 2, "head_dim": 64, "hidden_act": "silu", "hidden_size": 576,
  "intermediate_size": 1536, "max_position_embeddings": 8192, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pad_token_id": 2, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 100000,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 49152 }"#;

#[test]
fn llama_top_level_rope_theta() {
    let c = parse(SMOLLM2);
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(c.model_type, "llama");
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (576, 1536, 30)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (9, 3, 64)
    );
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.rope_theta, 100000.0);
    assert_eq!(c.rope_scaling, None);
    assert_eq!(c.rms_norm_eps, Some(1e-5));
    assert_eq!(c.layer_norm_eps, None);
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(c.tie_word_embeddings);
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
    assert_eq!(c.eos_token_id, Some(vec![2]));
    assert_eq!(c.pad_token_id, Some(2));
    assert!(c.quantization.is_none());
}

#[test]
fn defaults_when_keys_absent() {
    let c = parse(
        r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}"#,
    );
    assert_eq!(c.num_key_value_heads, 4);
    assert_eq!(c.head_dim, 16);
    assert_eq!(c.rope_theta, 10000.0);
    assert_eq!(c.rms_norm_eps, Some(1e-6));
    assert!(!c.tie_word_embeddings);
    assert_eq!(c.hidden_act, "silu");
}

#[test]
fn transformers5_rope_parameters() {
    let c = parse(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":64,"dtype":"float32",
        "rope_parameters":{"rope_theta":500000.0,"rope_type":"default"}}"#,
    );
    assert_eq!(c.rope_theta, 500000.0);
    assert_eq!(c.rope_scaling, None);
    assert_eq!(c.torch_dtype.as_deref(), Some("float32"));

    let c = parse(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":64,
        "rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":32.0,
          "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#,
    );
    assert_eq!(c.rope_theta, 500000.0);
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192
        })
    );
}

#[test]
fn llama3_rope_scaling_transformers4() {
    let c = parse(
        r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":8192,
        "num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,
        "rope_theta":500000.0,"max_position_embeddings":131072,
        "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
          "original_max_position_embeddings":8192,"rope_type":"llama3"}}"#,
    );
    assert_eq!(
        c.arch,
        Arch::Llama,
        "arch from architectures when model_type is absent"
    );
    assert_eq!(c.model_type, "llama");
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.rope_theta, 500000.0);
    match c.rope_scaling {
        Some(RopeScaling::Llama3 {
            factor,
            original_max_position_embeddings,
            ..
        }) => {
            assert_eq!(factor, 32.0);
            assert_eq!(original_max_position_embeddings, 8192);
        }
        other => panic!("{other:?}"),
    }
    let c = parse(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":64,"rope_scaling":{"type":"linear","factor":2.0}}"#,
    );
    assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
}

#[test]
fn unknown_rope_type_is_unsupported() {
    let e = err(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":64,"rope_scaling":{"rope_type":"yarn","factor":4.0}}"#,
    );
    assert!(
        e.contains("unsupported") && e.contains("rope_type 'yarn'"),
        "{e}"
    );
    let e = err(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":64,"rope_scaling":{"rope_type":"llama3","factor":4.0}}"#,
    );
    assert!(e.contains("rope_scaling.low_freq_factor"), "{e}");
}

#[test]
fn qwen2() {
    let c = parse(
        r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":896,"intermediate_size":4864,
        "max_position_embeddings":32768,"model_type":"qwen2","num_attention_heads":14,
        "num_hidden_layers":24,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
        "sliding_window":32768,"tie_word_embeddings":true,"torch_dtype":"bfloat16","vocab_size":151936,
        "eos_token_id":[151645,151643]}"#,
    );
    assert_eq!(c.arch, Arch::Qwen2);
    assert!(c.qkv_bias, "qwen2 always has q/k/v biases");
    assert!(!c.o_bias);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.rope_theta, 1e6);
    assert_eq!(c.eos_token_id, Some(vec![151645, 151643]));
    assert!(c.arch.is_llama_family());
}

#[test]
fn mistral() {
    let c = parse(
        r#"{"architectures":["MistralForCausalLM"],"hidden_size":4096,"intermediate_size":14336,
        "max_position_embeddings":32768,"model_type":"mistral","num_attention_heads":32,
        "num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":1000000.0,
        "sliding_window":null,"head_dim":null,"tie_word_embeddings":false,"vocab_size":32768}"#,
    );
    assert_eq!(c.arch, Arch::Mistral);
    assert_eq!(c.head_dim, 128, "null head_dim falls back to hidden/heads");
    assert_eq!(c.sliding_window, None);
    assert_eq!(c.num_key_value_heads, 8);
}

#[test]
fn bert() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_bert/config.json");
    let c = ModelConfig::from_file(&p).unwrap();
    assert_eq!(c.arch, Arch::Bert);
    assert_eq!(c.layer_norm_eps, Some(1e-12));
    assert_eq!(c.rms_norm_eps, None);
    assert_eq!(c.type_vocab_size, Some(2));
    assert_eq!(c.num_labels, Some(3));
    assert_eq!(
        c.id2label.as_deref(),
        Some(&["LABEL_0".to_string(), "LABEL_1".into(), "LABEL_2".into()][..])
    );
    assert_eq!(c.hidden_act, "gelu");
    assert_eq!(c.max_position_embeddings, 64);
    assert_eq!(c.bos_token_id, None, "null token ids are absent");
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias);
    assert_eq!(c.path, p);
    // num_labels without id2label
    let c = parse(
        r#"{"model_type":"bert","hidden_size":32,"intermediate_size":37,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,"num_labels":5}"#,
    );
    assert_eq!(c.num_labels, Some(5));
    assert_eq!(c.max_position_embeddings, 512);
    assert_eq!(c.type_vocab_size, Some(2));
}

#[test]
fn gpt2() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_gpt2/config.json");
    let c = ModelConfig::from_file(&p).unwrap();
    assert_eq!(c.arch, Arch::Gpt2);
    assert_eq!(
        (c.hidden_size, c.num_hidden_layers, c.num_attention_heads),
        (32, 2, 4)
    );
    assert_eq!(c.intermediate_size, 128, "n_inner null = 4*n_embd");
    assert_eq!(c.max_position_embeddings, 64);
    assert_eq!(c.layer_norm_eps, Some(1e-5));
    assert_eq!(c.hidden_act, "gelu_new");
    assert!(c.tie_word_embeddings);
    let c = parse(
        r#"{"model_type":"gpt2","n_embd":48,"n_layer":3,"n_head":6,"n_inner":100,"vocab_size":50257}"#,
    );
    assert_eq!(
        (c.intermediate_size, c.head_dim, c.max_position_embeddings),
        (100, 8, 1024)
    );
}

#[test]
fn quantization_with_overrides() {
    let c = parse(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":64,
        "quantization":{"group_size":64,"bits":4,"mode":"affine",
           "lm_head":{"group_size":32,"bits":8},
           "model.layers.0.mlp.down_proj":false}}"#,
    );
    let q = c.quantization.as_ref().unwrap();
    assert_eq!(
        q.default,
        QuantSpec {
            bits: 4,
            group_size: 64
        }
    );
    assert_eq!(
        q.for_module("lm_head"),
        Some(QuantSpec {
            bits: 8,
            group_size: 32
        })
    );
    assert_eq!(
        q.for_module("lm_head.weight"),
        Some(QuantSpec {
            bits: 8,
            group_size: 32
        })
    );
    assert_eq!(q.for_module("model.layers.0.mlp.down_proj"), None);
    assert_eq!(
        q.for_module("model.layers.1.mlp.down_proj"),
        Some(q.default)
    );
    assert_eq!(q.overrides.len(), 2);

    // quantization_config alone (as some converters write it) is read too.
    let c = parse(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":64,"quantization_config":{"group_size":32,"bits":8}}"#,
    );
    assert_eq!(
        c.quantization.unwrap().default,
        QuantSpec {
            bits: 8,
            group_size: 32
        }
    );
}

#[test]
fn quantization_errors() {
    let base = r#""model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":64"#;
    let e = err(&format!(
        r#"{{{base},"quantization":{{"group_size":32,"bits":4,"mode":"mxfp4"}}}}"#
    ));
    assert!(e.contains("unsupported") && e.contains("mxfp4"), "{e}");
    let e = err(&format!(
        r#"{{{base},"quantization":{{"group_size":32,"bits":7}}}}"#
    ));
    assert!(e.contains("bits must be one of"), "{e}");
    let e = err(&format!(r#"{{{base},"quantization":{{"bits":4}}}}"#));
    assert!(e.contains("'quantization' has no 'group_size'"), "{e}");
    let e = err(&format!(
        r#"{{{base},"quantization_config":{{"quant_method":"gptq"}}}}"#
    ));
    assert!(e.contains("gptq"), "{e}");
}

#[test]
fn malformed_configs() {
    let e = err(r#"{"model_type":"llama","hidden_size":32,"#);
    assert!(e.contains("invalid JSON"), "{e}");
    let e = err("[1]");
    assert!(e.contains("must be a JSON object"), "{e}");
    let e = err(
        r#"{"model_type":"llama","intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":64}"#,
    );
    assert!(e.contains("missing required key 'hidden_size'"), "{e}");
    let e = err(
        r#"{"model_type":"llama","hidden_size":"big","intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":64}"#,
    );
    assert!(
        e.contains("'hidden_size' must be a non-negative integer"),
        "{e}"
    );
    let e = err(r#"{"model_type":"t5","hidden_size":32}"#);
    assert!(
        e.contains("unsupported") && e.contains("model_type 't5'"),
        "{e}"
    );
    let e = err(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":64}"#,
    );
    assert!(e.contains("'num_key_value_heads' = 3 must divide"), "{e}");
    let e = err(
        r#"{"model_type":"llama","hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":64,"tie_word_embeddings":"yes"}"#,
    );
    assert!(
        e.contains("'tie_word_embeddings' must be true or false"),
        "{e}"
    );
    let e = ModelConfig::from_file(Path::new("/nonexistent/config.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/config.json"), "{e}");
}
