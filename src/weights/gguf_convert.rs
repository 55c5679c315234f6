//! Convert a llama-architecture GGUF file into an MLX-affine Hugging Face folder
//! (`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`), losslessly.
//!
//! Weights (ARCHITECTURE.md §3). GGUF's block formats are MLX affine groups of 32 along the
//! input dimension, so each block becomes one group with no rounding anywhere:
//! - Q4_0 `x = d·(q-8)`  → 4-bit, scale d, bias -8d;
//! - Q4_1 `x = d·q + m`  → 4-bit, scale d, bias m;
//! - Q5_0 `x = d·(q-16)` → 5-bit, scale d, bias -16d;
//! - Q5_1 `x = d·q + m`  → 5-bit, scale d, bias m;
//! - Q8_0 `x = d·q` (q signed) → 8-bit, code `q xor 0x80` (= q+128), scale d, bias -128d.
//!
//! d and m are f16 in the file. -8d, -16d and -128d are exact in f16 unless they overflow it
//! (|d| > 4095.9, 2047.9 or 511.98); a tensor with such a block keeps F32 scales and biases.
//! MLX's `scale·q + bias` in f32 then equals llama.cpp's dequantisation bit for bit: d·code
//! has at most 8+11 significant bits (exact in f32), and d·code + (-kd) = d·(code-k) is an
//! exactly representable result of adding two exact values; for Q4_1/Q5_1 both compute one
//! rounding of the exact d·q + m. (One harmless difference: where llama.cpp's `d·(q-8)` gives
//! -0.0, for q = 8 and d < 0, `d·q + (-8d)` gives +0.0.)
//! F32/F16/BF16 matrices are copied unchanged; 1-D tensors (norms, biases) are stored as F32.
//!
//! Names and layout: GGUF `ne` is innermost-first, so a `[ne0=in, ne1=out]` GGUF matrix is the
//! row-major `[out, in]` PyTorch weight. llama.cpp's converter permutes the rows of q_proj
//! and k_proj (and their biases) for its interleaved RoPE,
//! `w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2)`: HF row `h·hd + j·hd/2 + i` is GGUF row
//! `h·hd + 2i + j`. We undo it by moving whole rows; a quantised row moves with its scales and
//! biases because MLX groups run along the input dimension.
//!
//! Tokenizer: `tokenizer.ggml.model == "gpt2"` (byte-level BPE) is rebuilt as a Hugging Face
//! `tokenizer.json` with the pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre`. Other
//! tokenizer models (SentencePiece "llama", ...) are not rebuilt: the weights are still
//! converted, the report's `tokenizer_skipped` says why and no tokenizer.json is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

use super::gguf::{GgmlType, GgufFile, GgufTensorInfo};
use super::quant::QuantSpec;
use super::writer::{write_safetensors, OutTensor};

/// What [`convert_gguf`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    /// `general.architecture`.
    pub arch: String,
    pub tensors: usize,
    /// GGUF tensor type name → number of tensors.
    pub by_type: BTreeMap<String, usize>,
    /// Modules stored MLX-quantised.
    pub quantized: usize,
    /// Tensors kept in float.
    pub float: usize,
    /// Quantised tensors whose scales/biases needed F32 (an f16 overflow of -8d/-128d).
    pub f32_scales: Vec<String>,
    pub tie_word_embeddings: bool,
    /// `tokenizer.ggml.model` and `tokenizer.ggml.pre` when tokenizer.json was written.
    pub tokenizer: Option<String>,
    /// Why no tokenizer.json was written.
    pub tokenizer_skipped: Option<String>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub files: Vec<String>,
}

/// Hyper-parameters read from the GGUF metadata.
struct HParams {
    n_layer: usize,
    hidden: usize,
    ffn: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    ctx: usize,
    eps: f64,
    rope_theta: f64,
    rope_scaling: Option<Value>,
}

fn read_hparams(g: &GgufFile, arch: &str) -> Result<HParams> {
    let path = g.path();
    let req = |k: &str| -> Result<usize> {
        g.get_usize(&format!("{arch}.{k}"))?
            .ok_or_else(|| Error::format(path, format!("GGUF metadata '{arch}.{k}' is missing")))
    };
    let n_layer = req("block_count")?;
    let hidden = req("embedding_length")?;
    let ffn = req("feed_forward_length")?;
    let n_head = req("attention.head_count")?;
    let n_head_kv = g
        .get_usize(&format!("{arch}.attention.head_count_kv"))?
        .unwrap_or(n_head);
    if hidden == 0 || n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
        return Err(Error::format(
            path,
            format!("GGUF metadata: embedding_length {hidden}, head_count {n_head}, head_count_kv {n_head_kv} do not describe an attention layout"),
        ));
    }
    let head_dim = match g.get_usize(&format!("{arch}.attention.key_length"))? {
        Some(h) => h,
        None => {
            if hidden % n_head != 0 {
                return Err(Error::format(
                    path,
                    format!("GGUF metadata: embedding_length {hidden} is not divisible by head_count {n_head} and there is no attention.key_length"),
                ));
            }
            hidden / n_head
        }
    };
    let ctx = g
        .get_usize(&format!("{arch}.context_length"))?
        .unwrap_or(2048);
    // The f32 value as its shortest decimal (9.999999747e-6 → 1e-5): the same f32 either way.
    let eps = match g.get(&format!("{arch}.attention.layer_norm_rms_epsilon")) {
        Some(super::gguf::GgufValue::F32(v)) => format!("{v}").parse().unwrap_or(*v as f64),
        Some(_) => g
            .get_f64(&format!("{arch}.attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        None => 1e-5,
    };
    let rope_theta = match g.get(&format!("{arch}.rope.freq_base")) {
        Some(super::gguf::GgufValue::F32(v)) => format!("{v}").parse().unwrap_or(*v as f64),
        _ => g
            .get_f64(&format!("{arch}.rope.freq_base"))?
            .unwrap_or(10000.0),
    };
    let rope_scaling = match g.get_str(&format!("{arch}.rope.scaling.type"))? {
        None | Some("none") => None,
        Some("linear") => {
            let f = g
                .get_f64(&format!("{arch}.rope.scaling.factor"))?
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!("GGUF metadata: linear RoPE scaling without '{arch}.rope.scaling.factor'"),
                    )
                })?;
            if f == 1.0 {
                None
            } else {
                Some(json!({"rope_type": "linear", "type": "linear", "factor": f}))
            }
        }
        Some(other) => {
            return Err(Error::unsupported(
                path,
                format!("RoPE scaling type '{other}' in '{arch}.rope.scaling.type'; supported: none, linear"),
            ))
        }
    };
    if let Some(rd) = g.get_usize(&format!("{arch}.rope.dimension_count"))? {
        if rd != head_dim {
            return Err(Error::unsupported(
                path,
                format!(
                    "partial rotary embeddings (rope.dimension_count {rd} ≠ head dim {head_dim})"
                ),
            ));
        }
    }
    Ok(HParams {
        n_layer,
        hidden,
        ffn,
        n_head,
        n_head_kv,
        head_dim,
        ctx,
        eps,
        rope_theta,
        rope_scaling,
    })
}

/// The Hugging Face name of a GGUF llama tensor, and the head count whose RoPE row
/// permutation must be undone (q: n_head, k: n_head_kv).
fn hf_name(g: &GgufFile, name: &str, hp: &HParams) -> Result<(String, Option<usize>)> {
    let unsupported = |why: &str| Error::unsupported(g.path(), format!("tensor '{name}': {why}"));
    match name {
        "token_embd.weight" => return Ok(("model.embed_tokens.weight".into(), None)),
        "output_norm.weight" => return Ok(("model.norm.weight".into(), None)),
        "output.weight" => return Ok(("lm_head.weight".into(), None)),
        "rope_freqs.weight" => {
            return Err(unsupported(
                "Llama 3.1-style RoPE frequency factors are not supported by the converter",
            ))
        }
        _ => {}
    }
    let rest = name
        .strip_prefix("blk.")
        .ok_or_else(|| unsupported("not a llama tensor this converter knows"))?;
    let (layer, rest) = rest
        .split_once('.')
        .ok_or_else(|| unsupported("not a llama tensor this converter knows"))?;
    let layer: usize = layer
        .parse()
        .map_err(|_| unsupported("not a llama tensor this converter knows"))?;
    if layer >= hp.n_layer {
        return Err(Error::format(
            g.path(),
            format!(
                "tensor '{name}': layer {layer} but the model has {} blocks",
                hp.n_layer
            ),
        ));
    }
    let (part, suffix) = rest
        .rsplit_once('.')
        .ok_or_else(|| unsupported("not a llama tensor this converter knows"))?;
    if suffix != "weight" && suffix != "bias" {
        return Err(unsupported("not a llama tensor this converter knows"));
    }
    let (module, perm) = match part {
        "attn_q" => ("self_attn.q_proj", Some(hp.n_head)),
        "attn_k" => ("self_attn.k_proj", Some(hp.n_head_kv)),
        "attn_v" => ("self_attn.v_proj", None),
        "attn_output" => ("self_attn.o_proj", None),
        "ffn_gate" => ("mlp.gate_proj", None),
        "ffn_up" => ("mlp.up_proj", None),
        "ffn_down" => ("mlp.down_proj", None),
        "attn_norm" => ("input_layernorm", None),
        "ffn_norm" => ("post_attention_layernorm", None),
        _ => return Err(unsupported("not a llama tensor this converter knows")),
    };
    Ok((format!("model.layers.{layer}.{module}.{suffix}"), perm))
}

/// GGUF row holding HF row `r` of a q/k projection with `heads` heads of `hd` rows.
fn gguf_row(r: usize, hd: usize) -> usize {
    let (h, w) = (r / hd, r % hd);
    let half = hd / 2;
    let (j, i) = (w / half, w % half);
    h * hd + 2 * i + j
}

/// For each HF row, the GGUF row it comes from.
fn row_order(
    g: &GgufFile,
    t: &GgufTensorInfo,
    rows: usize,
    heads: Option<usize>,
) -> Result<Vec<usize>> {
    let Some(heads) = heads else {
        return Ok((0..rows).collect());
    };
    if heads == 0 || rows % heads != 0 || (rows / heads) % 2 != 0 {
        return Err(Error::tensor(
            g.path(),
            &t.name,
            format!("a row count that splits into {heads} heads of even size (to undo llama.cpp's RoPE permutation)"),
            format!("{rows} rows"),
        ));
    }
    let hd = rows / heads;
    Ok((0..rows).map(|r| gguf_row(r, hd)).collect())
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Decode one 32-element block into codes (0..2^bits) and the group's (scale, bias).
fn decode_block(ty: GgmlType, b: &[u8], codes: &mut [u8; 32]) -> (u32, f32, f32) {
    match ty {
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                codes[j] = b[2 + j] & 0x0f;
                codes[j + 16] = b[2 + j] >> 4;
            }
            (4, d, -8.0 * d)
        }
        GgmlType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                codes[j] = b[4 + j] & 0x0f;
                codes[j + 16] = b[4 + j] >> 4;
            }
            (4, d, m)
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let q1 = ty == GgmlType::Q5_1;
            let d = f16_at(b, 0);
            let at = if q1 { 4 } else { 2 };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let qs = &b[at + 4..at + 20];
            for j in 0..16 {
                let h0 = ((qh >> j) & 1) as u8;
                let h1 = ((qh >> (j + 16)) & 1) as u8;
                codes[j] = (qs[j] & 0x0f) | (h0 << 4);
                codes[j + 16] = (qs[j] >> 4) | (h1 << 4);
            }
            if q1 {
                (5, d, f16_at(b, 2))
            } else {
                (5, d, -16.0 * d)
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                codes[j] = b[2 + j] ^ 0x80;
            }
            (8, d, -128.0 * d)
        }
        _ => unreachable!("decode_block called for {ty}"),
    }
}

fn is_block_quant(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0
    )
}

/// One converted tensor (or the three of a quantised module).
struct Converted {
    tensors: Vec<OutTensor>,
    spec: Option<QuantSpec>,
    f32_scales: bool,
}

fn convert_quantized(
    g: &GgufFile,
    t: &GgufTensorInfo,
    hf: &str,
    heads: Option<usize>,
) -> Result<Converted> {
    if t.dims.len() != 2 {
        return Err(Error::unsupported(
            g.path(),
            format!(
                "tensor '{}': {} with {} dimensions; only 2-D quantised matrices are converted",
                t.name,
                t.ggml_type,
                t.dims.len()
            ),
        ));
    }
    let data = g.tensor_data(t)?;
    let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
    let (_, block_bytes) = t.ggml_type.block().unwrap_or((32, 0));
    let block_bytes = block_bytes as usize;
    let groups = cols / 32;
    let row_bytes = groups * block_bytes;
    let order = row_order(g, t, rows, heads)?;
    let bits: u32 = match t.ggml_type {
        GgmlType::Q8_0 => 8,
        GgmlType::Q5_0 | GgmlType::Q5_1 => 5,
        _ => 4,
    };
    let spec = QuantSpec {
        bits,
        group_size: 32,
    };
    let words_per_group = bits as usize; // 32 codes × bits / 32
    let mut words = vec![0u32; rows * groups * words_per_group];
    let mut scales = vec![0f32; rows * groups];
    let mut biases = vec![0f32; rows * groups];
    let mut codes = [0u8; 32];
    for (r, &src) in order.iter().enumerate() {
        let row = &data[src * row_bytes..(src + 1) * row_bytes];
        for (gi, blk) in row.chunks_exact(block_bytes).enumerate() {
            let (_, s, b) = decode_block(t.ggml_type, blk, &mut codes);
            scales[r * groups + gi] = s;
            biases[r * groups + gi] = b;
            let w = &mut words[(r * groups + gi) * words_per_group..][..words_per_group];
            for (k, &q) in codes.iter().enumerate() {
                let p = k * bits as usize;
                let (wi, off) = (p / 32, (p % 32) as u32);
                w[wi] |= (q as u32) << off;
                if off + bits > 32 {
                    w[wi + 1] |= (q as u32) >> (32 - off);
                }
            }
        }
    }
    let exact_f16 = |x: &f32| {
        let h = half::f16::from_f32(*x).to_f32();
        h == *x || (h.is_nan() && x.is_nan())
    };
    let f32_scales = !(scales.iter().all(exact_f16) && biases.iter().all(exact_f16));
    let module = hf.strip_suffix(".weight").unwrap_or(hf);
    let packed = groups * words_per_group;
    let mut tensors = vec![OutTensor::u32(hf.to_string(), vec![rows, packed], &words)];
    for (suffix, v) in [("scales", &scales), ("biases", &biases)] {
        let name = format!("{module}.{suffix}");
        tensors.push(if f32_scales {
            OutTensor::f32(name, vec![rows, groups], v)
        } else {
            let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            OutTensor::f16(name, vec![rows, groups], &h)
        });
    }
    Ok(Converted {
        tensors,
        spec: Some(spec),
        f32_scales,
    })
}

fn convert_float(
    g: &GgufFile,
    t: &GgufTensorInfo,
    hf: &str,
    heads: Option<usize>,
) -> Result<Converted> {
    use safetensors::Dtype;
    let data = g.tensor_data(t)?;
    let (dtype, esize) = match t.ggml_type {
        GgmlType::F32 => (Dtype::F32, 4),
        GgmlType::F16 => (Dtype::F16, 2),
        _ => (Dtype::BF16, 2),
    };
    match t.dims.len() {
        1 => {
            // Norm weights and biases: F32 (exact from F16/BF16).
            let n = t.dims[0] as usize;
            let vals: Vec<f32> = data
                .chunks_exact(esize)
                .map(|c| match t.ggml_type {
                    GgmlType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    GgmlType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
                    _ => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
                })
                .collect();
            let order = row_order(g, t, n, heads)?;
            let vals: Vec<f32> = order.iter().map(|&i| vals[i]).collect();
            Ok(Converted {
                tensors: vec![OutTensor::f32(hf.to_string(), vec![n], &vals)],
                spec: None,
                f32_scales: false,
            })
        }
        2 => {
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            let rb = cols * esize;
            let order = row_order(g, t, rows, heads)?;
            let mut out = Vec::with_capacity(data.len());
            for &src in &order {
                out.extend_from_slice(&data[src * rb..(src + 1) * rb]);
            }
            Ok(Converted {
                tensors: vec![OutTensor {
                    name: hf.to_string(),
                    dtype,
                    shape: vec![rows, cols],
                    data: out,
                }],
                spec: None,
                f32_scales: false,
            })
        }
        n => Err(Error::unsupported(
            g.path(),
            format!(
                "tensor '{}': {n}-D {} tensors are not converted",
                t.name, t.ggml_type
            ),
        )),
    }
}

fn convert_tensor(
    g: &GgufFile,
    t: &GgufTensorInfo,
    hf: &str,
    heads: Option<usize>,
) -> Result<Converted> {
    match t.ggml_type {
        ty if is_block_quant(ty) => convert_quantized(g, t, hf, heads),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => convert_float(g, t, hf, heads),
        ty => Err(Error::unsupported(
            g.path(),
            format!(
                "tensor '{}' is {ty}; the converter handles Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16 and F32 (re-quantise the model with llama-quantize, e.g. to Q4_0 or Q8_0)",
                t.name
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Tokenizer

const GPT2_TYPE_CONTROL: i64 = 3;
const GPT2_TYPE_USER_DEFINED: i64 = 4;

/// llama.cpp's LLAMA3 split (tokenizer.json spelling, case-insensitive contractions).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's QWEN2 split (single digits).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split_then_bytes(re: &str) -> Value {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
        byte_level(false),
    ]})
}

/// The pre-tokenizer for `tokenizer.ggml.pre`, whether merges are ignored for whole-word
/// vocabulary hits (llama.cpp `ignore_merges`), and the default of add_bos.
fn pre_tokenizer(pre: &str) -> Option<(Value, bool, bool)> {
    Some(match pre {
        // GPT-2's regex, applied by ByteLevel itself.
        "gpt2" | "mpt" | "olmo" | "jais" => (byte_level(true), false, false),
        // Single digits first, then GPT-2's regex (llama.cpp: "\p{N}" then the GPT-2 regex).
        "smollm" | "starcoder" | "refact" | "codeshell" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]}),
            false,
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" => (split_then_bytes(LLAMA3_SPLIT), true, true),
        "falcon3" | "pixtral" | "smaug-bpe" => (split_then_bytes(LLAMA3_SPLIT), false, false),
        "qwen2" | "deepseek-r1-qwen" => (split_then_bytes(QWEN2_SPLIT), false, false),
        _ => return None,
    })
}

const SUPPORTED_PRE: &str = "gpt2, mpt, olmo, jais, smollm, starcoder, refact, codeshell, llama3, llama-v3, llama-bpe, falcon3, pixtral, smaug-bpe, qwen2, deepseek-r1-qwen";

/// `tokenizer.json`, `tokenizer_config.json` and a description, for a byte-level BPE GGUF.
fn build_tokenizer(g: &GgufFile, ctx: usize, n_embd_rows: usize) -> Result<(Value, Value, String)> {
    let path = g.path();
    let model = g.get_str("tokenizer.ggml.model")?.ok_or_else(|| {
        Error::unsupported(
            path,
            "no 'tokenizer.ggml.model': the file carries no tokenizer",
        )
    })?;
    if model != "gpt2" {
        return Err(Error::unsupported(
            path,
            format!("tokenizer model '{model}' (only byte-level BPE, \"gpt2\", is rebuilt as tokenizer.json)"),
        ));
    }
    let pre = g.get_str("tokenizer.ggml.pre")?.unwrap_or("gpt2");
    let (pre_tok, ignore_merges, default_bos) = pre_tokenizer(pre).ok_or_else(|| {
        Error::unsupported(
            path,
            format!("tokenizer.ggml.pre '{pre}'; supported: {SUPPORTED_PRE}"),
        )
    })?;
    let tokens = g
        .get_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| Error::format(path, "GGUF metadata 'tokenizer.ggml.tokens' is missing"))?;
    if tokens.len() > n_embd_rows {
        return Err(Error::format(
            path,
            format!(
                "GGUF metadata: {} tokens but token_embd.weight has only {n_embd_rows} rows",
                tokens.len()
            ),
        ));
    }
    let types = g.get_i64_array("tokenizer.ggml.token_type")?;
    if let Some(ty) = &types {
        if ty.len() != tokens.len() {
            return Err(Error::format(
                path,
                format!(
                    "GGUF metadata: 'tokenizer.ggml.token_type' has {} entries, 'tokenizer.ggml.tokens' {}",
                    ty.len(),
                    tokens.len()
                ),
            ));
        }
    }
    let merges = g.get_str_array("tokenizer.ggml.merges")?.ok_or_else(|| {
        Error::format(
            path,
            "GGUF metadata 'tokenizer.ggml.merges' is missing (needed for BPE)",
        )
    })?;

    let mut vocab = Map::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        // A repeated spelling keeps its first id (a JSON vocabulary maps text to one id).
        if !vocab.contains_key(*t) {
            vocab.insert(t.to_string(), json!(i));
        }
    }
    let mut merge_pairs = Vec::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        // llama.cpp splits at the first space after the first byte.
        let pos = m
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(p, _)| p);
        let Some(pos) = pos else {
            return Err(Error::format(
                path,
                format!("GGUF metadata: merge {i} \"{m}\" is not two tokens separated by a space"),
            ));
        };
        let (a, b) = (&m[..pos], &m[pos + 1..]);
        for part in [a, b, &format!("{a}{b}")] {
            if !vocab.contains_key(part) {
                return Err(Error::format(
                    path,
                    format!("GGUF metadata: merge {i} \"{m}\" uses or makes \"{part}\", which is not in the vocabulary"),
                ));
            }
        }
        merge_pairs.push(json!([a, b]));
    }

    let id_of = |key: &str| -> Result<Option<(u32, String)>> {
        match g.get_u64(key)? {
            None => Ok(None),
            Some(id) => {
                let t = usize::try_from(id)
                    .ok()
                    .and_then(|i| tokens.get(i))
                    .ok_or_else(|| {
                        Error::format(
                            path,
                            format!(
                                "GGUF metadata '{key}' = {id} is outside the vocabulary of {}",
                                tokens.len()
                            ),
                        )
                    })?;
                Ok(Some((id as u32, t.to_string())))
            }
        }
    };
    let bos = id_of("tokenizer.ggml.bos_token_id")?;
    let eos = id_of("tokenizer.ggml.eos_token_id")?;
    let unk = id_of("tokenizer.ggml.unknown_token_id")?;
    let pad = id_of("tokenizer.ggml.padding_token_id")?;
    let add_bos = g
        .get_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(default_bos)
        && bos.is_some();
    let add_eos = g.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false) && eos.is_some();

    let mut added = Vec::new();
    if let Some(ty) = &types {
        for (i, (&t, &tt)) in tokens.iter().zip(ty).enumerate() {
            if tt == GPT2_TYPE_CONTROL || tt == GPT2_TYPE_USER_DEFINED {
                added.push(json!({
                    "id": i, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": tt == GPT2_TYPE_CONTROL,
                }));
            }
        }
    }

    let post = if add_bos || add_eos {
        let piece = |t: &(u32, String)| json!({"SpecialToken": {"id": t.1, "type_id": 0}});
        let seq = |s: &str| json!({"Sequence": {"id": s, "type_id": 0}});
        let mut single = Vec::new();
        let mut pair = Vec::new();
        let mut specials = Map::new();
        if let (true, Some(b)) = (add_bos, &bos) {
            single.push(piece(b));
            specials.insert(
                b.1.clone(),
                json!({"id": b.1, "ids": [b.0], "tokens": [b.1]}),
            );
        }
        single.push(seq("A"));
        pair.extend(single.iter().cloned());
        if let (true, Some(e)) = (add_eos, &eos) {
            single.push(piece(e));
            pair.push(piece(e));
            specials.insert(
                e.1.clone(),
                json!({"id": e.1, "ids": [e.0], "tokens": [e.1]}),
            );
        }
        if let (true, Some(b)) = (add_bos, &bos) {
            pair.push(piece(b));
        }
        pair.push(seq("B"));
        if let (true, Some(e)) = (add_eos, &eos) {
            pair.push(piece(e));
        }
        json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
    } else {
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
    };

    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tok,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merge_pairs,
        },
    });

    let mut cfg = Map::new();
    cfg.insert("add_bos_token".into(), json!(add_bos));
    cfg.insert("add_eos_token".into(), json!(add_eos));
    for (k, v) in [
        ("bos_token", &bos),
        ("eos_token", &eos),
        ("unk_token", &unk),
        ("pad_token", &pad),
    ] {
        cfg.insert(
            k.into(),
            v.as_ref().map(|t| json!(t.1)).unwrap_or(Value::Null),
        );
    }
    if let Some(t) = g.get_str("tokenizer.chat_template")? {
        cfg.insert("chat_template".into(), json!(t));
    }
    cfg.insert("clean_up_tokenization_spaces".into(), json!(false));
    cfg.insert("model_max_length".into(), json!(ctx));
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    Ok((
        tokenizer,
        Value::Object(cfg),
        format!("{model} (pre '{pre}')"),
    ))
}

// ---------------------------------------------------------------------------------------

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::json(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// Convert the llama-architecture GGUF `input` into an MLX-affine Hugging Face folder
/// `output` (which must not exist, or be an empty folder). `progress(done, total)` is called
/// after each tensor. The folder is staged next to `output` and renamed at the end.
pub fn convert_gguf(
    input: &Path,
    output: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ConvertReport> {
    if output.exists() {
        let empty_dir = output.is_dir()
            && std::fs::read_dir(output)
                .map_err(|e| Error::io(output, e))?
                .next()
                .is_none();
        if !empty_dir {
            return Err(Error::config(
                output,
                "output already exists and is not an empty folder; refusing to overwrite it",
            ));
        }
    }
    let g = GgufFile::open(input)?;
    let path = g.path();
    let arch = g
        .get_str("general.architecture")?
        .ok_or_else(|| Error::format(path, "GGUF metadata 'general.architecture' is missing"))?
        .to_string();
    if arch != "llama" {
        return Err(Error::unsupported(
            path,
            format!("architecture '{arch}'; the GGUF converter handles 'llama'"),
        ));
    }
    let hp = read_hparams(&g, &arch)?;

    // Map every name first so an unknown tensor fails before any work.
    let mut plan = Vec::with_capacity(g.tensors().len());
    let mut seen = HashSet::new();
    for t in g.tensors() {
        let (hf, heads) = hf_name(&g, &t.name, &hp)?;
        if !seen.insert(hf.clone()) {
            return Err(Error::format(path, format!("two tensors map to '{hf}'")));
        }
        plan.push((t, hf, heads));
    }
    let embed = g
        .tensor_info("token_embd.weight")
        .ok_or_else(|| Error::missing_tensor(path, "token_embd.weight"))?;
    if embed.dims.len() != 2 || embed.dims[0] as usize != hp.hidden {
        return Err(Error::tensor(
            path,
            "token_embd.weight",
            format!("GGUF dims [{}, vocab]", hp.hidden),
            format!("{:?}", embed.dims),
        ));
    }
    let vocab_size = embed.dims[1] as usize;
    let tie = g.tensor_info("output.weight").is_none();

    let mut report = ConvertReport {
        arch: arch.clone(),
        tensors: plan.len(),
        by_type: BTreeMap::new(),
        quantized: 0,
        float: 0,
        f32_scales: Vec::new(),
        tie_word_embeddings: tie,
        tokenizer: None,
        tokenizer_skipped: None,
        input_bytes: g.file_size(),
        output_bytes: 0,
        files: Vec::new(),
    };

    let total = plan.len();
    let mut out = Vec::with_capacity(total + 2 * total);
    let mut specs: Vec<(String, QuantSpec)> = Vec::new();
    let mut float_linears = Vec::new();
    for (i, (t, hf, heads)) in plan.iter().enumerate() {
        *report.by_type.entry(t.ggml_type.name()).or_insert(0) += 1;
        let c = convert_tensor(&g, t, hf, *heads)?;
        let module = hf.strip_suffix(".weight").unwrap_or(hf).to_string();
        match c.spec {
            Some(s) => {
                report.quantized += 1;
                if c.f32_scales {
                    report.f32_scales.push(module.clone());
                }
                specs.push((module, s));
            }
            None => {
                report.float += 1;
                if t.dims.len() == 2 && hf.ends_with(".weight") {
                    float_linears.push(module);
                }
            }
        }
        out.extend(c.tensors);
        progress(i + 1, total);
    }

    // config.json
    let mut cfg = Map::new();
    cfg.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    cfg.insert("model_type".into(), json!("llama"));
    cfg.insert("hidden_size".into(), json!(hp.hidden));
    cfg.insert("intermediate_size".into(), json!(hp.ffn));
    cfg.insert("num_hidden_layers".into(), json!(hp.n_layer));
    cfg.insert("num_attention_heads".into(), json!(hp.n_head));
    cfg.insert("num_key_value_heads".into(), json!(hp.n_head_kv));
    cfg.insert("head_dim".into(), json!(hp.head_dim));
    cfg.insert("hidden_act".into(), json!("silu"));
    cfg.insert("rms_norm_eps".into(), json!(hp.eps));
    cfg.insert("rope_theta".into(), json!(hp.rope_theta));
    if let Some(s) = &hp.rope_scaling {
        cfg.insert("rope_scaling".into(), s.clone());
    }
    cfg.insert("max_position_embeddings".into(), json!(hp.ctx));
    cfg.insert("vocab_size".into(), json!(vocab_size));
    cfg.insert("tie_word_embeddings".into(), json!(tie));
    let has_bias = |suffix: &str| {
        (0..hp.n_layer).any(|l| g.tensor_info(&format!("blk.{l}.{suffix}.bias")).is_some())
    };
    cfg.insert("attention_bias".into(), json!(has_bias("attn_q")));
    cfg.insert("mlp_bias".into(), json!(has_bias("ffn_up")));
    for (k, key) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(v) = g.get_u64(key)? {
            cfg.insert(k.into(), json!(v));
        }
    }
    let dtype = if embed.ggml_type == GgmlType::F32 {
        "float32"
    } else if embed.ggml_type == GgmlType::BF16 {
        "bfloat16"
    } else {
        "float16"
    };
    cfg.insert("torch_dtype".into(), json!(dtype));
    if !specs.is_empty() {
        // Default = the most common spec (ties: fewer bits); the rest are per-module overrides.
        let mut counts: HashMap<QuantSpec, usize> = HashMap::new();
        for (_, s) in &specs {
            *counts.entry(*s).or_insert(0) += 1;
        }
        let default = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.bits.cmp(&a.0.bits)))
            .map(|(s, _)| *s)
            .unwrap_or(QuantSpec {
                bits: 4,
                group_size: 32,
            });
        let mut q = Map::new();
        q.insert("group_size".into(), json!(default.group_size));
        q.insert("bits".into(), json!(default.bits));
        q.insert("mode".into(), json!("affine"));
        for (m, s) in &specs {
            if *s != default {
                q.insert(
                    m.clone(),
                    json!({"group_size": s.group_size, "bits": s.bits}),
                );
            }
        }
        for m in &float_linears {
            q.insert(m.clone(), json!(false));
        }
        cfg.insert("quantization".into(), Value::Object(q.clone()));
        cfg.insert("quantization_config".into(), Value::Object(q));
    }

    let tokenizer = match build_tokenizer(&g, hp.ctx, vocab_size) {
        Ok(t) => Some(t),
        Err(e @ Error::Unsupported { .. }) => {
            report.tokenizer_skipped = Some(e.to_string());
            None
        }
        Err(e) => return Err(e),
    };

    // Stage everything in a sibling folder, then rename.
    let tmp = super::writer::staging_dir(output)?;
    let result = (|| -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), "mlx".to_string());
        write_safetensors(&tmp.join("model.safetensors"), &out, Some(meta))?;
        report.output_bytes = out.iter().map(|t| t.data.len() as u64).sum();
        drop(std::mem::take(&mut out));
        report.files.push("model.safetensors".into());
        write_json(&tmp.join("config.json"), &Value::Object(cfg))?;
        report.files.push("config.json".into());
        let mut gen = Map::new();
        for (k, key) in [
            ("bos_token_id", "tokenizer.ggml.bos_token_id"),
            ("eos_token_id", "tokenizer.ggml.eos_token_id"),
            ("pad_token_id", "tokenizer.ggml.padding_token_id"),
        ] {
            if let Some(v) = g.get_u64(key)? {
                gen.insert(k.into(), json!(v));
            }
        }
        write_json(&tmp.join("generation_config.json"), &Value::Object(gen))?;
        report.files.push("generation_config.json".into());
        if let Some((tok, tok_cfg, what)) = &tokenizer {
            write_json(&tmp.join("tokenizer.json"), tok)?;
            write_json(&tmp.join("tokenizer_config.json"), tok_cfg)?;
            report.files.push("tokenizer.json".into());
            report.files.push("tokenizer_config.json".into());
            report.tokenizer = Some(what.clone());
        }
        Ok(())
    })();
    super::writer::publish_staged(&tmp, output, result)?;
    Ok(report)
}
