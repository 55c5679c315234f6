//! The wgpu backend against the CPU oracle: every op on random data (matmul for each weight
//! format, decode and prefill rows, chunked bindings; embed; rmsnorm; rope; kv_store;
//! attention; element-wise ops), the tiny llama against the transformers + PEFT goldens (the
//! same check as tests/llama.rs), the MLX 4-bit fixture against the CPU backend, and a decode
//! loop that creates no bind groups or pipelines after the first token.
//! Without an adapter these tests skip with a note, except under FOURIERFT_REQUIRE_GPU=1.

mod common;

use std::sync::Arc;

use common::llama_check::{check_tiny_llama_both_prefills, max_abs_diff};
use common::{fixtures, gpu};
use fourierft::backend::cpu::{Bytes, CpuBackend, CpuMat};
use fourierft::backend::wgpu::kernels::matmul::MatFormat;
use fourierft::backend::wgpu::{GpuBackend, GpuContext, GpuMat};
use fourierft::backend::Backend;
use fourierft::fourier::mt19937::Mt19937;
use fourierft::fourier::Adapter;
use fourierft::model::{Llama, LlamaOptions};
use fourierft::sampler::argmax;
use fourierft::weights::{DType, ModelFiles, QuantSpec};
use half::{bf16, f16};

struct Rng(Mt19937);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(Mt19937::new(seed))
    }
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.0.next_u32() as f32 / u32::MAX as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    fn words(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.0.next_u32()).collect()
    }
}

fn backends(ctx: GpuContext) -> (CpuBackend, GpuBackend) {
    (CpuBackend::new(), GpuBackend::new(ctx).unwrap())
}

/// Max |a − b| relative to max |b| (at least 1).
fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(got, want);
    assert!(
        d <= tol * scale,
        "{what}: max |Δ| {d:.3e} (scale {scale:.3e}, tol {tol:.1e})"
    );
}

/// The same random `[rows, cols]` matrix on both backends, stored as `kind`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    F32,
    F16,
    BF16,
    Affine { bits: u32, group: usize, sb: DType },
}

fn halves(v: &[f32], bf: bool) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::with_capacity(v.len() * 2);
    let mut exact = Vec::with_capacity(v.len());
    for &x in v {
        if bf {
            let h = bf16::from_f32(x);
            bytes.extend_from_slice(&h.to_le_bytes());
            exact.push(h.to_f32());
        } else {
            let h = f16::from_f32(x);
            bytes.extend_from_slice(&h.to_le_bytes());
            exact.push(h.to_f32());
        }
    }
    (bytes, exact)
}

fn sb_bytes(v: &[f32], dtype: DType) -> (Vec<u8>, Vec<f32>) {
    match dtype {
        DType::F16 => halves(v, false),
        DType::BF16 => halves(v, true),
        _ => (bytemuck::cast_slice(v).to_vec(), v.to_vec()),
    }
}

fn random_mat(
    rng: &mut Rng,
    gpu: &GpuBackend,
    rows: usize,
    cols: usize,
    kind: Kind,
) -> (CpuMat, GpuMat) {
    match kind {
        Kind::F32 | Kind::F16 | Kind::BF16 => {
            let v = rng.vec(rows * cols, -1.0, 1.0);
            let (bytes, exact, format) = match kind {
                Kind::F32 => (bytemuck::cast_slice(&v).to_vec(), v.clone(), MatFormat::F32),
                Kind::F16 => {
                    let (b, e) = halves(&v, false);
                    (b, e, MatFormat::F16)
                }
                _ => {
                    let (b, e) = halves(&v, true);
                    (b, e, MatFormat::BF16)
                }
            };
            let g = gpu
                .matrix_from_bytes("m", rows, cols, format, &bytes, None, None)
                .unwrap();
            (
                CpuMat::F32 {
                    rows,
                    cols,
                    data: Arc::new(exact),
                },
                g,
            )
        }
        Kind::Affine { bits, group, sb } => {
            let spec = QuantSpec::new(bits, group).unwrap();
            let words = rng.words(rows * cols * bits as usize / 32);
            let n_sb = rows * cols / group;
            let (s_bytes, _) = sb_bytes(&rng.vec(n_sb, 0.005, 0.1), sb);
            let (b_bytes, _) = sb_bytes(&rng.vec(n_sb, -0.5, 0.5), sb);
            let g = gpu
                .matrix_from_bytes(
                    "m",
                    rows,
                    cols,
                    MatFormat::Affine { spec, sb },
                    bytemuck::cast_slice(&words),
                    Some(&s_bytes),
                    Some(&b_bytes),
                )
                .unwrap();
            (
                CpuMat::Affine {
                    rows,
                    cols,
                    spec,
                    sb,
                    words: Bytes::Owned(Arc::new(bytemuck::cast_slice(&words).to_vec())),
                    scales: Bytes::Owned(Arc::new(s_bytes)),
                    biases: Bytes::Owned(Arc::new(b_bytes)),
                },
                g,
            )
        }
    }
}

const MATMUL_CASES: &[(Kind, usize, usize)] = &[
    (Kind::F32, 19, 37),
    (Kind::F32, 64, 256),
    (Kind::F16, 21, 38), // f16 pairs (overlay layout)
    (Kind::F16, 9, 37),  // odd rows start mid-word
    (Kind::BF16, 12, 40),
    (
        Kind::Affine {
            bits: 4,
            group: 32,
            sb: DType::F16,
        },
        19,
        96,
    ),
    (
        Kind::Affine {
            bits: 4,
            group: 64,
            sb: DType::F16,
        },
        33,
        256,
    ),
    (
        Kind::Affine {
            bits: 8,
            group: 128,
            sb: DType::F16,
        },
        17,
        384,
    ),
    (
        Kind::Affine {
            bits: 8,
            group: 32,
            sb: DType::BF16,
        },
        10,
        64,
    ),
    (
        Kind::Affine {
            bits: 4,
            group: 128,
            sb: DType::F32,
        },
        11,
        128,
    ),
    (
        Kind::Affine {
            bits: 3,
            group: 32,
            sb: DType::F16,
        },
        13,
        96,
    ),
    (
        Kind::Affine {
            bits: 6,
            group: 64,
            sb: DType::F32,
        },
        7,
        128,
    ),
    (
        Kind::Affine {
            bits: 2,
            group: 64,
            sb: DType::F16,
        },
        9,
        128,
    ),
];

fn check_matmuls(cpu: &CpuBackend, gpu: &GpuBackend, seed: u64) {
    let mut rng = Rng::new(seed);
    for &(kind, n_out, n_in) in MATMUL_CASES {
        let (cm, gm) = random_mat(&mut rng, gpu, n_out, n_in, kind);
        for rows in [1usize, 7, 9, 20] {
            let x = rng.vec(rows * n_in, -1.0, 1.0);
            let (cx, gx) = (cpu.vector(&x).unwrap(), gpu.vector(&x).unwrap());
            let (co, go) = (
                cpu.buffer(rows * n_out).unwrap(),
                gpu.buffer(rows * n_out).unwrap(),
            );
            cpu.matmul(&cx, &cm, &co, rows).unwrap();
            gpu.matmul(&gx, &gm, &go, rows).unwrap();
            close(
                &format!("matmul {kind:?} {n_out}x{n_in} rows {rows}"),
                &gpu.read(&go, 0, rows * n_out).unwrap(),
                &cpu.read(&co, 0, rows * n_out).unwrap(),
                2e-5,
            );
        }
        // Embedding gather from the same matrix (repeated and boundary ids).
        let toks = [0u32, (n_out - 1) as u32, 3, 3, (n_out / 2) as u32];
        let (co, go) = (
            cpu.buffer(toks.len() * n_in).unwrap(),
            gpu.buffer(toks.len() * n_in).unwrap(),
        );
        cpu.embed(&cm, &toks, &co).unwrap();
        gpu.embed(&gm, &toks, &go).unwrap();
        close(
            &format!("embed {kind:?} {n_out}x{n_in}"),
            &gpu.read(&go, 0, toks.len() * n_in).unwrap(),
            &cpu.read(&co, 0, toks.len() * n_in).unwrap(),
            1e-6,
        );
        assert!(gpu.embed(&gm, &[n_out as u32], &go).is_err());
    }
}

#[test]
fn gpu_matmul_and_embed_match_the_cpu_for_every_format() {
    let Some(ctx) = gpu() else { return };
    let (cpu, mut gpu) = backends(ctx);
    check_matmuls(&cpu, &gpu, 1);
    // The other row layouts (lavapipe defaults to 1 lane per row, GPUs to 32).
    for lanes in [1, 8, 32] {
        gpu.set_matmul_lanes(lanes).unwrap();
        check_matmuls(&cpu, &gpu, 1 + lanes as u64);
    }
}

/// Weights bound in row chunks (a storage binding limit of 4 KiB forces several per matrix).
#[test]
fn gpu_matmul_and_embed_split_weights_across_bindings() {
    let Some(mut ctx) = gpu() else { return };
    ctx.limits.max_storage_buffer_binding_size = 4096;
    ctx.limits.min_storage_buffer_offset_alignment =
        ctx.limits.min_storage_buffer_offset_alignment.max(256);
    let (cpu, gpu) = backends(ctx);
    let mut rng = Rng::new(2);
    for (kind, n_out, n_in) in [
        (Kind::F32, 37, 40),
        (Kind::F16, 150, 30),
        (
            Kind::Affine {
                bits: 4,
                group: 32,
                sb: DType::F16,
            },
            200,
            64,
        ),
    ] {
        let (cm, gm) = random_mat(&mut rng, &gpu, n_out, n_in, kind);
        assert!(gm.chunk_rows() < n_out, "{kind:?} not split");
        for rows in [1usize, 7] {
            let x = rng.vec(rows * n_in, -1.0, 1.0);
            let (cx, gx) = (cpu.vector(&x).unwrap(), gpu.vector(&x).unwrap());
            let (co, go) = (
                cpu.buffer(rows * n_out).unwrap(),
                gpu.buffer(rows * n_out).unwrap(),
            );
            cpu.matmul(&cx, &cm, &co, rows).unwrap();
            gpu.matmul(&gx, &gm, &go, rows).unwrap();
            close(
                &format!("chunked matmul {kind:?} rows {rows}"),
                &gpu.read(&go, 0, rows * n_out).unwrap(),
                &cpu.read(&co, 0, rows * n_out).unwrap(),
                2e-5,
            );
        }
        let toks = [0u32, (n_out - 1) as u32, 5, (n_out / 2) as u32];
        let (co, go) = (
            cpu.buffer(toks.len() * n_in).unwrap(),
            gpu.buffer(toks.len() * n_in).unwrap(),
        );
        cpu.embed(&cm, &toks, &co).unwrap();
        gpu.embed(&gm, &toks, &go).unwrap();
        close(
            &format!("chunked embed {kind:?}"),
            &gpu.read(&go, 0, toks.len() * n_in).unwrap(),
            &cpu.read(&co, 0, toks.len() * n_in).unwrap(),
            1e-6,
        );
    }
}

#[test]
fn gpu_norm_rope_attention_and_elementwise_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let (cpu, gpu) = backends(ctx);
    let mut rng = Rng::new(3);
    let get = |c: &<CpuBackend as Backend>::Buf, g: &<GpuBackend as Backend>::Buf, n| {
        (cpu.read(c, 0, n).unwrap(), gpu.read(g, 0, n).unwrap())
    };
    let pair = |v: &[f32]| (cpu.vector(v).unwrap(), gpu.vector(v).unwrap());

    // rmsnorm (a row longer than the workgroup, and a short one)
    for (rows, dim) in [(3usize, 300usize), (5, 32)] {
        let (cx, gx) = pair(&rng.vec(rows * dim, -2.0, 2.0));
        let (cw, gw) = pair(&rng.vec(dim, 0.5, 1.5));
        let (co, go) = pair(&vec![0.0; rows * dim]);
        cpu.rmsnorm(&cx, &cw, &co, rows, dim, 1e-5).unwrap();
        gpu.rmsnorm(&gx, &gw, &go, rows, dim, 1e-5).unwrap();
        let (c, g) = get(&co, &go, rows * dim);
        close("rmsnorm", &g, &c, 1e-6);
    }

    // rope at small and large positions (the kernel's own sin/cos)
    for (rows, heads, hd, pos0) in [(4usize, 3usize, 16usize, 0usize), (2, 2, 64, 1500)] {
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32))
            .collect();
        let (cf, gf) = pair(&inv);
        let (cx, gx) = pair(&rng.vec(rows * heads * hd, -1.0, 1.0));
        cpu.rope(&cx, &cf, rows, heads, hd, pos0).unwrap();
        gpu.rope(&gx, &gf, rows, heads, hd, pos0).unwrap();
        let (c, g) = get(&cx, &gx, rows * heads * hd);
        close(&format!("rope pos0 {pos0}"), &g, &c, 2e-6);
    }

    // kv_store + attention: prefill at 0, then prefill and decode past one 128-position tile
    for (heads, kv_heads, hd) in [(4usize, 2usize, 8usize), (6, 2, 64), (2, 2, 200)] {
        let kv_dim = kv_heads * hd;
        let ctx_len = 300;
        let (ckc, gkc) = pair(&vec![0.0; ctx_len * kv_dim]);
        let (cvc, gvc) = pair(&vec![0.0; ctx_len * kv_dim]);
        let mut pos = 0;
        for rows in [5usize, 140, 1, 1, 30] {
            let (ck, gk) = pair(&rng.vec(rows * kv_dim, -1.0, 1.0));
            let (cv, gv) = pair(&rng.vec(rows * kv_dim, -1.0, 1.0));
            let (cq, gq) = pair(&rng.vec(rows * heads * hd, -2.0, 2.0));
            let (co, go) = pair(&vec![0.0; rows * heads * hd]);
            cpu.kv_store(&ck, &cv, &ckc, &cvc, rows, kv_dim, pos)
                .unwrap();
            gpu.kv_store(&gk, &gv, &gkc, &gvc, rows, kv_dim, pos)
                .unwrap();
            cpu.attention(&cq, &ckc, &cvc, &co, rows, pos, heads, kv_heads, hd)
                .unwrap();
            gpu.attention(&gq, &gkc, &gvc, &go, rows, pos, heads, kv_heads, hd)
                .unwrap();
            let (c, g) = get(&co, &go, rows * heads * hd);
            close(
                &format!("attention {heads}/{kv_heads}x{hd} rows {rows} pos {pos}"),
                &g,
                &c,
                1e-5,
            );
            pos += rows;
        }
        let (c, g) = get(&ckc, &gkc, pos * kv_dim);
        assert_eq!(c, g, "k cache");
        let (c, g) = get(&cvc, &gvc, pos * kv_dim);
        assert_eq!(c, g, "v cache");
    }

    // element-wise
    let n = 1000;
    let (ca, ga) = pair(&rng.vec(n, -6.0, 6.0));
    let (cb, gb) = pair(&rng.vec(n, -2.0, 2.0));
    let (co, go) = pair(&vec![0.0; n]);
    cpu.silu_mul(&ca, &cb, &co, n).unwrap();
    gpu.silu_mul(&ga, &gb, &go, n).unwrap();
    let (c, g) = get(&co, &go, n);
    close("silu_mul", &g, &c, 1e-6);
    cpu.add(&co, &ca, n - 3).unwrap();
    gpu.add(&go, &ga, n - 3).unwrap();
    let (c, g) = get(&co, &go, n);
    close("add", &g, &c, 1e-6);
    let (cbias, gbias) = pair(&rng.vec(40, -1.0, 1.0));
    cpu.add_bias(&co, &cbias, 25, 40).unwrap();
    gpu.add_bias(&go, &gbias, 25, 40).unwrap();
    let (c, g) = get(&co, &go, n);
    close("add_bias", &g, &c, 1e-6);
    cpu.copy(&ca, 10, &co, 500, 77).unwrap();
    gpu.copy(&ga, 10, &go, 500, 77).unwrap();
    let (c, mut g) = get(&co, &go, n);
    close("copy", &g, &c, 1e-6);
    assert_eq!(g[500..577], gpu.read(&ga, 10, 77).unwrap()[..], "copy");
    // Within one buffer (the CPU reference cannot: it would lock the buffer twice).
    g.copy_within(0..50, 900);
    gpu.copy(&go, 0, &go, 900, 50).unwrap();
    assert_eq!(gpu.read(&go, 0, n).unwrap(), g, "copy within a buffer");
    assert!(gpu.copy(&go, 0, &go, 10, 50).is_err(), "overlapping copy");
}

#[test]
fn tiny_llama_on_the_gpu_matches_transformers_and_peft() {
    let Some(ctx) = gpu() else { return };
    check_tiny_llama_both_prefills(Arc::new(GpuBackend::new(ctx).unwrap()));
}

/// The MLX 4-bit fixture (8-bit lm_head): GPU logits within 1e-3 of the CPU backend's, for
/// prefill and a few decode steps, base and adapted (f16 overlays of a quantised base).
#[test]
fn tiny_llama_mlx4_on_the_gpu_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let files = ModelFiles::open(&fixtures().join("tiny_llama_mlx4")).unwrap();
    let opts = LlamaOptions {
        max_ctx: 64,
        max_batch: 16,
    };
    let mut c = Llama::new(Arc::new(CpuBackend::new()), &files, opts).unwrap();
    let mut g = Llama::new(Arc::new(GpuBackend::new(ctx).unwrap()), &files, opts).unwrap();
    let prompt: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % 64).collect();
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    // Adapted layers run from f16 overlays on the GPU (rounded like MLX) but from f32 ones on
    // the CPU: half a unit in the 11th bit of every adapted weight, hence the looser bound.
    for (adapter, tol) in [(None, 1e-3), (Some(&a), 5e-3)] {
        c.set_adapter(&files, adapter).unwrap();
        g.set_adapter(&files, adapter).unwrap();
        let lc = c.forward(&prompt, true).unwrap();
        let lg = g.forward(&prompt, true).unwrap();
        let d = max_abs_diff(&lg, &lc);
        assert!(
            d <= tol,
            "mlx4 prefill (adapter {}): {d:.2e}",
            adapter.is_some()
        );
        let mut t = argmax(&lc[lc.len() - 64..]);
        for step in 0..5 {
            let lc = c.forward(&[t], false).unwrap();
            let lg = g.forward(&[t], false).unwrap();
            let d = max_abs_diff(&lg, &lc);
            assert!(d <= tol, "mlx4 decode step {step}: {d:.2e}");
            t = argmax(&lc);
        }
    }
}

/// After the first decoded token the loop creates no bind groups, pipelines or buffers: on the
/// plain base, with merged overlays and with spectral adapted layers.
#[test]
fn gpu_decode_loop_creates_no_gpu_objects_after_the_first_token() {
    let files = ModelFiles::open(&fixtures().join("tiny_llama")).unwrap();
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    for (mode, adapter, spectral) in [
        ("plain base", None, false),
        ("merged overlays", Some(&a), false),
        ("spectral layers", Some(&a), true),
    ] {
        let Some(ctx) = gpu() else { return };
        ctx.set_spectral_layers(spectral);
        let be = Arc::new(GpuBackend::new(ctx).unwrap());
        let mut m = Llama::new(
            be.clone(),
            &files,
            LlamaOptions {
                max_ctx: 64,
                max_batch: 8,
            },
        )
        .unwrap();
        m.set_adapter(&files, adapter).unwrap();
        assert_eq!(m.active_overlay_bytes() > 0, adapter.is_some(), "{mode}");
        let mut logits = m.forward(&[1, 5, 9, 13], false).unwrap();
        logits = m.forward(&[argmax(&logits)], false).unwrap();
        let ctx = be.context();
        let objects = || {
            (
                be.cached_bind_groups(),
                ctx.pipeline_count(),
                ctx.live_buffers(),
            )
        };
        let before = objects();
        for _ in 0..10 {
            logits = m.forward(&[argmax(&logits)], false).unwrap();
        }
        assert_eq!(
            objects(),
            before,
            "{mode}: bind groups, pipelines or buffers created while decoding"
        );
    }
}
