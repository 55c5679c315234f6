//! ΔW on the CPU.
//!
//! PEFT: `ΔW = scaling · Re(ifft2(dense))`, dense `[d1 = out, d2 = in]` zero except
//! `dense[u_k, v_k] = c_k`, i.e.
//! `ΔW[p, q] = scaling/(d1·d2) · Σ_k c_k cos(2π(u_k p/d1 + v_k q/d2))`.
//!
//! Two implementations:
//! - [`delta_reference_f64`]: the closed form in f64, O(n·d1·d2); the test oracle.
//! - [`delta_fast`]: per output row p the row spectrum `Z_p[v] = Σ_{k: v_k = v} c_k ω1^{u_k p}`
//!   is scattered directly (n complex MACs; phases reduced as integers `(u_k p) mod d1` and
//!   looked up in a table built in f64), then one length-d2 inverse FFT gives the row. Two
//!   rows share one complex FFT: the spectra are made Hermitian, so
//!   `IFFT(H(Z_a) + i·H(Z_b)) = Re(ifft(Z_a)) + i·Re(ifft(Z_b))`.
//!   Cost O(n·d1 + d1·d2·log d2 / 2), threads over row blocks, no d1×d2 complex buffer.
//!
//! [`delta_peft_baseline`] is PEFT's own algorithm done in Rust (full randperm, dense complex
//! spectrum, 2-D inverse FFT), kept for the benchmark only.

use std::f64::consts::PI;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::mt19937::Mt19937;

/// One layer's sparse spectrum: d1 = out_features (rows), d2 = in_features (cols).
#[derive(Debug, Clone, Copy)]
pub struct SpectrumRef<'a> {
    pub d1: usize,
    pub d2: usize,
    pub rows: &'a [u32],
    pub cols: &'a [u32],
    pub coeffs: &'a [f32],
    pub scaling: f32,
}

impl SpectrumRef<'_> {
    fn check(&self) {
        debug_assert_eq!(self.rows.len(), self.coeffs.len());
        debug_assert_eq!(self.cols.len(), self.coeffs.len());
        debug_assert!(self.rows.iter().all(|&u| (u as usize) < self.d1));
        debug_assert!(self.cols.iter().all(|&v| (v as usize) < self.d2));
    }
}

/// Closed form in f64 (phases reduced with integer arithmetic). Row-major `[d1, d2]`.
/// PEFT computes in f32; this is the exact value it approximates.
pub fn delta_reference_f64(s: SpectrumRef<'_>) -> Vec<f64> {
    s.check();
    let (d1, d2) = (s.d1, s.d2);
    let cos1: Vec<f64> = (0..d1)
        .map(|j| (2.0 * PI * j as f64 / d1 as f64).cos())
        .collect();
    let sin1: Vec<f64> = (0..d1)
        .map(|j| (2.0 * PI * j as f64 / d1 as f64).sin())
        .collect();
    let cos2: Vec<f64> = (0..d2)
        .map(|j| (2.0 * PI * j as f64 / d2 as f64).cos())
        .collect();
    let sin2: Vec<f64> = (0..d2)
        .map(|j| (2.0 * PI * j as f64 / d2 as f64).sin())
        .collect();
    let norm = s.scaling as f64 / (d1 as f64 * d2 as f64);
    let mut out = vec![0f64; d1 * d2];
    for k in 0..s.coeffs.len() {
        let (u, v, c) = (
            s.rows[k] as u64,
            s.cols[k] as u64,
            s.coeffs[k] as f64 * norm,
        );
        for p in 0..d1 {
            let a = ((u * p as u64) % d1 as u64) as usize;
            let (ca, sa) = (c * cos1[a], c * sin1[a]);
            let row = &mut out[p * d2..(p + 1) * d2];
            for (q, o) in row.iter_mut().enumerate() {
                let b = ((v * q as u64) % d2 as u64) as usize;
                *o += ca * cos2[b] - sa * sin2[b];
            }
        }
    }
    out
}

/// Number of worker threads used by the fast CPU paths.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 64)
}

/// Fast CPU ΔW, f32, row-major `[d1, d2]`, within ~1e-6·max|ΔW| of the f64 closed form.
pub fn delta_fast(s: SpectrumRef<'_>, threads: usize) -> Vec<f32> {
    let mut out = vec![0f32; s.d1 * s.d2];
    delta_fast_into(s, threads, &mut out);
    out
}

/// As [`delta_fast`], writing into `out` (length d1·d2).
pub fn delta_fast_into(s: SpectrumRef<'_>, threads: usize, out: &mut [f32]) {
    s.check();
    let (d1, d2) = (s.d1, s.d2);
    assert_eq!(out.len(), d1 * d2, "output buffer must be d1*d2");
    if d1 == 0 || d2 == 0 {
        return;
    }
    // Twiddles e^{+2πi j/d1}, computed in f64 and rounded once.
    let tw: Vec<Complex<f32>> = (0..d1)
        .map(|j| {
            let a = 2.0 * PI * j as f64 / d1 as f64;
            Complex::new(a.cos() as f32, a.sin() as f32)
        })
        .collect();
    // Fold the normalisation and the 1/2 of the Hermitian split into the coefficients.
    let norm = s.scaling as f64 / (d1 as f64 * d2 as f64) * 0.5;
    let coef: Vec<f32> = s.coeffs.iter().map(|&c| (c as f64 * norm) as f32).collect();
    let fft = FftPlanner::<f32>::new().plan_fft_inverse(d2);

    // Row pairs are the unit of work; each thread takes a contiguous block of them.
    let pairs = d1.div_ceil(2);
    // Spawning threads costs more than a small layer: ~1 thread per 64K outputs.
    let threads = threads.clamp(1, pairs).min((d1 * d2 / 65536).max(1));
    if threads == 1 {
        rows_block(s, 0, out, &tw, &coef, fft);
        return;
    }
    let pairs_per = pairs.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut rest = out;
        let mut p0 = 0usize;
        while p0 < d1 {
            let rows_here = (pairs_per * 2).min(d1 - p0);
            let (chunk, tail) = rest.split_at_mut(rows_here * d2);
            rest = tail;
            let (tw, coef, fft) = (&tw, &coef, fft.clone());
            scope.spawn(move || rows_block(s, p0, chunk, tw, coef, fft));
            p0 += rows_here;
        }
    });
}

/// Rows `[p0, p0 + chunk.len()/d2)` of ΔW.
fn rows_block(
    s: SpectrumRef<'_>,
    p0: usize,
    chunk: &mut [f32],
    tw: &[Complex<f32>],
    coef: &[f32],
    fft: Arc<dyn Fft<f32>>,
) {
    let (d1, d2) = (s.d1 as u64, s.d2);
    let n = coef.len();
    let nrows = chunk.len() / d2;
    // idx[k] = (u_k · p) mod d1 for the current row p, advanced by u_k per row.
    let mut idx: Vec<u64> = s
        .rows
        .iter()
        .map(|&u| (u as u64 * p0 as u64) % d1)
        .collect();
    let step: Vec<u64> = s.rows.iter().map(|&u| u as u64 % d1).collect();
    let neg_v: Vec<usize> = s.cols.iter().map(|&v| (d2 - v as usize) % d2).collect();
    let mut buf = vec![Complex::new(0f32, 0f32); d2];
    let mut scratch = vec![Complex::new(0f32, 0f32); fft.get_inplace_scratch_len()];
    let mut r = 0;
    while r < nrows {
        let two = r + 1 < nrows;
        buf.iter_mut().for_each(|z| *z = Complex::new(0.0, 0.0));
        for k in 0..n {
            let va = tw[idx[k] as usize] * coef[k];
            let mut ia = idx[k] + step[k];
            if ia >= d1 {
                ia -= d1;
            }
            // Row b = p+1 goes in the imaginary part: W += i·H(Z_b).
            let vb = if two {
                tw[ia as usize] * coef[k]
            } else {
                Complex::new(0.0, 0.0)
            };
            let v = s.cols[k] as usize;
            // H(Z)[v] += z/2 and H(Z)[-v] += conj(z)/2 (the 1/2 is in coef).
            buf[v] += Complex::new(va.re - vb.im, va.im + vb.re);
            buf[neg_v[k]] += Complex::new(va.re + vb.im, -va.im + vb.re);
            // Advance two rows.
            let mut i2 = ia + step[k];
            if i2 >= d1 {
                i2 -= d1;
            }
            idx[k] = i2;
        }
        fft.process_with_scratch(&mut buf, &mut scratch);
        let row_a = &mut chunk[r * d2..(r + 1) * d2];
        for (o, z) in row_a.iter_mut().zip(&buf) {
            *o = z.re;
        }
        if two {
            let row_b = &mut chunk[(r + 1) * d2..(r + 2) * d2];
            for (o, z) in row_b.iter_mut().zip(&buf) {
                *o = z.im;
            }
        }
        r += 2;
    }
}

/// PEFT's algorithm transcribed to Rust, for the benchmark baseline: the full
/// `torch.randperm(out*in)` (N int64s, N-1 draws), a dense complex `[d1, d2]` spectrum and a
/// 2-D inverse FFT (rows, transpose, rows, transpose). FFT rows are spread over `threads`.
/// Returns ΔW `[d1, d2]` (f32) and the n positions it used.
pub fn delta_peft_baseline(
    seed: u64,
    d1: usize,
    d2: usize,
    coeffs: &[f32],
    scaling: f32,
    threads: usize,
) -> (Vec<f32>, Vec<u64>) {
    let total = d1 * d2;
    let mut g = Mt19937::new(seed);
    let mut perm: Vec<i64> = (0..total as i64).collect();
    for i in 0..total.saturating_sub(1) {
        let z = g.next_u32() as usize % (total - i);
        perm.swap(i, i + z);
    }
    let idx: Vec<u64> = perm[..coeffs.len()].iter().map(|&k| k as u64).collect();
    drop(perm);
    let mut dense = vec![Complex::new(0f32, 0f32); total];
    for (k, &i) in idx.iter().enumerate() {
        dense[i as usize] = Complex::new(coeffs[k], 0.0);
    }
    let mut planner = FftPlanner::<f32>::new();
    let f2 = planner.plan_fft_inverse(d2);
    let f1 = planner.plan_fft_inverse(d1);
    fft_rows(&mut dense, d2, &f2, threads);
    let mut t = transpose(&dense, d1, d2);
    drop(dense);
    fft_rows(&mut t, d1, &f1, threads);
    let back = transpose(&t, d2, d1);
    drop(t);
    let norm = scaling / (d1 as f32 * d2 as f32);
    (back.iter().map(|z| z.re * norm).collect(), idx)
}

fn fft_rows(data: &mut [Complex<f32>], len: usize, fft: &Arc<dyn Fft<f32>>, threads: usize) {
    let rows = data.len() / len;
    let per = rows.div_ceil(threads.clamp(1, rows.max(1)));
    std::thread::scope(|scope| {
        for chunk in data.chunks_mut(per * len) {
            let fft = fft.clone();
            scope.spawn(move || {
                let mut scratch = vec![Complex::new(0f32, 0f32); fft.get_inplace_scratch_len()];
                fft.process_with_scratch(chunk, &mut scratch);
            });
        }
    });
}

fn transpose(a: &[Complex<f32>], rows: usize, cols: usize) -> Vec<Complex<f32>> {
    let mut out = vec![Complex::new(0f32, 0f32); a.len()];
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
    out
}

/// max |a - b| / max |b| (0 when b is all zero and a equals it).
pub fn relative_max_error(a: &[f32], b: &[f64]) -> f64 {
    let maxb = b.iter().fold(0f64, |m, &x| m.max(x.abs()));
    let maxd = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    if maxb == 0.0 {
        maxd
    } else {
        maxd / maxb
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fourier::positions::spectral_positions;

    fn coeffs(n: usize, seed: u64) -> Vec<f32> {
        let mut g = Mt19937::new(seed);
        (0..n)
            .map(|_| (g.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0)
            .collect()
    }

    #[test]
    fn fast_matches_reference_on_odd_and_even_shapes() {
        for &(d1, d2, n, seed) in &[
            (1usize, 1usize, 1usize, 0u64),
            (7, 5, 20, 1),
            (32, 32, 50, 777),
            (33, 17, 100, 5),
            (64, 96, 300, 42),
            (3, 128, 384, 9),
        ] {
            let (rows, cols) = spectral_positions(seed, d1, d2, n);
            let c = coeffs(n, seed + 1);
            let s = SpectrumRef {
                d1,
                d2,
                rows: &rows,
                cols: &cols,
                coeffs: &c,
                scaling: 150.0,
            };
            let r = delta_reference_f64(s);
            for threads in [1, 2, 3] {
                let f = delta_fast(s, threads);
                let e = relative_max_error(&f, &r);
                assert!(e < 2e-6, "{d1}x{d2} n={n} threads={threads}: rel err {e}");
            }
        }
    }

    #[test]
    fn baseline_matches_reference() {
        let (d1, d2, n, seed) = (24, 40, 60, 777);
        let c = coeffs(n, 3);
        let (w, idx) = delta_peft_baseline(seed, d1, d2, &c, 150.0, 2);
        let (rows, cols) = spectral_positions(seed, d1, d2, n);
        for k in 0..n {
            assert_eq!(idx[k], rows[k] as u64 * d2 as u64 + cols[k] as u64);
        }
        let s = SpectrumRef {
            d1,
            d2,
            rows: &rows,
            cols: &cols,
            coeffs: &c,
            scaling: 150.0,
        };
        let e = relative_max_error(&w, &delta_reference_f64(s));
        assert!(e < 2e-6, "rel err {e}");
    }
}
