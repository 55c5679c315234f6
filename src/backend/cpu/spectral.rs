//! An adapted layer on the CPU, kept in spectral form: `y = W x + ΔW x` with the quantised (or
//! float) base read in place and `ΔW x` computed from the n coefficients, never materialising
//! ΔW. Applying or swapping an adapter is then O(n), and the adapter costs n·12 bytes of memory
//! instead of an out×in f32 overlay.
//!
//! With PEFT's `ΔW[p, q] = s · Σ_k c_k cos(2π(u_k p/d1 + v_k q/d2))`, `s = scaling/(d1·d2)`:
//! `(ΔW x)[p] = s · Re(Σ_k c_k e^{2πi u_k p/d1} · B[v_k])`, `B[v] = Σ_q x_q e^{2πi v q/d2}`.
//! So per input row: one length-d2 inverse DFT of x (B), n complex multiply-adds scattering
//! `c_k · B[v_k]` into `Z[u_k]`, one length-d1 inverse DFT of Z, real part times s. That is
//! O(d2 log d2 + n + d1 log d1) against the base's O(d1·d2), in f64 (a few ulps of f32 from the
//! merged `(W + ΔW) x`; PEFT's own unmerged forward is `W x + ΔW x` as well).

use std::collections::HashMap;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::error::Result;
use crate::fourier::{Adapter, LayerFit};

/// One adapted layer's spectrum, ready to apply to activations.
pub struct SpectralLayer {
    d1: usize,
    d2: usize,
    /// (u_k, v_k, c_k · scaling / (d1·d2)).
    terms: Vec<(u32, u32, f64)>,
    fft_in: Arc<dyn Fft<f64>>,
    fft_out: Arc<dyn Fft<f64>>,
}

impl SpectralLayer {
    /// The layers of `fits` (`[out, in]` orientation) from `adapter`'s coefficients. Layers of
    /// one shape share their seeded positions and FFT plans, so this costs O(n) per layer.
    pub fn build_all(adapter: &Adapter, fits: &[&LayerFit]) -> Result<Vec<SpectralLayer>> {
        type Positions = Arc<(Vec<u32>, Vec<u32>)>;
        let mut planner = FftPlanner::<f64>::new();
        let mut seeded: HashMap<(usize, usize, usize), Positions> = HashMap::new();
        let mut out = Vec::with_capacity(fits.len());
        for fit in fits {
            let m = adapter.require_module(&fit.module)?;
            let (d1, d2) = (fit.out_features, fit.in_features);
            let pos = match (&m.positions, seeded.get(&(d1, d2, m.n()))) {
                (None, Some(p)) => p.clone(),
                _ => {
                    let p = Arc::new(adapter.positions(m, d1, d2)?);
                    if m.positions.is_none() {
                        seeded.insert((d1, d2, m.n()), p.clone());
                    }
                    p
                }
            };
            let s = adapter.config.scaling as f64 / (d1 as f64 * d2 as f64);
            let terms = pos
                .0
                .iter()
                .zip(&pos.1)
                .zip(&m.coeffs)
                .map(|((&u, &v), &c)| (u, v, c as f64 * s))
                .collect();
            out.push(SpectralLayer {
                d1,
                d2,
                terms,
                fft_in: planner.plan_fft_inverse(d2),
                fft_out: planner.plan_fft_inverse(d1),
            });
        }
        Ok(out)
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.d1, self.d2)
    }

    /// Host bytes this layer holds (its terms).
    pub fn bytes(&self) -> u64 {
        (self.terms.len() * std::mem::size_of::<(u32, u32, f64)>()) as u64
    }

    /// Run `f(b, z, fft_scratch)` on this thread's work buffers (length d2, d1 and the FFTs'
    /// scratch), zeroed. They grow to the largest layer once, so a decode loop does not
    /// allocate here.
    fn with_buffers<R>(
        &self,
        f: impl FnOnce(&mut [Complex<f64>], &mut [Complex<f64>], &mut [Complex<f64>]) -> R,
    ) -> R {
        thread_local! {
            static WORK: std::cell::RefCell<Vec<Complex<f64>>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        let fft = self
            .fft_in
            .get_inplace_scratch_len()
            .max(self.fft_out.get_inplace_scratch_len());
        WORK.with(|w| {
            let mut w = w.borrow_mut();
            let need = self.d2 + self.d1 + fft;
            if w.len() < need {
                w.resize(need, Complex::new(0.0, 0.0));
            }
            let (b, rest) = w[..need].split_at_mut(self.d2);
            let (z, scratch) = rest.split_at_mut(self.d1);
            b.fill(Complex::new(0.0, 0.0));
            z.fill(Complex::new(0.0, 0.0));
            f(b, z, scratch)
        })
    }

    /// `y += ΔW x` for one row (x of length in, y of length out).
    pub fn add_to(&self, x: &[f32], y: &mut [f32]) {
        self.with_buffers(|b, z, scratch| {
            for (bv, &xv) in b.iter_mut().zip(x) {
                bv.re = xv as f64;
            }
            self.fft_in.process_with_scratch(b, scratch);
            for &(u, v, c) in &self.terms {
                z[u as usize] += b[v as usize] * c;
            }
            self.fft_out.process_with_scratch(z, scratch);
            for (o, zv) in y.iter_mut().zip(z.iter()) {
                *o = (*o as f64 + zv.re) as f32;
            }
        })
    }

    /// `row += ΔW[p, :]` (length in): the row spectrum `Σ_{k: v_k = v} c_k e^{2πi u_k p/d1}`,
    /// then one length-d2 inverse DFT.
    pub fn add_row(&self, p: usize, row: &mut [f32]) {
        self.with_buffers(|b, _, scratch| {
            let tau = 2.0 * std::f64::consts::PI / self.d1 as f64;
            for &(u, v, c) in &self.terms {
                let a = ((u as u64 * p as u64) % self.d1 as u64) as f64 * tau;
                b[v as usize] += Complex::new(a.cos(), a.sin()) * c;
            }
            self.fft_in.process_with_scratch(b, scratch);
            for (o, bv) in row.iter_mut().zip(b.iter()) {
                *o = (*o as f64 + bv.re) as f32;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fourier::delta::{delta_reference_f64, SpectrumRef};

    /// `ΔW x` through the spectral form against the dense f64 ΔW, on shapes with prime and
    /// odd sides and positions that repeat rows and columns.
    #[test]
    fn matches_dense_delta() {
        for &(d1, d2, n) in &[
            (7usize, 5usize, 9usize),
            (13, 32, 40),
            (64, 24, 200),
            (1, 9, 3),
        ] {
            let mut st = 12345u64;
            let mut rnd = || {
                st = st
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (st >> 33) as u32
            };
            let rows: Vec<u32> = (0..n).map(|_| rnd() % d1 as u32).collect();
            let cols: Vec<u32> = (0..n).map(|_| rnd() % d2 as u32).collect();
            let coeffs: Vec<f32> = (0..n).map(|_| rnd() as f32 / 2e9 - 1.0).collect();
            let scaling = 150.0;
            let dense = delta_reference_f64(SpectrumRef {
                d1,
                d2,
                rows: &rows,
                cols: &cols,
                coeffs: &coeffs,
                scaling,
            });
            let s = scaling as f64 / (d1 * d2) as f64;
            let mut planner = FftPlanner::<f64>::new();
            let layer = SpectralLayer {
                d1,
                d2,
                terms: (0..n)
                    .map(|k| (rows[k], cols[k], coeffs[k] as f64 * s))
                    .collect(),
                fft_in: planner.plan_fft_inverse(d2),
                fft_out: planner.plan_fft_inverse(d1),
            };
            let x: Vec<f32> = (0..d2).map(|_| rnd() as f32 / 1e9 - 2.0).collect();
            let mut y = vec![0.5f32; d1];
            layer.add_to(&x, &mut y);
            let dmax = dense.iter().fold(0f64, |m, v| m.max(v.abs()));
            for p in 0..d1 {
                let mut row = vec![0.25f32; d2];
                layer.add_row(p, &mut row);
                for q in 0..d2 {
                    let want = 0.25 + dense[p * d2 + q];
                    assert!(
                        (row[q] as f64 - want).abs() <= 1e-6 * dmax.max(1.0),
                        "{d1}x{d2} n={n} ΔW[{p},{q}]: {} vs {want}",
                        row[q]
                    );
                }
            }
            let max = dense.iter().fold(0f64, |m, v| m.max(v.abs())) * d2 as f64 * 2.0;
            for p in 0..d1 {
                let want = 0.5
                    + (0..d2)
                        .map(|q| dense[p * d2 + q] * x[q] as f64)
                        .sum::<f64>();
                assert!(
                    (y[p] as f64 - want).abs() <= 1e-6 * max.max(1.0),
                    "{d1}x{d2} n={n} row {p}: {} vs {want}",
                    y[p]
                );
            }
        }
    }
}
