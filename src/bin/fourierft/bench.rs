//! `fourierft bench delta`: positions + ΔW of one 4096×4096 layer on the fast CPU path
//! against PEFT's own algorithm transcribed to Rust, measured in the same run.

use std::time::Instant;

use serde_json::json;

use fourierft::fourier::delta::{
    default_threads, delta_fast, delta_peft_baseline, relative_max_error, SpectrumRef,
};
use fourierft::fourier::mt19937::Mt19937;
use fourierft::fourier::positions::spectral_positions;
use fourierft::Result;

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
