//! The CPU oracle of an adapted layer's overlay: `deq(W) + ΔW` in the base's stored layout,
//! with the same precision rules as the GPU path (f32 for an F32 base; otherwise deq(W) as
//! MLX defines it in the model dtype, converted to f16, plus ΔW, rounded once to f16).

use crate::error::Result;
use crate::fourier::{Adapter, CpuMethod, LayerFit};
use crate::weights::{DType, ModelFiles};

/// `deq(W)` of a module, f32 `[rows, cols]` as stored, and whether an f16 overlay is possible.
pub fn base_values(model: &ModelFiles, module: &str) -> Result<(Vec<f32>, bool)> {
    let (_, cols) = model.linear_dims(module)?;
    if model.is_quantized(module) {
        Ok((model.quantized(module)?.dequantize_mlx()?, cols % 2 == 0))
    } else {
        let w = model.weights.tensor(&format!("{module}.weight"))?;
        Ok((w.to_f32_vec()?, w.dtype != DType::F32 && cols % 2 == 0))
    }
}

/// The merged overlay of `fit`'s layer, f32 values (f16-rounded when the overlay is f16:
/// `prefer_f16` and a base that allows it), the GPU path's oracle.
pub fn overlay(
    model: &ModelFiles,
    adapter: &Adapter,
    fit: &LayerFit,
    prefer_f16: bool,
) -> Result<(Vec<f32>, bool)> {
    let (mlx, can_f16) = base_values(model, &fit.module)?;
    let f16 = prefer_f16 && can_f16;
    // f16 overlays dequantise as MLX does in the model dtype; f32 ones as `scale·q + bias` in f32.
    let mut w = if f16 {
        mlx
    } else {
        model.dequantize_weight(&fit.module)?
    };
    let m = adapter.require_module(&fit.module)?;
    let d = adapter.module_delta(m, fit.out_features, fit.in_features, CpuMethod::Fast)?;
    let (d1, d2) = (fit.out_features, fit.in_features);
    let round = |x: f32| {
        if f16 {
            half::f16::from_f32(x).to_f32()
        } else {
            x
        }
    };
    for p in 0..d1 {
        for q in 0..d2 {
            // Stored [out, in], or [in, out] for Conv1D (merged transposed, as PEFT does).
            let i = if fit.transposed {
                q * d1 + p
            } else {
                p * d2 + q
            };
            w[i] = round(round(w[i]) + d.delta[p * d2 + q]);
        }
    }
    Ok((w, f16))
}

/// The CPU fast path of one quantised layer's f16 overlay: `f16(f16(deq(W)) + ΔW)` for a
/// `[rows, cols]` MLX-affine weight (row-major ΔW of the same shape), threaded over rows.
#[allow(clippy::too_many_arguments)]
pub fn overlay_f16_affine(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    spec: crate::weights::QuantSpec,
    sb_dtype: DType,
    rows: usize,
    cols: usize,
    delta: &[f32],
    threads: usize,
) -> Vec<half::f16> {
    let mut out = vec![half::f16::ZERO; rows * cols];
    let wpr = cols * spec.bits as usize / 32;
    let gpr = cols / spec.group_size;
    let per = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (ci, chunk) in out.chunks_mut(per * cols).enumerate() {
            scope.spawn(move || {
                let mut row = vec![0f32; cols];
                for (ri, o) in chunk.chunks_mut(cols).enumerate() {
                    let r = ci * per + ri;
                    crate::weights::quant::dequantize_row_as(
                        &words[r * wpr..(r + 1) * wpr],
                        &scales[r * gpr..(r + 1) * gpr],
                        &biases[r * gpr..(r + 1) * gpr],
                        spec,
                        cols,
                        sb_dtype,
                        &mut row,
                    );
                    for ((o, &w), &d) in
                        o.iter_mut().zip(&row).zip(&delta[r * cols..(r + 1) * cols])
                    {
                        *o = half::f16::from_f32(half::f16::from_f32(w).to_f32() + d);
                    }
                }
            });
        }
    });
    out
}

/// `deq(W) + ΔW` in f32, in the stored layout (the CPU backend's overlay: f32 throughout, as
/// PEFT's unmerged forward computes `W x + ΔW x` in f32 on a dequantised model).
pub fn overlay_f32(model: &ModelFiles, adapter: &Adapter, fit: &LayerFit) -> Result<Vec<f32>> {
    let mut w = model.dequantize_weight(&fit.module)?;
    let m = adapter.require_module(&fit.module)?;
    let d = adapter.module_delta(m, fit.out_features, fit.in_features, CpuMethod::Fast)?;
    let (d1, d2) = (fit.out_features, fit.in_features);
    for p in 0..d1 {
        for q in 0..d2 {
            let i = if fit.transposed {
                q * d1 + p
            } else {
                p * d2 + q
            };
            w[i] += d.delta[p * d2 + q];
        }
    }
    Ok(w)
}
