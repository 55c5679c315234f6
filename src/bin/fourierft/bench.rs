//! `fourierft bench delta`: positions + ΔW of one 4096×4096 layer on the fast CPU path
//! against PEFT's own algorithm transcribed to Rust, measured in the same run.
//! `fourierft bench apply`: applying an adapter to synthetic quantised layers, GPU vs CPU.

use std::time::Instant;

use serde_json::json;

use fourierft::backend::cpu::merge;
use fourierft::backend::wgpu::apply as gpu_apply;
use fourierft::backend::wgpu::kernels::delta::choose_n1;
use fourierft::backend::wgpu::kernels::dequant::WeightFormat;
use fourierft::backend::wgpu::{GpuContext, GpuLayer};
use fourierft::fourier::delta::{
    default_threads, delta_fast, delta_peft_baseline, relative_max_error, SpectrumRef,
};
use fourierft::fourier::mt19937::Mt19937;
use fourierft::fourier::positions::spectral_positions;
use fourierft::fourier::{
    Adapter, AdapterFormat, AdapterModule, CpuMethod, FourierConfig, LayerFit,
};
use fourierft::weights::{DType, QuantSpec};
use fourierft::{Error, Result};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn delta(as_json: bool, reps: usize) -> Result<()> {
    let (d1, d2, seed, scaling) = (4096usize, 4096usize, 777u64, 150.0f32);
    let threads = default_threads();
    let reps = reps.max(1);
    let mut results = Vec::new();
    for n in [1000usize, 5000] {
        let mut g = Mt19937::new(n as u64);
        let coeffs: Vec<f32> = (0..n)
            .map(|_| g.next_u32() as f32 / u32::MAX as f32 - 0.5)
            .collect();

        // Fast path: O(n) positions + row-FFT ΔW, timed end to end (incl. the output buffer).
        let mut fast_ms = Vec::new();
        let mut pos_ms = Vec::new();
        let mut last = Vec::new();
        for _ in 0..reps {
            let t0 = Instant::now();
            let (rows, cols) = spectral_positions(seed, d1, d2, n);
            let t1 = Instant::now();
            let s = SpectrumRef {
                d1,
                d2,
                rows: &rows,
                cols: &cols,
                coeffs: &coeffs,
                scaling,
            };
            last = delta_fast(s, threads);
            let t2 = Instant::now();
            pos_ms.push((t1 - t0).as_secs_f64() * 1e3);
            fast_ms.push((t2 - t0).as_secs_f64() * 1e3);
        }
        // PEFT's algorithm: full randperm + dense 2-D inverse FFT (FFT rows on the same threads).
        let mut base_ms = Vec::new();
        let mut base = Vec::new();
        for _ in 0..reps.min(3) {
            let t0 = Instant::now();
            base = delta_peft_baseline(seed, d1, d2, &coeffs, scaling, threads).0;
            base_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let base64: Vec<f64> = base.iter().map(|&x| x as f64).collect();
        let diff = relative_max_error(&last, &base64);
        let (f, b) = (median(fast_ms), median(base_ms));
        results.push(json!({
            "n": n,
            "fast_ms": f,
            "fast_positions_ms": median(pos_ms),
            "peft_algorithm_ms": b,
            "speedup": b / f,
            "max_rel_diff": diff,
        }));
    }
    let out = json!({
        "bench": "delta",
        "shape": [d1, d2],
        "seed": seed,
        "threads": threads,
        "reps": reps,
        "fast": "O(n) randperm prefix + per-row scatter + paired real row IFFTs (rustfft f32)",
        "baseline": "full randperm(out*in) + dense complex spectrum + 2-D inverse FFT (rustfft f32)",
        "results": results,
    });
    if as_json {
        crate::print_json(&out);
    } else {
        outln!("ΔW for a {d1}x{d2} layer, {threads} threads, median of {reps}:");
        for r in out["results"].as_array().into_iter().flatten() {
            outln!(
                "  n = {:>5}: fast {:>8.2} ms (positions {:.3} ms)   PEFT algorithm {:>8.2} ms   speed-up {:>6.1}x   max rel diff {:.1e}",
                r["n"], r["fast_ms"].as_f64().unwrap_or(0.0), r["fast_positions_ms"].as_f64().unwrap_or(0.0),
                r["peft_algorithm_ms"].as_f64().unwrap_or(0.0), r["speedup"].as_f64().unwrap_or(0.0),
                r["max_rel_diff"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// One synthetic adapted layer: a 4-bit (or 8-bit) MLX-affine base with F16 scales/biases.
struct SynthLayer {
    name: String,
    rows: usize,
    cols: usize,
    words: Vec<u32>,
    scales: Vec<f32>,
    biases: Vec<f32>,
}

/// (module name, out, in) of each synthetic layer.
type LayerShapes = Vec<(String, usize, usize)>;

fn parse_shapes(spec: &str) -> Result<(String, LayerShapes)> {
    let mut layers = Vec::new();
    match spec {
        "smollm2-135m" => {
            for l in 0..30 {
                layers.push((format!("model.layers.{l}.self_attn.q_proj"), 576, 576));
                layers.push((format!("model.layers.{l}.self_attn.v_proj"), 192, 576));
            }
        }
        "llama2-7b" => {
            for l in 0..32 {
                layers.push((format!("model.layers.{l}.self_attn.q_proj"), 4096, 4096));
                layers.push((format!("model.layers.{l}.self_attn.v_proj"), 4096, 4096));
            }
        }
        custom => {
            for (i, s) in custom.split(',').enumerate() {
                let (o, inn) = s
                    .split_once(['x', 'X'])
                    .and_then(|(a, b)| Some((a.trim().parse::<usize>().ok()?, b.trim().parse::<usize>().ok()?)))
                    .filter(|&(a, b)| a > 0 && b > 0 && b % 64 == 0)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "--shape '{s}': expected smollm2-135m, llama2-7b or OUTxIN[,OUTxIN...] with IN a multiple of 64"
                        ))
                    })?;
                layers.push((format!("layer{i}"), o, inn));
            }
        }
    }
    Ok((spec.to_string(), layers))
}

/// `fourierft bench apply`: apply one adapter (n coefficients per layer) to every layer of a
/// synthetic quantised base: positions + ΔW + merge into f16 overlays, on the GPU and on the
/// fast CPU path in the same run, plus the time to upload those layers' base weights.
pub fn apply(shape: &str, n: usize, bits: u32, reps: usize, as_json: bool) -> Result<()> {
    let (label, shapes) = parse_shapes(shape)?;
    let spec = QuantSpec::new(bits, 64)?;
    let reps = reps.max(1);
    let threads = default_threads();
    // Synthetic base: random codes, scales ~ 0.01, biases ~ -8·scale (F16-exact values).
    let mut g = Mt19937::new(1);
    let layers: Vec<SynthLayer> = shapes
        .iter()
        .map(|(name, rows, cols)| {
            let wpr = cols * bits as usize / 32;
            let gpr = cols / 64;
            let f16r = |x: f32| half::f16::from_f32(x).to_f32();
            let scales: Vec<f32> = (0..rows * gpr)
                .map(|_| f16r(0.005 + (g.next_u32() % 1000) as f32 * 1e-5))
                .collect();
            SynthLayer {
                name: name.clone(),
                rows: *rows,
                cols: *cols,
                words: (0..rows * wpr).map(|_| g.next_u32()).collect(),
                biases: scales
                    .iter()
                    .map(|s| f16r(-s * ((1 << (bits - 1)) as f32)))
                    .collect(),
                scales,
            }
        })
        .collect();
    let coeffs: Vec<Vec<f32>> = layers
        .iter()
        .map(|_| {
            (0..n)
                .map(|_| g.next_u32() as f32 / u32::MAX as f32 - 0.5)
                .collect()
        })
        .collect();
    let cfg_text = format!(
        r#"{{"peft_type":"FOURIERFT","n_frequency":{n},"scaling":150.0,"random_loc_seed":777}}"#
    );
    let config = FourierConfig::from_json_str(std::path::Path::new("synthetic"), &cfg_text)?;
    let adapter = Adapter {
        source: "synthetic".into(),
        format: AdapterFormat::Packed,
        config,
        modules: layers
            .iter()
            .zip(&coeffs)
            .map(|(l, c)| AdapterModule {
                name: l.name.clone(),
                coeffs: c.clone(),
                stored_dtype: DType::F32,
                positions: None,
            })
            .collect(),
        extras: Vec::new(),
        file_bytes: 0,
    };
    let fits: Vec<LayerFit> = layers
        .iter()
        .map(|l| LayerFit {
            module: l.name.clone(),
            out_features: l.rows,
            in_features: l.cols,
            transposed: false,
            n,
        })
        .collect();
    let base_bytes: u64 = layers
        .iter()
        .map(|l| (l.words.len() * 4 + l.scales.len() * 4) as u64)
        .sum();
    let outputs: u64 = layers.iter().map(|l| (l.rows * l.cols) as u64).sum();

    // CPU fast path: positions + ΔW + dequantise-and-add into f16 overlays.
    let mut cpu_ms = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        for (l, m) in layers.iter().zip(&adapter.modules) {
            let d = adapter.module_delta(m, l.rows, l.cols, CpuMethod::Fast)?;
            let o = merge::overlay_f16_affine(
                &l.words,
                &l.scales,
                &l.biases,
                spec,
                DType::F16,
                l.rows,
                l.cols,
                &d.delta,
                threads,
            );
            std::hint::black_box(o);
        }
        cpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // GPU: upload the base layers (one copy each), then apply (positions + plan + ΔW + merge).
    let gpu = match GpuContext::new() {
        Ok(ctx) => {
            // Phones keep overlays of quantised bases in f16.
            ctx.set_f16_overlays(true);
            let half_bytes = |v: &[f32]| -> Vec<u8> {
                v.iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect()
            };
            let host: Vec<(Vec<u8>, Vec<u8>)> = layers
                .iter()
                .map(|l| (half_bytes(&l.scales), half_bytes(&l.biases)))
                .collect();
            let t = Instant::now();
            let mut gl = Vec::with_capacity(layers.len());
            for (l, (s, b)) in layers.iter().zip(&host) {
                gl.push(GpuLayer::from_bytes(
                    &ctx,
                    &l.name,
                    l.rows,
                    l.cols,
                    WeightFormat::Affine {
                        spec,
                        sb: DType::F16,
                    },
                    bytemuck::cast_slice(&l.words),
                    Some(s),
                    Some(b),
                )?);
            }
            ctx.wait()?;
            let upload_ms = t.elapsed().as_secs_f64() * 1e3;
            // Warm-up: compiles the pipelines and allocates the overlays.
            let mut overlays = gpu_apply::apply(&ctx, &gl, &adapter, &fits, Vec::new())?;
            ctx.wait()?;
            let mut ms = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                overlays = gpu_apply::apply(&ctx, &gl, &adapter, &fits, overlays)?;
                ctx.wait()?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let flops: f64 = fits
                .iter()
                .map(|f| {
                    let n1 = choose_n1(f.out_features, n) as f64;
                    (8.0 * n as f64 / n1 + 4.0 * n1) * (f.out_features * f.in_features) as f64
                })
                .sum();
            Some((
                ctx.info.name.clone(),
                format!("{:?}", ctx.info.backend),
                upload_ms,
                median(ms),
                flops,
            ))
        }
        Err(e) => {
            eprintln!("no GPU: {e}");
            None
        }
    };
    let cpu = median(cpu_ms);
    let mut out = json!({
        "bench": "apply",
        "shape": label,
        "layers": layers.len(),
        "n": n,
        "base": format!("MLX affine {bits}-bit, group 64, F16 scales"),
        "overlay": "f16",
        "base_bytes": base_bytes,
        "overlay_bytes": outputs * 2,
        "cpu_threads": threads,
        "cpu_apply_ms": cpu,
        "reps": reps,
    });
    if let Some((name, backend, upload, gpu_ms, flops)) = gpu {
        out["gpu"] = json!(name);
        out["gpu_backend"] = json!(backend);
        out["upload_ms"] = json!(upload);
        out["gpu_apply_ms"] = json!(gpu_ms);
        out["gpu_speedup_vs_cpu"] = json!(cpu / gpu_ms);
        out["apply_vs_upload"] = json!(gpu_ms / upload);
        out["gpu_delta_gflop"] = json!(flops / 1e9);
        out["gpu_gflops"] = json!(flops / 1e9 / (gpu_ms / 1e3));
    }
    if as_json {
        crate::print_json(&out);
    } else {
        outln!(
            "apply one adapter (n = {n}) to {} layers of {label} ({bits}-bit base):",
            layers.len()
        );
        outln!("  CPU fast path ({threads} threads): {cpu:.1} ms");
        if let Some(g) = out.get("gpu") {
            outln!(
                "  GPU {g}: apply {:.1} ms ({:.1}x the CPU), upload of the base layers {:.1} ms (apply/upload {:.2})",
                out["gpu_apply_ms"].as_f64().unwrap_or(0.0),
                out["gpu_speedup_vs_cpu"].as_f64().unwrap_or(0.0),
                out["upload_ms"].as_f64().unwrap_or(0.0),
                out["apply_vs_upload"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes moved per second (read + write) by the backend's copy op on a large buffer.
fn copy_bandwidth<B: fourierft::backend::Backend>(be: &B, bytes: usize) -> Result<f64> {
    let n = bytes / 4;
    // Real data: a never-written buffer would be the kernel's shared zero page on the CPU.
    let a = be.vector(&(0..n).map(|i| i as f32).collect::<Vec<_>>())?;
    let b = be.buffer(n)?;
    be.copy(&a, 0, &b, 0, n)?;
    be.sync()?;
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        be.copy(&a, 0, &b, 0, n)?;
    }
    be.sync()?;
    Ok((2 * reps * n * 4) as f64 / t.elapsed().as_secs_f64())
}

/// Prefill and decode of a model on one backend, with and without an adapter.
pub fn decode_on<B: fourierft::backend::Backend>(
    be: std::sync::Arc<B>,
    files: &fourierft::weights::ModelFiles,
    adapter: Option<&Adapter>,
    prompt_tokens: usize,
    decode_tokens: usize,
) -> Result<serde_json::Value> {
    use fourierft::model::{Llama, LlamaOptions};
    let vocab = files.config.vocab_size as u32;
    let prompt: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| (100 + 37 * i) % vocab)
        .collect();
    let mut m = Llama::new(
        be.clone(),
        files,
        LlamaOptions {
            max_ctx: prompt_tokens + decode_tokens + 1,
            max_batch: prompt_tokens.clamp(1, 128),
        },
    )?;
    let run = |m: &mut Llama<B>| -> Result<(f64, f64)> {
        m.reset();
        let t = Instant::now();
        let mut logits = m.forward(&prompt, false)?;
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..decode_tokens {
            let next = fourierft::sampler::argmax(&logits);
            logits = m.forward(&[next], false)?;
        }
        Ok((prefill, t.elapsed().as_secs_f64()))
    };
    run(&mut m)?; // warm-up: pipelines, caches
    let (prefill, decode) = run(&mut m)?;
    let bytes = m.weight_bytes_per_token();
    let rss = peak_rss_bytes();
    let copy = copy_bandwidth(be.as_ref(), 64 << 20)?;
    let decode_tps = decode_tokens as f64 / decode;
    let achieved = bytes as f64 * decode_tps;
    let mut v = json!({
        "backend": be.name(),
        "prompt_tokens": prompt_tokens,
        "decode_tokens": decode_tokens,
        "prefill_tokens_per_s": prompt_tokens as f64 / prefill,
        "decode_tokens_per_s": decode_tps,
        "weight_bytes_per_token": bytes,
        "achieved_gb_per_s": achieved / 1e9,
        "copy_gb_per_s": copy / 1e9,
        "roofline_ratio": achieved / copy,
        "peak_rss_bytes": rss,
    });
    if let Some(a) = adapter {
        m.set_adapter(files, Some(a))?;
        run(&mut m)?;
        let (_, decode_a) = run(&mut m)?;
        v["adapter"] = json!(a.source);
        v["adapted_layers"] = json!(a.modules.len());
        v["decode_tokens_per_s_adapter"] = json!(decode_tokens as f64 / decode_a);
        v["adapter_extra_cost_per_token"] = json!(decode_a / decode - 1.0);
        v["weight_bytes_per_token_adapter"] = json!(m.weight_bytes_per_token());
    }
    Ok(v)
}

/// `fourierft bench decode`.
pub fn decode(
    model: &std::path::Path,
    adapter: Option<&std::path::Path>,
    gpu: Option<GpuContext>,
    spectral: bool,
    prompt_tokens: usize,
    decode_tokens: usize,
    as_json: bool,
) -> Result<()> {
    let files = fourierft::weights::ModelFiles::open(model)?;
    let adapter = adapter.map(Adapter::load).transpose()?;
    if spectral && gpu.is_none() {
        return Err(Error::InvalidArgument(
            "--spectral is for the GPU backend (the CPU always keeps ΔW in spectral form)".into(),
        ));
    }
    let mut v = match gpu {
        Some(ctx) => {
            ctx.set_spectral_layers(spectral);
            crate::gpu_backend::bench_decode(
                ctx,
                &files,
                adapter.as_ref(),
                prompt_tokens,
                decode_tokens,
            )?
        }
        None => decode_on(
            std::sync::Arc::new(fourierft::backend::cpu::CpuBackend::new()),
            &files,
            adapter.as_ref(),
            prompt_tokens,
            decode_tokens,
        )?,
    };
    v["bench"] = json!("decode");
    v["spectral_layers"] = json!(spectral);
    v["model"] = json!(model);
    v["model_file_bytes"] = json!(files.weights.total_bytes());
    if as_json {
        crate::print_json(&v);
    } else {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        outln!(
            "{} on {}:",
            model.display(),
            v["backend"].as_str().unwrap_or("?")
        );
        outln!(
            "  prefill {:.1} tok/s, decode {:.1} tok/s",
            f("prefill_tokens_per_s"),
            f("decode_tokens_per_s")
        );
        outln!(
            "  {:.1} MB of weights per token: {:.2} GB/s vs copy {:.2} GB/s (roofline {:.0}%)",
            f("weight_bytes_per_token") / 1e6,
            f("achieved_gb_per_s"),
            f("copy_gb_per_s"),
            100.0 * f("roofline_ratio")
        );
        if v.get("adapter").is_some() {
            outln!(
                "  with the adapter: decode {:.1} tok/s ({:+.1}% per token)",
                f("decode_tokens_per_s_adapter"),
                100.0 * f("adapter_extra_cost_per_token")
            );
        }
        outln!(
            "  peak RSS {:.1} MB (weights file {:.1} MB)",
            f("peak_rss_bytes") / 1e6,
            f("model_file_bytes") / 1e6
        );
    }
    Ok(())
}

/// `fourierft bench swap`: cold swaps (overlays rebuilt), warm swaps (cached overlays, a pointer
/// switch) and, in the same run, the time to open and upload the base; the ratios.
pub fn swap(
    model: &std::path::Path,
    adapters: &[std::path::PathBuf],
    backend: fourierft::backend::BackendChoice,
    spectral: bool,
    as_json: bool,
) -> Result<()> {
    use fourierft::backend::BackendChoice;
    use fourierft::{Engine, EngineConfig};
    if adapters.len() < 2 {
        return Err(Error::InvalidArgument(
            "bench swap needs at least two --adapter".into(),
        ));
    }
    let backend = match (spectral, backend) {
        (false, b) => b,
        (true, BackendChoice::Cpu) => {
            return Err(Error::InvalidArgument(
                "--spectral is for the GPU backend (the CPU always keeps ΔW in spectral form)"
                    .into(),
            ))
        }
        (true, _) => BackendChoice::Gpu,
    };
    let t = Instant::now();
    // The budget holds every adapter, so the second round of swaps is warm.
    let e = Engine::open(
        model,
        EngineConfig {
            backend,
            max_ctx: 256,
            overlay_budget_bytes: u64::MAX,
            spectral_gpu_layers: spectral,
        },
    )?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let ids: Vec<u64> = adapters
        .iter()
        .map(|a| e.load_adapter(a))
        .collect::<Result<_>>()?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for round in 0..3 {
        for &id in &ids {
            e.set_adapter(Some(id))?;
            let s = e.stats();
            let ms = s.last_swap_secs * 1e3;
            if round == 0 {
                cold.push(ms);
            } else if s.last_swap_warm {
                warm.push(ms);
            }
        }
    }
    let s = e.stats();
    let (c, w) = (median(cold), median(warm));
    let v = json!({
        "bench": "swap",
        "model": model,
        "backend": s.backend,
        "adapters": adapters,
        "open_and_upload_ms": open_ms,
        "cold_swap_ms": c,
        "warm_swap_ms": w,
        "cold_vs_open": c / open_ms,
        "warm_vs_cold": w / c,
        "overlay_bytes": s.overlay_bytes,
        "spectral_layers": spectral,
    });
    if as_json {
        crate::print_json(&v);
    } else {
        outln!(
            "{} on {}: open + upload {open_ms:.1} ms",
            model.display(),
            s.backend
        );
        if spectral {
            outln!("  adapted layers: base + spectral ΔW (--spectral)");
        }
        outln!(
            "  cold swap (rebuild overlays) {c:.2} ms ({:.1}% of open)",
            100.0 * c / open_ms
        );
        outln!("  warm swap (cached overlays)  {w:.4} ms",);
        outln!("  overlays held: {:.1} MB", s.overlay_bytes as f64 / 1e6);
    }
    Ok(())
}
