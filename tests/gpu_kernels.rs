//! The WGSL kernels against the CPU oracle, on whatever adapter the machine has (lavapipe in
//! CI). Without an adapter these tests skip with a note — except under FOURIERFT_REQUIRE_GPU=1
//! (set by .ci/run), where they fail.

mod common;

use common::{fixtures, gpu, random_coeffs, rel_err, scratch, single_layer_adapter};
use fourierft::backend::cpu::merge;
use fourierft::backend::wgpu::{apply, GpuLayer};
use fourierft::fourier::delta::{delta_reference_f64, SpectrumRef};
use fourierft::fourier::positions::spectral_positions;
use fourierft::fourier::{Adapter, CpuMethod};
use fourierft::weights::writer::{write_safetensors, OutTensor};
use fourierft::weights::{DType, ModelFiles, QuantSpec, SafeTensorsFile};

const FIXTURE_ADAPTERS: &[(&str, &str)] = &[
    ("llama_a", "tiny_llama"),
    ("llama_b", "tiny_llama"),
    ("llama_pattern", "tiny_llama"),
    ("llama_f16", "tiny_llama"),
    ("bert_cls", "tiny_bert"),
    ("gpt2_conv1d", "tiny_gpt2"),
];

#[test]
fn gpu_delta_matches_peft_for_every_fixture_adapter() {
    let Some(ctx) = gpu() else { return };
    for (name, model) in FIXTURE_ADAPTERS {
        let a = Adapter::load(&fixtures().join("adapters").join(name)).unwrap();
        let m = ModelFiles::open(&fixtures().join(model)).unwrap();
        let golden =
            SafeTensorsFile::open(&fixtures().join(format!("golden/{name}_delta.safetensors")))
                .unwrap();
        for fit in a.fit(&m).unwrap() {
            let (w, rows, cols) =
                apply::delta(&ctx, &a, &fit.module, fit.out_features, fit.in_features).unwrap();
            let exact = golden
                .get(&format!("{}.delta_w_f32", fit.module))
                .unwrap_or_else(|| golden.tensor(&format!("{}.delta_w", fit.module)).unwrap());
            let e = rel_err(&w, &exact.to_f32_vec().unwrap());
            assert!(e <= 1e-5, "{name} {}: GPU ΔW rel err {e:.2e}", fit.module);
            let idx: Vec<i64> = rows.iter().chain(&cols).map(|&x| x as i64).collect();
            assert_eq!(
                idx,
                golden
                    .tensor(&format!("{}.indices", fit.module))
                    .unwrap()
                    .to_i64_vec()
                    .unwrap()
            );
        }
    }
}

/// Shapes and seeds no fixture has: odd, prime (no divisor ≤ 64: one group), tall, wide, n = out·in.
#[test]
fn gpu_delta_matches_f64_on_unseen_shapes() {
    let Some(ctx) = gpu() else { return };
    let cases: &[(usize, usize, usize, u64, f32)] = &[
        (100, 37, 500, 31337, 77.5),
        (37, 100, 300, 5, 150.0),
        (131, 7, 200, 9, 300.0),
        (577, 1, 400, 123, 10.0),
        (1, 96, 96, 2, 1.0),
        (192, 576, 1000, 777, 150.0),
        (12, 12, 144, 4242, 150.0),
    ];
    let dir = scratch("gpu-unseen");
    for &(d1, d2, n, seed, scaling) in cases {
        let c = random_coeffs(n, seed ^ 0xabc);
        let (rows, cols) = spectral_positions(seed, d1, d2, n);
        let want = delta_reference_f64(SpectrumRef {
            d1,
            d2,
            rows: &rows,
            cols: &cols,
            coeffs: &c,
            scaling,
        });
        // Through a packed adapter file, as a user would.
        let a = single_layer_adapter(
            &dir.join(format!("{d1}x{d2}.safetensors")),
            &c,
            scaling,
            seed,
        );
        let (w, _, _) = apply::delta(&ctx, &a, "layer", d1, d2).unwrap();
        let want32: Vec<f32> = want.iter().map(|&x| x as f32).collect();
        let e = rel_err(&w, &want32);
        assert!(e <= 1e-5, "{d1}x{d2} n={n} seed={seed}: rel err {e:.2e}");
    }
}

/// Each quantised / float base format, each merged overlay against the CPU oracle.
fn check_overlays(
    ctx: &fourierft::backend::wgpu::GpuContext,
    model_dir: &std::path::Path,
    adapter: &str,
) {
    let model = ModelFiles::open(model_dir).unwrap();
    let a = Adapter::load(&fixtures().join("adapters").join(adapter)).unwrap();
    let fits = a.fit(&model).unwrap();
    let layers: Vec<GpuLayer> = fits
        .iter()
        .map(|f| GpuLayer::upload(ctx, &model, &f.module).unwrap())
        .collect();
    for prefer_f16 in [true, false] {
        ctx.set_f16_overlays(prefer_f16);
        let overlays = apply::apply(ctx, &layers, &a, &fits, Vec::new()).unwrap();
        for (fit, ov) in fits.iter().zip(&overlays) {
            let got = ov.read(ctx).unwrap();
            let (want, f16) = merge::overlay(&model, &a, fit, prefer_f16).unwrap();
            assert_eq!(ov.f16, f16, "{}: overlay dtype", fit.module);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                // f16: within one f16 ulp (deq(W) is rounded to f16 first, then the sum);
                // f32: within f32 noise of the kernel's sums.
                let tol = if f16 {
                    (w.abs() * 2f32.powi(-10)).max(2f32.powi(-24))
                } else {
                    1e-6 * w.abs().max(1.0)
                };
                assert!(
                    (g - w).abs() <= tol,
                    "{} {} [{i}]: gpu {g} cpu {w}",
                    model_dir.display(),
                    fit.module
                );
            }
            // The adapter really changed the layer.
            let (base, _) = merge::base_values(&model, &fit.module).unwrap();
            assert!(
                got.iter().zip(&base).any(|(x, y)| (x - y).abs() > 1e-4),
                "{}: overlay equals base",
                fit.module
            );
        }
    }
    ctx.set_f16_overlays(false);
}

#[test]
fn overlays_for_f32_quantised_and_conv1d_bases() {
    let Some(ctx) = gpu() else { return };
    check_overlays(&ctx, &fixtures().join("tiny_llama"), "llama_a");
    check_overlays(&ctx, &fixtures().join("tiny_llama"), "llama_b");
    check_overlays(&ctx, &fixtures().join("tiny_llama_mlx4"), "llama_pattern");
    check_overlays(&ctx, &fixtures().join("tiny_gpt2"), "gpt2_conv1d");
    check_overlays(&ctx, &fixtures().join("tiny_bert"), "bert_cls");
    // 4- and 8-bit bases of every group size, quantised here by the MLX-exact quantiser.
    let dir = scratch("gpu-quant");
    for (bits, group) in [
        (4u32, 32usize),
        (8, 32),
        (4, 64),
        (8, 64),
        (2, 32),
        (3, 32),
        (5, 32),
        (6, 32),
    ] {
        let out = dir.join(format!("q{bits}g{group}"));
        fourierft::weights::quantize_model_dir(
            &fixtures().join("tiny_llama"),
            &out,
            QuantSpec {
                bits,
                group_size: group,
            },
            &mut |_, _| {},
        )
        .unwrap();
        check_overlays(&ctx, &out, "llama_a");
        check_overlays(&ctx, &out, "llama_b");
    }
}

/// F16 and BF16 bases: tiny_llama converted, and an MLX model whose scales are F16/BF16.
#[test]
fn overlays_for_f16_and_bf16_bases() {
    let Some(ctx) = gpu() else { return };
    let dir = scratch("gpu-half");
    let src = ModelFiles::open(&fixtures().join("tiny_llama")).unwrap();
    for dt in [DType::F16, DType::BF16] {
        let out = dir.join(format!("{dt}"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(
            fixtures().join("tiny_llama/config.json"),
            out.join("config.json"),
        )
        .unwrap();
        let tensors: Vec<OutTensor> = src
            .weights
            .names()
            .iter()
            .map(|n| {
                let t = src.weights.tensor(n).unwrap();
                OutTensor::floats(
                    n.to_string(),
                    t.shape.to_vec(),
                    dt,
                    &t.to_f32_vec().unwrap(),
                )
            })
            .collect();
        write_safetensors(&out.join("model.safetensors"), &tensors, None).unwrap();
        check_overlays(&ctx, &out, "llama_a");
        // ... and quantised from that half-precision model: scales/biases in F16/BF16.
        let q = dir.join(format!("{dt}-q4"));
        fourierft::weights::quantize_model_dir(
            &out,
            &q,
            QuantSpec {
                bits: 4,
                group_size: 32,
            },
            &mut |_, _| {},
        )
        .unwrap();
        check_overlays(&ctx, &q, "llama_b");
    }
}

/// Tensors larger than a storage binding are processed in row chunks bound at offsets.
#[test]
fn chunked_bindings_give_the_same_overlays() {
    let Some(mut ctx) = gpu() else { return };
    ctx.limits.max_storage_buffer_binding_size = 4096;
    check_overlays(&ctx, &fixtures().join("tiny_llama"), "llama_b");
    check_overlays(&ctx, &fixtures().join("tiny_llama_mlx4"), "llama_a");
    let a = Adapter::load(&fixtures().join("adapters/llama_b")).unwrap();
    let m = a.require_module("model.layers.1.mlp.down_proj").unwrap();
    let (w, _, _) = apply::delta(&ctx, &a, &m.name, 32, 64).unwrap();
    let want = a
        .module_delta(m, 32, 64, CpuMethod::Reference)
        .unwrap()
        .delta;
    assert!(rel_err(&w, &want) <= 1e-5);
}

#[test]
fn swapping_rewrites_overlays_in_place() {
    let Some(ctx) = gpu() else { return };
    let model = ModelFiles::open(&fixtures().join("tiny_llama_mlx4")).unwrap();
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    let fits = a.fit(&model).unwrap();
    let layers: Vec<GpuLayer> = fits
        .iter()
        .map(|f| GpuLayer::upload(&ctx, &model, &f.module).unwrap())
        .collect();
    let first = apply::apply(&ctx, &layers, &a, &fits, Vec::new()).unwrap();
    let before: Vec<Vec<f32>> = first.iter().map(|o| o.read(&ctx).unwrap()).collect();
    let pipelines = ctx.pipeline_count();
    // Apply again into the same buffers: identical result, no new pipeline.
    let again = apply::apply(&ctx, &layers, &a, &fits, first).unwrap();
    for (o, b) in again.iter().zip(&before) {
        assert_eq!(&o.read(&ctx).unwrap(), b);
    }
    assert_eq!(ctx.pipeline_count(), pipelines, "pipelines are cached");
}

/// An app can hand in the device it already owns.
#[test]
fn context_from_an_app_owned_device() {
    let Some(probe) = gpu() else { return };
    drop(probe);
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let ctx = fourierft::backend::wgpu::GpuContext::from_device(
        device,
        queue,
        adapter.get_info(),
        adapter.features(),
    );
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    let m = a.require_module("model.layers.0.self_attn.v_proj").unwrap();
    let (w, _, _) = apply::delta(&ctx, &a, &m.name, 16, 32).unwrap();
    let want = a
        .module_delta(m, 16, 32, CpuMethod::Reference)
        .unwrap()
        .delta;
    assert!(rel_err(&w, &want) <= 1e-5);
}

/// A shader the device rejects is an error naming the shader, never a panic.
#[test]
fn a_rejected_shader_is_an_error() {
    use fourierft::backend::wgpu::context::{Binding, ShaderSource};
    let Some(ctx) = gpu() else { return };
    let bad = ShaderSource {
        name: "bad.wgsl",
        code: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
    };
    let e = ctx
        .kernel(bad, "main", &[Binding::Uniform], &[])
        .err()
        .expect("rejected")
        .to_string();
    assert!(e.contains("bad.wgsl"), "{e}");
    // The context stays usable.
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    assert!(apply::delta(&ctx, &a, "model.layers.0.self_attn.q_proj", 32, 32).is_ok());
}
