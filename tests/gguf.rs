//! GGUF reading and the GGUF → MLX-affine converter.
//!
//! - A tiny llama GGUF is built byte by byte here (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16, F32
//!   tensors with seeded contents), converted, and every weight of the output is checked
//!   bit-for-bit against llama.cpp's dequantisation formulas, written out again below, with
//!   llama.cpp's q/k row permutation undone by replaying its reshape/swapaxes on row indices.
//! - Truncated and lying files give errors naming the file, never a panic.
//! - With the real SmolLM2-135M-Instruct Q4_1 GGUF (`FOURIERFT_SMOLLM2_GGUF`, fetched by
//!   `.ci/run`): the converted folder opens with `ModelFiles`, its weights equal transformers'
//!   dequantised float32 values (tests/fixtures/smollm2/weights.safetensors) exactly, and its
//!   tokenizer.json gives transformers' ids for every case in tokenizer_cases.json.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use fourierft::weights::gguf::{GgmlType, GgufFile, GgufValue};
use fourierft::weights::gguf_convert::convert_gguf;
use fourierft::weights::{DType, ModelFiles, SafeTensorsFile};
use fourierft::Error;

// ---------------------------------------------------------------------------------------
// A GGUF writer for tests.

const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;

fn gstr(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

#[derive(Clone)]
struct Gguf {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, u32, Vec<u8>)>,
    /// name, ne (innermost first), ggml type, data
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl Gguf {
    fn new() -> Self {
        Gguf {
            version: 3,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }
    fn kv(&mut self, k: &str, ty: u32, v: Vec<u8>) -> &mut Self {
        self.kvs.push((k.to_string(), ty, v));
        self
    }
    fn u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.kv(k, T_U32, v.to_le_bytes().to_vec())
    }
    fn f32(&mut self, k: &str, v: f32) -> &mut Self {
        self.kv(k, T_F32, v.to_le_bytes().to_vec())
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.kv(k, T_BOOL, vec![v as u8])
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let mut b = Vec::new();
        gstr(&mut b, v);
        self.kv(k, T_STRING, b)
    }
    fn strs(&mut self, k: &str, v: &[&str]) -> &mut Self {
        let mut b = T_STRING.to_le_bytes().to_vec();
        b.extend((v.len() as u64).to_le_bytes());
        for s in v {
            gstr(&mut b, s);
        }
        self.kv(k, T_ARRAY, b)
    }
    fn i32s(&mut self, k: &str, v: &[i32]) -> &mut Self {
        let mut b = T_I32.to_le_bytes().to_vec();
        b.extend((v.len() as u64).to_le_bytes());
        for x in v {
            b.extend(x.to_le_bytes());
        }
        self.kv(k, T_ARRAY, b)
    }
    fn tensor(&mut self, name: &str, ne: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors
            .push((name.to_string(), ne.to_vec(), ty.0, data));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, t, v) in &self.kvs {
            gstr(&mut out, k);
            out.extend(t.to_le_bytes());
            out.extend(v);
        }
        let a = self.alignment as usize;
        let mut off = 0usize;
        for (name, ne, ty, data) in &self.tensors {
            gstr(&mut out, name);
            out.extend((ne.len() as u32).to_le_bytes());
            for d in ne {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend((off as u64).to_le_bytes());
            off += data.len().div_ceil(a) * a;
        }
        while out.len() % a != 0 {
            out.push(0);
        }
        for (_, _, _, data) in &self.tensors {
            out.extend(data);
            while out.len() % a != 0 {
                out.push(0);
            }
        }
        out
    }

    fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.bytes()).expect("write gguf");
        path.to_path_buf()
    }
}

// ---------------------------------------------------------------------------------------
// Seeded block contents and llama.cpp's dequantisation (ggml-quants.c, written out here).

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// A finite f16 in about ±`scale`.
    fn f16(&mut self, scale: f32) -> [u8; 2] {
        let u = (self.next() % 2001) as f32 / 1000.0 - 1.0;
        half::f16::from_f32(u * scale).to_le_bytes()
    }
}

fn block_bytes(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_0 => 18,
        GgmlType::Q4_1 => 20,
        GgmlType::Q5_0 => 22,
        GgmlType::Q5_1 => 24,
        GgmlType::Q8_0 => 34,
        _ => unreachable!(),
    }
}

/// Random quantised data for a `[rows, cols]` matrix; `big_d` puts d = 1000 in the first block.
fn random_quant(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, big_d: bool) -> Vec<u8> {
    let nb = rows * cols / 32;
    let bs = block_bytes(ty);
    let mut out = Vec::with_capacity(nb * bs);
    for b in 0..nb {
        let d = if big_d && b == 0 {
            half::f16::from_f32(1000.0).to_le_bytes()
        } else {
            rng.f16(0.05)
        };
        out.extend(d);
        if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            out.extend(rng.f16(0.2));
        }
        for _ in 0..bs - out.len() % bs {
            out.push(rng.byte());
        }
        if out.len() % bs != 0 {
            unreachable!()
        }
    }
    out
}

fn f16v(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// llama.cpp `dequantize_row_*` for a whole tensor (rows in GGUF order).
fn ggml_dequant(ty: GgmlType, data: &[u8]) -> Vec<f32> {
    let mut y = Vec::new();
    for x in data.chunks_exact(block_bytes(ty)) {
        let mut v = [0f32; 32];
        match ty {
            GgmlType::Q4_0 => {
                let d = f16v(x);
                for j in 0..16 {
                    let x0 = (x[2 + j] & 0x0F) as i32 - 8;
                    let x1 = (x[2 + j] >> 4) as i32 - 8;
                    v[j] = x0 as f32 * d;
                    v[j + 16] = x1 as f32 * d;
                }
            }
            GgmlType::Q4_1 => {
                let (d, m) = (f16v(x), f16v(&x[2..]));
                for j in 0..16 {
                    v[j] = (x[4 + j] & 0x0F) as f32 * d + m;
                    v[j + 16] = (x[4 + j] >> 4) as f32 * d + m;
                }
            }
            GgmlType::Q5_0 => {
                let d = f16v(x);
                let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
                for j in 0..16 {
                    let xh0 = (((qh >> j) << 4) & 0x10) as u8;
                    let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
                    let x0 = ((x[6 + j] & 0x0F) | xh0) as i32 - 16;
                    let x1 = ((x[6 + j] >> 4) | xh1) as i32 - 16;
                    v[j] = x0 as f32 * d;
                    v[j + 16] = x1 as f32 * d;
                }
            }
            GgmlType::Q5_1 => {
                let (d, m) = (f16v(x), f16v(&x[2..]));
                let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
                for j in 0..16 {
                    let xh0 = (((qh >> j) << 4) & 0x10) as u8;
                    let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
                    v[j] = ((x[8 + j] & 0x0F) | xh0) as f32 * d + m;
                    v[j + 16] = ((x[8 + j] >> 4) | xh1) as f32 * d + m;
                }
            }
            GgmlType::Q8_0 => {
                let d = f16v(x);
                for j in 0..32 {
                    v[j] = (x[2 + j] as i8) as f32 * d;
                }
            }
            _ => unreachable!(),
        }
        y.extend(v);
    }
    y
}

/// For each GGUF row, the HF row it holds: llama.cpp's HF→GGUF permutation
/// `w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(out, in)` replayed on row indices.
fn gguf_to_hf_rows(rows: usize, n_head: usize) -> Vec<usize> {
    let hd = rows / n_head;
    let half = hd / 2;
    // idx[h][a][b] = HF row; after swapaxes(1,2) the element at [h][b][a] is idx[h][a][b].
    let mut out = Vec::with_capacity(rows);
    for h in 0..n_head {
        for b in 0..half {
            for a in 0..2 {
                out.push(h * hd + a * half + b);
            }
        }
    }
    out
}

/// GGUF-order f32 rows → HF order.
fn unpermute(w: &[f32], rows: usize, cols: usize, n_head: Option<usize>) -> Vec<f32> {
    let Some(n_head) = n_head else {
        return w.to_vec();
    };
    let map = gguf_to_hf_rows(rows, n_head);
    let mut out = vec![0f32; w.len()];
    for (g, &h) in map.iter().enumerate() {
        out[h * cols..(h + 1) * cols].copy_from_slice(&w[g * cols..(g + 1) * cols]);
    }
    out
}

/// Bit-for-bit equal, except that -0.0 and +0.0 count as equal: llama.cpp's `(q-8)·d` gives
/// -0.0 for q = 8 and d < 0 where MLX's `d·q + (-8d)` gives +0.0 (no effect on any sum).
fn bits_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (*x == 0.0 && *y == 0.0))
}

// ---------------------------------------------------------------------------------------
// The tiny model.

const HIDDEN: usize = 64;
const FFN: usize = 96;
const N_HEAD: usize = 4;
const N_KV: usize = 2;
const VOCAB: usize = 32;

/// (gguf name, hf module, [rows, cols], type, q/k heads)
type Layout = (
    &'static str,
    &'static str,
    [usize; 2],
    GgmlType,
    Option<usize>,
);

fn tiny_layout() -> Vec<Layout> {
    let hd = HIDDEN / N_HEAD;
    vec![
        (
            "token_embd.weight",
            "model.embed_tokens",
            [VOCAB, HIDDEN],
            GgmlType::Q8_0,
            None,
        ),
        (
            "blk.0.attn_q.weight",
            "model.layers.0.self_attn.q_proj",
            [HIDDEN, HIDDEN],
            GgmlType::Q4_0,
            Some(N_HEAD),
        ),
        (
            "blk.0.attn_k.weight",
            "model.layers.0.self_attn.k_proj",
            [N_KV * hd, HIDDEN],
            GgmlType::Q4_1,
            Some(N_KV),
        ),
        (
            "blk.0.attn_v.weight",
            "model.layers.0.self_attn.v_proj",
            [N_KV * hd, HIDDEN],
            GgmlType::Q8_0,
            None,
        ),
        (
            "blk.0.attn_output.weight",
            "model.layers.0.self_attn.o_proj",
            [HIDDEN, HIDDEN],
            GgmlType::F16,
            None,
        ),
        (
            "blk.0.ffn_gate.weight",
            "model.layers.0.mlp.gate_proj",
            [FFN, HIDDEN],
            GgmlType::Q5_0,
            None,
        ),
        (
            "blk.0.ffn_up.weight",
            "model.layers.0.mlp.up_proj",
            [FFN, HIDDEN],
            GgmlType::Q5_1,
            None,
        ),
        (
            "blk.0.ffn_down.weight",
            "model.layers.0.mlp.down_proj",
            [HIDDEN, FFN],
            GgmlType::F32,
            None,
        ),
        (
            "output.weight",
            "lm_head",
            [VOCAB, HIDDEN],
            GgmlType::BF16,
            None,
        ),
        (
            "blk.1.attn_q.weight",
            "model.layers.1.self_attn.q_proj",
            [HIDDEN, HIDDEN],
            GgmlType::F32,
            Some(N_HEAD),
        ),
        (
            "blk.1.attn_k.weight",
            "model.layers.1.self_attn.k_proj",
            [N_KV * hd, HIDDEN],
            GgmlType::Q8_0,
            Some(N_KV),
        ),
    ]
}

const TOKENS: &[&str] = &[
    "<s>", "</s>", "a", "b", "c", "ab", "abc", "Ġ", "Ġa", "<|user|>", "1", "2", "Ġ1",
];
const TOKEN_TYPES: &[i32] = &[3, 3, 1, 1, 1, 1, 1, 1, 1, 4, 1, 1, 1];
const MERGES: &[&str] = &["a b", "ab c", "Ġ a", "Ġ 1"];

/// The tiny GGUF and, per HF module, its expected f32 `[rows, cols]` values in HF order.
fn tiny_gguf(pre: &str) -> (Gguf, Vec<(String, Vec<f32>)>) {
    let mut rng = Rng(2026);
    let mut g = Gguf::new();
    g.str("general.architecture", "llama")
        .str("general.name", "tiny")
        .u32("llama.block_count", 2)
        .u32("llama.context_length", 256)
        .u32("llama.embedding_length", HIDDEN as u32)
        .u32("llama.feed_forward_length", FFN as u32)
        .u32("llama.attention.head_count", N_HEAD as u32)
        .u32("llama.attention.head_count_kv", N_KV as u32)
        .f32("llama.rope.freq_base", 10000.0)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .u32("general.alignment", 32)
        .str("tokenizer.ggml.model", "gpt2")
        .str("tokenizer.ggml.pre", pre)
        .strs("tokenizer.ggml.tokens", TOKENS)
        .i32s("tokenizer.ggml.token_type", TOKEN_TYPES)
        .strs("tokenizer.ggml.merges", MERGES)
        .u32("tokenizer.ggml.bos_token_id", 0)
        .u32("tokenizer.ggml.eos_token_id", 1)
        .bool("tokenizer.ggml.add_bos_token", true)
        .str("tokenizer.chat_template", "{{ messages }}");
    let mut expected = Vec::new();
    for (name, module, [rows, cols], ty, heads) in tiny_layout() {
        let (data, vals): (Vec<u8>, Vec<f32>) = match ty {
            GgmlType::F32 => {
                let v: Vec<f32> = if name == "blk.1.attn_q.weight" {
                    // Row r holds the value r: shows the permutation directly.
                    (0..rows * cols).map(|i| (i / cols) as f32).collect()
                } else {
                    (0..rows * cols)
                        .map(|_| (rng.next() % 1000) as f32 / 1000.0 - 0.5)
                        .collect()
                };
                (v.iter().flat_map(|x| x.to_le_bytes()).collect(), v)
            }
            GgmlType::F16 => {
                let h: Vec<half::f16> = (0..rows * cols)
                    .map(|_| half::f16::from_f32((rng.next() % 1000) as f32 / 997.0 - 0.5))
                    .collect();
                (
                    h.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    h.iter().map(|x| x.to_f32()).collect(),
                )
            }
            GgmlType::BF16 => {
                let h: Vec<half::bf16> = (0..rows * cols)
                    .map(|_| half::bf16::from_f32((rng.next() % 1000) as f32 / 997.0 - 0.5))
                    .collect();
                (
                    h.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    h.iter().map(|x| x.to_f32()).collect(),
                )
            }
            q => {
                // v_proj gets one block with d = 1000: -128·d overflows f16 → F32 scales.
                let big = name == "blk.0.attn_v.weight";
                let d = random_quant(&mut rng, q, rows, cols, big);
                let v = ggml_dequant(q, &d);
                (d, v)
            }
        };
        g.tensor(name, &[cols as u64, rows as u64], ty, data);
        expected.push((module.to_string(), unpermute(&vals, rows, cols, heads)));
    }
    for (name, module) in [
        (
            "blk.0.attn_norm.weight",
            "model.layers.0.input_layernorm.weight",
        ),
        (
            "blk.0.ffn_norm.weight",
            "model.layers.0.post_attention_layernorm.weight",
        ),
        (
            "blk.1.attn_norm.weight",
            "model.layers.1.input_layernorm.weight",
        ),
        (
            "blk.1.ffn_norm.weight",
            "model.layers.1.post_attention_layernorm.weight",
        ),
        ("output_norm.weight", "model.norm.weight"),
    ] {
        let v: Vec<f32> = (0..HIDDEN).map(|i| 1.0 + i as f32 / 64.0).collect();
        g.tensor(
            name,
            &[HIDDEN as u64],
            GgmlType::F32,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
        expected.push((module.to_string(), v));
    }
    // Layer 1 needs the rest of its tensors to be a complete llama block.
    for (name, rows, cols) in [
        ("blk.1.attn_v.weight", N_KV * HIDDEN / N_HEAD, HIDDEN),
        ("blk.1.attn_output.weight", HIDDEN, HIDDEN),
        ("blk.1.ffn_gate.weight", FFN, HIDDEN),
        ("blk.1.ffn_up.weight", FFN, HIDDEN),
        ("blk.1.ffn_down.weight", HIDDEN, FFN),
    ] {
        let d = random_quant(&mut rng, GgmlType::Q4_0, rows, cols, false);
        g.tensor(name, &[cols as u64, rows as u64], GgmlType::Q4_0, d);
    }
    (g, expected)
}

fn convert(
    src: &Path,
    out: &Path,
) -> fourierft::Result<fourierft::weights::gguf_convert::ConvertReport> {
    let mut calls = 0usize;
    let r = convert_gguf(src, out, &mut |done, total| {
        calls += 1;
        assert!(done <= total);
    });
    if r.is_ok() {
        assert!(calls > 0, "progress was never called");
    }
    r
}

#[test]
fn tiny_gguf_reads_back() {
    let dir = common::scratch("gguf-read");
    let (g, _) = tiny_gguf("smollm");
    let p = g.write(&dir.join("tiny.gguf"));
    let f = GgufFile::open(&p).expect("open");
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 32);
    assert_eq!(f.metadata().len(), g.kvs.len());
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_u64("llama.block_count").unwrap(), Some(2));
    assert_eq!(f.get_f64("llama.rope.freq_base").unwrap(), Some(10000.0));
    assert_eq!(
        f.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(true)
    );
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap(),
        TOKENS.to_vec()
    );
    assert_eq!(
        f.get_i64_array("tokenizer.ggml.token_type")
            .unwrap()
            .unwrap(),
        TOKEN_TYPES.iter().map(|&x| x as i64).collect::<Vec<_>>()
    );
    assert!(matches!(
        f.get("llama.rope.freq_base"),
        Some(GgufValue::F32(_))
    ));
    // A type mismatch names the file and key.
    let e = f.get_str("llama.block_count").unwrap_err().to_string();
    assert!(
        e.contains("tiny.gguf") && e.contains("llama.block_count"),
        "{e}"
    );
    assert_eq!(f.tensors().len(), g.tensors.len());
    let q = f.tensor_info("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.ggml_type, GgmlType::Q4_0);
    assert_eq!(q.dims, vec![HIDDEN as u64, HIDDEN as u64]);
    assert_eq!(q.n_bytes, Some((HIDDEN * HIDDEN / 32 * 18) as u64));
    assert_eq!(f.tensor_data(q).unwrap(), &g.tensors[1].3[..]);
    // Every tensor's bytes come back as written.
    for (name, _, _, data) in &g.tensors {
        let t = f.tensor_info(name).unwrap();
        assert_eq!(f.tensor_data(t).unwrap(), &data[..], "{name}");
    }
}

#[test]
fn tiny_gguf_converts_losslessly() {
    let dir = common::scratch("gguf-convert");
    let (g, expected) = tiny_gguf("smollm");
    let src = g.write(&dir.join("tiny.gguf"));
    let out = dir.join("mlx");
    let report = convert(&src, &out).expect("convert");
    assert_eq!(report.arch, "llama");
    assert_eq!(report.tensors, g.tensors.len());
    assert!(!report.tie_word_embeddings);
    assert_eq!(
        report.f32_scales,
        vec!["model.layers.0.self_attn.v_proj".to_string()]
    );
    assert!(report.tokenizer_skipped.is_none());

    let m = ModelFiles::open(&out).expect("open converted model");
    let c = &m.config;
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (HIDDEN, FFN, 2)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (N_HEAD, N_KV, 16)
    );
    assert_eq!(c.vocab_size, VOCAB);
    assert_eq!(c.rms_norm_eps, Some(1e-5));
    assert_eq!(c.max_position_embeddings, 256);
    assert!(!c.tie_word_embeddings);
    assert_eq!(c.bos_token_id, Some(vec![0]));
    assert_eq!(c.eos_token_id, Some(vec![1]));

    let spec = |m_: &str| m.quant_spec(m_).map(|s| (s.bits, s.group_size)).ok();
    assert_eq!(spec("model.embed_tokens"), Some((8, 32)));
    assert_eq!(spec("model.layers.0.self_attn.q_proj"), Some((4, 32)));
    assert_eq!(spec("model.layers.0.self_attn.k_proj"), Some((4, 32)));
    assert_eq!(spec("model.layers.0.mlp.gate_proj"), Some((5, 32)));
    assert_eq!(spec("model.layers.0.mlp.up_proj"), Some((5, 32)));
    assert_eq!(spec("model.layers.1.self_attn.k_proj"), Some((8, 32)));
    assert!(!m.is_quantized("model.layers.0.self_attn.o_proj"));
    assert!(!m.is_quantized("lm_head"));
    assert_eq!(
        m.quantized("model.layers.0.self_attn.q_proj")
            .unwrap()
            .dtype(),
        DType::F16
    );
    assert_eq!(
        m.quantized("model.layers.0.self_attn.v_proj")
            .unwrap()
            .dtype(),
        DType::F32
    );
    assert_eq!(
        m.weights.tensor("lm_head.weight").unwrap().dtype,
        DType::BF16
    );
    assert_eq!(
        m.weights
            .tensor("model.layers.0.self_attn.o_proj.weight")
            .unwrap()
            .dtype,
        DType::F16
    );
    assert_eq!(
        m.weights.tensor("model.norm.weight").unwrap().dtype,
        DType::F32
    );

    for (module, want) in &expected {
        let got = if module.ends_with(".weight") {
            m.weights.tensor(module).unwrap().to_f32_vec().unwrap()
        } else {
            m.dequantize_weight(module).unwrap()
        };
        assert!(
            bits_eq(&got, want),
            "{module}: converted weights differ from GGUF dequantisation"
        );
    }

    // The permutation, spelled out: blk.1.attn_q row r holds r; head 0 of HF q_proj is
    // GGUF rows 0,2,...,14 then 1,3,...,15.
    let q1 = m
        .dequantize_weight("model.layers.1.self_attn.q_proj")
        .unwrap();
    let firsts: Vec<f32> = (0..HIDDEN).map(|r| q1[r * HIDDEN]).collect();
    let mut want = Vec::new();
    for h in 0..N_HEAD {
        let base = h * 16;
        want.extend((0..8).map(|i| (base + 2 * i) as f32));
        want.extend((0..8).map(|i| (base + 2 * i + 1) as f32));
    }
    assert_eq!(firsts, want);
}

#[test]
fn tiny_gguf_tokenizer() {
    let dir = common::scratch("gguf-tok");
    let (g, _) = tiny_gguf("smollm");
    let src = g.write(&dir.join("tiny.gguf"));
    let out = dir.join("mlx");
    let r = convert(&src, &out).expect("convert");
    assert_eq!(r.tokenizer.as_deref(), Some("gpt2 (pre 'smollm')"));
    let tok =
        tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).expect("load tokenizer.json");
    let ids = |s: &str, sp: bool| tok.encode(s, sp).unwrap().get_ids().to_vec();
    // "abc" → a b → ab c → abc; " ab" → Ġ a b → Ġ ab (no "Ġ ab" merge).
    assert_eq!(ids("abc ab", false), vec![6, 7, 5]);
    // add_bos_token = true
    assert_eq!(ids("abc ab", true), vec![0, 6, 7, 5]);
    // control and user-defined tokens stay whole
    assert_eq!(ids("<s>abc<|user|>a", false), vec![0, 6, 9, 2]);
    // smollm splits digits one by one: " 12" → "Ġ1" is never formed
    assert_eq!(ids(" 12", false), vec![7, 10, 11]);
    assert_eq!(tok.decode(&[6, 7, 5], false).unwrap(), "abc ab");

    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["chat_template"], "{{ messages }}");
    assert_eq!(cfg["bos_token"], "<s>");
    assert_eq!(cfg["eos_token"], "</s>");
    assert_eq!(cfg["add_bos_token"], true);

    // gpt2 pre-tokenizer: " 1" stays one piece and merges to "Ġ1".
    let (g2, _) = tiny_gguf("gpt2");
    let src2 = g2.write(&dir.join("tiny2.gguf"));
    convert(&src2, &dir.join("mlx2")).expect("convert gpt2");
    let tok2 = tokenizers::Tokenizer::from_file(dir.join("mlx2/tokenizer.json")).unwrap();
    assert_eq!(tok2.encode(" 1", false).unwrap().get_ids(), &[12]);
    // llama3 pre-tokenizer loads too.
    let (g3, _) = tiny_gguf("llama-bpe");
    let src3 = g3.write(&dir.join("tiny3.gguf"));
    convert(&src3, &dir.join("mlx3")).expect("convert llama-bpe");
    let tok3 = tokenizers::Tokenizer::from_file(dir.join("mlx3/tokenizer.json")).unwrap();
    assert_eq!(tok3.encode("abc", false).unwrap().get_ids(), &[6]);
    // An unknown pre-tokenizer: weights converted, tokenizer skipped with the reason.
    let (g4, _) = tiny_gguf("no-such-pre");
    let src4 = g4.write(&dir.join("tiny4.gguf"));
    let r4 = convert(&src4, &dir.join("mlx4")).expect("convert");
    assert!(r4.tokenizer.is_none());
    let why = r4.tokenizer_skipped.unwrap();
    assert!(
        why.contains("no-such-pre") && why.contains("tiny4.gguf"),
        "{why}"
    );
    assert!(!dir.join("mlx4/tokenizer.json").exists());
    assert!(ModelFiles::open(&dir.join("mlx4")).is_ok());
}

#[test]
fn output_folder_is_not_overwritten() {
    let dir = common::scratch("gguf-exists");
    let (g, _) = tiny_gguf("smollm");
    let src = g.write(&dir.join("tiny.gguf"));
    let out = dir.join("mlx");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let e = convert(&src, &out).unwrap_err().to_string();
    assert!(e.contains("mlx") && e.contains("refusing"), "{e}");
    assert!(out.join("keep.txt").exists());
}

fn open_err(bytes: Vec<u8>) -> String {
    let p = Path::new("/virtual/broken.gguf");
    match GgufFile::from_bytes(p, bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let s = e.to_string();
            assert!(
                s.contains("broken.gguf"),
                "error does not name the file: {s}"
            );
            s
        }
    }
}

#[test]
fn truncated_files_give_errors() {
    let (g, _) = tiny_gguf("smollm");
    let bytes = g.bytes();
    let f = GgufFile::from_bytes(Path::new("x.gguf"), bytes.clone()).unwrap();
    let data_start = f.data_offset as usize;
    // Every cut inside the header and a sample in the data: each is an error naming the file.
    let mut cuts: Vec<usize> = (0..data_start + 1).collect();
    cuts.extend((data_start..bytes.len()).step_by(61));
    cuts.push(bytes.len() - 1);
    for n in cuts {
        let e = open_err(bytes[..n].to_vec());
        assert!(
            e.contains("GGUF") || e.contains("not a GGUF file"),
            "cut at {n}: {e}"
        );
    }
    // The converter reports the same for a truncated file on disk.
    let dir = common::scratch("gguf-trunc");
    let p = dir.join("cut.gguf");
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let e = convert(&p, &dir.join("out")).unwrap_err().to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
    assert!(!dir.join("out").exists());
}

#[test]
fn lying_files_give_errors() {
    let (g, _) = tiny_gguf("smollm");
    let base = g.bytes();

    // Magic, version, endianness.
    let mut b = base.clone();
    b[0] = b'X';
    assert!(open_err(b).contains("not a GGUF file"));
    assert!(open_err(b"GG".to_vec()).contains("not a GGUF file"));
    let mut b = base.clone();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    let e = open_err(b);
    assert!(e.contains("version 1"), "{e}");
    let mut b = base.clone();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(open_err(b).contains("big-endian"));
    let mut b = base.clone();
    b[4..8].copy_from_slice(&7u32.to_le_bytes());
    assert!(open_err(b).contains("version 7"));

    // Counts far beyond the file.
    let mut b = base.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(open_err(b).contains("tensor count"));
    let mut b = base.clone();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(open_err(b).contains("metadata count"));

    // A string length that lies (the first key's length).
    let mut b = base.clone();
    b[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    let e = open_err(b);
    assert!(e.contains("key of metadata entry 0"), "{e}");

    // An array length that lies.
    let mut g2 = g.clone();
    let mut arr = T_STRING.to_le_bytes().to_vec();
    arr.extend((1u64 << 62).to_le_bytes());
    g2.kvs.push(("lying.array".into(), T_ARRAY, arr));
    let e = open_err(g2.bytes());
    assert!(
        e.contains("lying.array") && e.contains("array length"),
        "{e}"
    );

    // Unknown value type; bad bool; nested arrays too deep.
    let mut g2 = g.clone();
    g2.kvs.push(("weird".into(), 99, vec![]));
    assert!(open_err(g2.bytes()).contains("unknown value type 99"));
    let mut g2 = g.clone();
    g2.kvs.push(("flag".into(), T_BOOL, vec![2]));
    assert!(open_err(g2.bytes()).contains("expected 0 or 1"));
    let mut g2 = g.clone();
    let mut deep = Vec::new();
    for _ in 0..20 {
        deep.extend(T_ARRAY.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
    }
    deep.extend(T_U32.to_le_bytes());
    deep.extend(0u64.to_le_bytes());
    g2.kvs.push(("deep".into(), T_ARRAY, deep));
    assert!(open_err(g2.bytes()).contains("deep"));

    // Duplicate key, bad alignment.
    let mut g2 = g.clone();
    g2.u32("llama.block_count", 3);
    assert!(open_err(g2.bytes()).contains("duplicate metadata key 'llama.block_count'"));
    for bad in [0u32, 3, 48] {
        let mut g2 = g.clone();
        for kv in g2.kvs.iter_mut() {
            if kv.0 == "general.alignment" {
                kv.2 = bad.to_le_bytes().to_vec();
            }
        }
        assert!(
            open_err(g2.bytes()).contains("general.alignment"),
            "alignment {bad}"
        );
    }

    // Tensor infos that lie: too many dims, overflowing dims, ne[0] not a block multiple,
    // unaligned / out-of-file / overlapping offsets, duplicate names.
    let mut g2 = g.clone();
    g2.tensors[0].1 = vec![32, 2, 1, 1, 1];
    assert!(open_err(g2.bytes()).contains("5 dimensions"));
    let mut g2 = g.clone();
    g2.tensors[0].1 = vec![1 << 32, 1 << 32, 1 << 32];
    assert!(open_err(g2.bytes()).contains("overflows"));
    let mut g2 = g.clone();
    g2.tensors[1].1 = vec![48, 64];
    assert!(open_err(g2.bytes()).contains("not a multiple of the block size 32"));
    let mut g2 = g.clone();
    g2.tensors[2].1 = vec![64, 1 << 40];
    assert!(open_err(g2.bytes()).contains("blk.0.attn_k.weight"));
    let mut g2 = g.clone();
    g2.tensors[3].0 = g2.tensors[2].0.clone();
    assert!(open_err(g2.bytes()).contains("duplicate tensor name"));

    // Offsets: patch the offset field of the first tensor info in place.
    let f = GgufFile::from_bytes(Path::new("x.gguf"), base.clone()).unwrap();
    let name = &f.tensors()[0].name;
    let at = {
        let mut pat = (name.len() as u64).to_le_bytes().to_vec();
        pat.extend(name.as_bytes());
        let pos = base
            .windows(pat.len())
            .position(|w| w == pat.as_slice())
            .unwrap();
        pos + pat.len() + 4 + 8 * f.tensors()[0].dims.len() + 4
    };
    for (off, what) in [
        (8u64, "not a multiple of the alignment"),
        (1 << 40, "needs bytes"),
        (u64::MAX - 31, "needs bytes"),
        (f.tensors()[1].offset, "overlap"),
    ] {
        let mut b = base.clone();
        b[at..at + 8].copy_from_slice(&off.to_le_bytes());
        let e = open_err(b);
        assert!(e.contains(what), "offset {off}: {e}");
    }
}

#[test]
fn corrupted_files_never_panic() {
    let (g, _) = tiny_gguf("smollm");
    let base = g.bytes();
    let f = GgufFile::from_bytes(Path::new("x.gguf"), base.clone()).unwrap();
    let header = f.data_offset as usize;
    let mut rng = Rng(7);
    let dir = common::scratch("gguf-fuzz");
    for i in 0..400 {
        let mut b = base.clone();
        for _ in 0..1 + rng.next() % 4 {
            let pos = (rng.next() as usize) % header;
            b[pos] = rng.byte();
        }
        let p = Path::new("/virtual/fuzz.gguf");
        if let Err(e) = GgufFile::from_bytes(p, b.clone()) {
            assert!(e.to_string().contains("fuzz.gguf"), "{e}");
        }
        // Every 8th one goes through the whole converter too.
        if i % 8 == 0 {
            let src = dir.join(format!("f{i}.gguf"));
            std::fs::write(&src, &b).unwrap();
            let out = dir.join(format!("o{i}"));
            if let Err(e) = convert(&src, &out) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn unsupported_inputs_are_named() {
    let dir = common::scratch("gguf-unsup");
    // Another architecture.
    let (mut g, _) = tiny_gguf("smollm");
    g.kvs[0].2 = {
        let mut b = Vec::new();
        gstr(&mut b, "qwen3");
        b
    };
    let p = g.write(&dir.join("arch.gguf"));
    let e = convert(&p, &dir.join("o1")).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("qwen3"));
    // A K-quant tensor.
    let (mut g, _) = tiny_gguf("smollm");
    let n = g
        .tensors
        .iter()
        .position(|t| t.0 == "blk.1.attn_output.weight")
        .unwrap();
    g.tensors[n] = (
        "blk.1.attn_output.weight".into(),
        vec![256, 64],
        GgmlType::Q4_K.0,
        vec![0u8; 64 * 144],
    );
    let p = g.write(&dir.join("k.gguf"));
    let e = convert(&p, &dir.join("o2")).unwrap_err().to_string();
    assert!(
        e.contains("k.gguf") && e.contains("Q4_K") && e.contains("blk.1.attn_output.weight"),
        "{e}"
    );
    // An unknown tensor.
    let (mut g, _) = tiny_gguf("smollm");
    g.tensor("blk.0.mystery.weight", &[32], GgmlType::F32, vec![0u8; 128]);
    let p = g.write(&dir.join("m.gguf"));
    let e = convert(&p, &dir.join("o3")).unwrap_err().to_string();
    assert!(e.contains("blk.0.mystery.weight"), "{e}");
    // Missing hyper-parameter.
    let (mut g, _) = tiny_gguf("smollm");
    g.kvs.retain(|kv| kv.0 != "llama.embedding_length");
    let p = g.write(&dir.join("h.gguf"));
    let e = convert(&p, &dir.join("o4")).unwrap_err().to_string();
    assert!(e.contains("llama.embedding_length"), "{e}");
}

#[test]
fn cli_convert_gguf() {
    let dir = common::scratch("gguf-cli");
    let (g, _) = tiny_gguf("smollm");
    let src = g.write(&dir.join("tiny.gguf"));
    let out = dir.join("mlx");
    let o = Command::new(env!("CARGO_BIN_EXE_fourierft"))
        .args(["convert-gguf", "--in"])
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("converted"));
    assert!(out.join("model.safetensors").exists() && out.join("tokenizer.json").exists());

    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\0\0\0").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_fourierft"))
        .args(["convert-gguf", "--in"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("bad.gguf"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_fourierft"))
        .args(["convert-gguf", "--in", "x.gguf"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------
// Real weights.

/// The SmolLM2 GGUF from `FOURIERFT_SMOLLM2_GGUF`; `None` (SKIPPED) when unset, unless CI
/// (`CI=true`) or `FOURIERFT_REQUIRE_WEIGHTS=1` demands it.
fn smollm2_gguf() -> Option<PathBuf> {
    match std::env::var_os("FOURIERFT_SMOLLM2_GGUF") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        other => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
                || std::env::var("FOURIERFT_REQUIRE_WEIGHTS").is_ok_and(|v| v == "1");
            let why = match other {
                Some(p) => format!(
                    "FOURIERFT_SMOLLM2_GGUF={} is not a file",
                    Path::new(&p).display()
                ),
                None => "FOURIERFT_SMOLLM2_GGUF is not set (.ci/run fetches it)".to_string(),
            };
            if required {
                panic!("real weights required (CI / FOURIERFT_REQUIRE_WEIGHTS=1): {why}");
            }
            eprintln!("SKIPPED (no SmolLM2 GGUF): {why}");
            None
        }
    }
}

fn smollm2_fixtures() -> PathBuf {
    common::fixtures().join("smollm2")
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn smollm2_converts_to_transformers_values() {
    let Some(src) = smollm2_gguf() else { return };
    let dir = common::scratch("smollm2");
    let out = dir.join("mlx");
    let r = convert(&src, &out).expect("convert SmolLM2");
    assert_eq!(r.tensors, 272);
    assert_eq!((r.quantized, r.float), (211, 61));
    assert_eq!(r.by_type.get("Q4_1"), Some(&210));
    assert_eq!(r.by_type.get("Q8_0"), Some(&1));
    assert!(r.f32_scales.is_empty());
    assert!(r.tie_word_embeddings);

    let m = ModelFiles::open(&out).expect("open converted SmolLM2");
    let c = &m.config;
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
    assert_eq!(c.rms_norm_eps, Some(1e-5));
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(c.tie_word_embeddings);
    assert_eq!(
        (c.bos_token_id.clone(), c.eos_token_id.clone()),
        (Some(vec![1]), Some(vec![2]))
    );
    assert_eq!(m.quant_spec("model.embed_tokens").unwrap().bits, 8);
    // Every quantised module passes the shape checks.
    for l in 0..30 {
        for p in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            let q = m.quantized(&format!("model.layers.{l}.{p}")).unwrap();
            assert_eq!(
                (q.spec.bits, q.spec.group_size, q.dtype()),
                (4, 32, DType::F16)
            );
        }
    }

    // transformers' float32 values (dequantised, q/k un-permuted by transformers) — exactly.
    let golden = SafeTensorsFile::open(&smollm2_fixtures().join("weights.safetensors")).unwrap();
    let mut checked = 0;
    for t in golden.tensors() {
        if t.name.ends_with(".rows") {
            continue;
        }
        let want = t.to_f32_vec().unwrap();
        let module = t.name.strip_suffix(".weight").unwrap();
        let got = if t.shape.len() == 1 {
            m.weights.tensor(t.name).unwrap().to_f32_vec().unwrap()
        } else {
            let rows = golden
                .get(&format!("{}.rows", t.name))
                .unwrap()
                .to_i64_vec()
                .unwrap();
            let full = m.dequantize_weight(module).unwrap();
            let (_, cols) = m.linear_dims(module).unwrap();
            rows.iter()
                .flat_map(|&r| full[r as usize * cols..(r as usize + 1) * cols].to_vec())
                .collect()
        };
        assert!(
            bits_eq(&got, &want),
            "{}: differs from transformers",
            t.name
        );
        checked += 1;
    }
    assert!(checked >= 10);

    // Tokenizer: transformers' ids for every case, both ways; decoding gives the text back.
    let tok = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).expect("tokenizer.json");
    let cases = read_json(&smollm2_fixtures().join("tokenizer_cases.json"));
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 15);
    let as_ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let plain = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(plain, as_ids(&case["ids"]), "{text:?}");
        let special = tok.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(
            special,
            as_ids(&case["ids_with_special"]),
            "{text:?} (special)"
        );
        assert_eq!(tok.decode(&plain, false).unwrap(), text);
    }
    // The prompts of generate.json (plain and rendered chat) tokenize to transformers' ids.
    let gen = read_json(&smollm2_fixtures().join("generate.json"));
    for run in gen["runs"].as_array().unwrap() {
        let text = run["text"].as_str().unwrap();
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, as_ids(&run["prompt_ids"]), "{text:?}");
    }

    // The committed PEFT adapter fits the converted model (60 q/v modules).
    let adapter = fourierft::fourier::Adapter::load(&smollm2_fixtures().join("adapter_qv"))
        .expect("load adapter_qv");
    let fits = adapter
        .fit(&m)
        .expect("adapter_qv fits the converted SmolLM2");
    assert_eq!(fits.len(), 60);

    // tokenizer_config.json carries the GGUF's chat template and special tokens.
    let cfg = read_json(&out.join("tokenizer_config.json"));
    let g = GgufFile::open(&src).unwrap();
    let tmpl = g.get_str("tokenizer.chat_template").unwrap().unwrap();
    assert_eq!(cfg["chat_template"].as_str(), Some(tmpl));
    assert!(tmpl.contains("<|im_start|>assistant"));
    assert_eq!(cfg["bos_token"], "<|im_start|>");
    assert_eq!(cfg["eos_token"], "<|im_end|>");
    assert_eq!(cfg["add_bos_token"], false);
}
