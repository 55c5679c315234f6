//! Adapted layers kept in spectral form on the GPU (`GpuContext::set_spectral_layers`): the
//! matmul `W x + ΔW x` against the CPU backend's spectral matmul on small odd/prime shapes
//! (positions that repeat rows and columns) and on shapes whose DFTs take the factorised
//! (Cooley–Tukey) path on one side, both or neither (576, 192, 64 against 97 and 1), for 1, 5
//! and 70 input rows (the last in two scratch chunks where a shape grows the shared scratch
//! buffer), the tiny llama against the transformers + PEFT goldens, and a decode loop that
//! creates no GPU objects. Without an adapter these tests skip with a note, except under
//! FOURIERFT_REQUIRE_GPU=1.

mod common;

use std::sync::Arc;

use common::llama_check::check_tiny_llama_both_prefills;
use common::{fixtures, gpu, random_coeffs, rel_err, scratch, single_layer_adapter};
use fourierft::backend::cpu::{CpuBackend, CpuMat};
use fourierft::backend::wgpu::kernels::matmul::MatFormat;
use fourierft::backend::wgpu::kernels::spectral::SpectralPlan;
use fourierft::backend::wgpu::GpuBackend;
use fourierft::backend::Backend;
use fourierft::fourier::mt19937::Mt19937;
use fourierft::fourier::{Adapter, LayerFit};

use fourierft::weights::ModelFiles;

fn adapter_file(dir: &std::path::Path, d1: usize, d2: usize, n: usize, seed: u64) -> Adapter {
    let path = dir.join(format!("{d1}x{d2}n{n}.safetensors"));
    single_layer_adapter(&path, &random_coeffs(n, seed ^ 0x5eed), 150.0, seed)
}

/// (out, in, n, seed, whether the (input, output) DFTs take the factorised path).
type Case = (usize, usize, usize, u64, (bool, bool));

#[test]
fn gpu_spectral_matmul_matches_the_cpu_spectral_matmul() {
    let Some(ctx) = gpu() else { return };
    ctx.set_spectral_layers(true);
    let gpu = GpuBackend::new(ctx).unwrap();
    let cpu = CpuBackend::new();
    // The model is only consulted for merged (Conv1D) layers; none here.
    let model = ModelFiles::open(&fixtures().join("tiny_llama")).unwrap();
    let dir = scratch("gpu-spectral");
    // Prime and odd sides, n large enough that rows and columns repeat, a single output row, a
    // wide n against a small shape, and SmolLM2-like sides (576 = 24·24, 192 = 16·12,
    // 64 = 8·8) against a prime and 1.
    let cases: &[Case] = &[
        (7, 5, 20, 1, (false, false)),
        (13, 31, 200, 777, (false, false)),
        (1, 9, 5, 3, (true, false)),
        (37, 1, 30, 4, (false, false)),
        (64, 24, 1000, 5, (true, true)),
        (33, 129, 300, 6, (true, true)),
        (97, 61, 2000, 7, (false, false)),
        (576, 192, 1000, 8, (true, true)),
        (192, 576, 1000, 9, (true, true)),
        (576, 576, 1000, 10, (true, true)),
        (97, 64, 500, 11, (true, false)),
        (64, 97, 500, 12, (false, true)),
        (1, 64, 40, 13, (true, false)),
        (64, 1, 40, 14, (false, true)),
    ];
    let mut g = Mt19937::new(99);
    let mut rnd = |n: usize, s: f32| -> Vec<f32> {
        (0..n)
            .map(|_| (g.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0) * s)
            .collect()
    };
    for &(d1, d2, n, seed, split) in cases {
        let a = adapter_file(&dir, d1, d2, n, seed);
        let m = a.require_module("layer").unwrap();
        let (pr, pc) = a.positions(m, d1, d2).unwrap();
        let plan = SpectralPlan::new(d1, d2, &pr, &pc, &m.coeffs, 1.0).unwrap();
        assert_eq!(
            (plan.layout.input.is_some(), plan.layout.output.is_some()),
            split,
            "{d1}x{d2} n={n}: factorised sides"
        );
        let w = rnd(d1 * d2, 0.1);
        let cbase = CpuMat::F32 {
            rows: d1,
            cols: d2,
            data: Arc::new(w.clone()),
        };
        let gbase = gpu
            .matrix_from_bytes(
                "layer",
                d1,
                d2,
                MatFormat::F32,
                bytemuck::cast_slice(&w),
                None,
                None,
            )
            .unwrap();
        let fit = LayerFit {
            module: "layer".into(),
            out_features: d1,
            in_features: d2,
            transposed: false,
            n,
        };
        let fits = [fit];
        let cm = cpu
            .overlays(&model, &a, &fits, &[&cbase], Vec::new())
            .unwrap();
        let gm = gpu
            .overlays(&model, &a, &fits, &[&gbase], Vec::new())
            .unwrap();
        assert!(gm[0].is_spectral(), "{d1}x{d2}: not a spectral layer");
        assert_eq!(
            gpu.overlay_bytes(&gm[0]),
            gm[0].spectral_bytes(),
            "{d1}x{d2}: overlay bytes"
        );
        assert!(gm[0].spectral_bytes() > 0 && gm[0].spectral_bytes() < 64 * n as u64);
        assert_eq!(
            gpu.overlay_read_bytes(&gm[0]),
            (d1 * d2 * 4) as u64 + gm[0].spectral_bytes()
        );
        for rows in [1usize, 5, 70] {
            let x = rnd(rows * d2, 1.0);
            let (cx, cy) = (cpu.vector(&x).unwrap(), cpu.buffer(rows * d1).unwrap());
            let (gx, gy) = (gpu.vector(&x).unwrap(), gpu.buffer(rows * d1).unwrap());
            cpu.matmul(&cx, &cm[0], &cy, rows).unwrap();
            gpu.matmul(&gx, &gm[0], &gy, rows).unwrap();
            let want = cpu.read(&cy, 0, rows * d1).unwrap();
            let got = gpu.read(&gy, 0, rows * d1).unwrap();
            let e = rel_err(&got, &want);
            assert!(e <= 1e-5, "{d1}x{d2} n={n} rows={rows}: rel err {e:.2e}");
            // ΔW x is really there: the base alone differs.
            cpu.matmul(&cx, &cbase, &cy, rows).unwrap();
            let base = cpu.read(&cy, 0, rows * d1).unwrap();
            assert!(
                rel_err(&base, &want) > 1e-4,
                "{d1}x{d2} n={n}: the adapter changes nothing"
            );
        }
    }
}

#[test]
fn tiny_llama_with_spectral_layers_matches_transformers_and_peft() {
    let Some(ctx) = gpu() else { return };
    ctx.set_spectral_layers(true);
    check_tiny_llama_both_prefills(Arc::new(GpuBackend::new(ctx).unwrap()));
}
