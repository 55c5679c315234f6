//! Checking an adapter against a base model, and computing one module's ΔW.

use crate::error::{Error, Result};
use crate::weights::{Arch, ModelFiles};

use super::adapter::{Adapter, AdapterModule, LayerFit};
use super::delta::{default_threads, delta_fast_into, delta_reference_f64, SpectrumRef};

/// How to compute ΔW on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMethod {
    /// Row-FFT form, multi-threaded, f32 (the runtime path).
    Fast,
    /// Closed form in f64, O(n·out·in) (the oracle; small layers only).
    Reference,
}

/// One module's ΔW `[out, in]` (PEFT's orientation, as `get_delta_weight` returns it) and
/// its positions `(rows, cols)`, PEFT's `indices`.
pub struct ModuleDelta {
    pub out_features: usize,
    pub in_features: usize,
    pub delta: Vec<f32>,
    pub rows: Vec<u32>,
    pub cols: Vec<u32>,
}

impl Adapter {
    /// Check every adapted module and extra tensor against `model`; return each layer's geometry.
    /// Errors name the adapter, the model and the first module or tensor that does not fit.
    pub fn fit(&self, model: &ModelFiles) -> Result<Vec<LayerFit>> {
        let mismatch = |reason: String| Error::AdapterMismatch {
            adapter: self.source.clone().into(),
            model: model.dir.clone().into(),
            reason,
        };
        let mut fits = Vec::with_capacity(self.modules.len());
        for m in &self.modules {
            let weight = format!("{}.weight", m.name);
            if !model.weights.contains(&weight) {
                return Err(mismatch(format!(
                    "module '{}' has no weight '{weight}' in the model ({} architecture)",
                    m.name, model.config.model_type
                )));
            }
            let (rows, cols) = model.linear_dims(&m.name)?;
            // GPT-2's Conv1D stores [in, out]; PEFT reads in_features, out_features = weight.shape
            // and forces fan_in_fan_out = True for it (and False for nn.Linear).
            let transposed = model.config.arch == Arch::Gpt2;
            let (out_features, in_features) = if transposed {
                (cols, rows)
            } else {
                (rows, cols)
            };
            if m.n() as u128 > out_features as u128 * in_features as u128 {
                return Err(mismatch(format!(
                    "module '{}': n = {} exceeds the {out_features}x{in_features} layer",
                    m.name,
                    m.n()
                )));
            }
            if let Some((r, c)) = &m.positions {
                if r.iter().any(|&x| x as usize >= out_features)
                    || c.iter().any(|&x| x as usize >= in_features)
                {
                    return Err(mismatch(format!(
                        "module '{}': explicit positions lie outside the {out_features}x{in_features} layer",
                        m.name
                    )));
                }
            }
            fits.push(LayerFit {
                module: m.name.clone(),
                out_features,
                in_features,
                transposed,
                n: m.n(),
            });
        }
        for e in &self.extras {
            let Some(base) = model.weights.get(&e.name) else {
                return Err(mismatch(format!(
                    "the adapter replaces '{}' but the model has no such tensor",
                    e.name
                )));
            };
            if base.shape != e.shape.as_slice() {
                return Err(mismatch(format!(
                    "tensor '{}': the adapter's is {:?}, the model's is {:?}",
                    e.name, e.shape, base.shape
                )));
            }
        }
        Ok(fits)
    }

    /// ΔW of one module for a layer of `out_features × in_features`.
    pub fn module_delta(
        &self,
        m: &AdapterModule,
        out_features: usize,
        in_features: usize,
        method: CpuMethod,
    ) -> Result<ModuleDelta> {
        let (rows, cols) = self.positions(m, out_features, in_features)?;
        let spec = SpectrumRef {
            d1: out_features,
            d2: in_features,
            rows: &rows,
            cols: &cols,
            coeffs: &m.coeffs,
            scaling: self.config.scaling,
        };
        let delta = match method {
            CpuMethod::Fast => {
                let len = out_features * in_features;
                let mut out = Vec::new();
                out.try_reserve_exact(len).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "module '{}': not enough memory for a {out_features}x{in_features} f32 ΔW",
                        m.name
                    ))
                })?;
                out.resize(len, 0.0);
                delta_fast_into(spec, default_threads(), &mut out);
                out
            }
            CpuMethod::Reference => delta_reference_f64(spec)
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        };
        Ok(ModuleDelta {
            out_features,
            in_features,
            delta,
            rows,
            cols,
        })
    }
}
