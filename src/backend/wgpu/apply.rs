//! Applying an adapter on the GPU: for every adapted layer, overlay = deq(W) + ΔW, built by
//! `dequant.wgsl` then `delta.wgsl` (in place), all recorded into one submission. The base
//! tensors (in the mmap and in their GPU buffers) are never modified.
//!
//! Overlays are f32 by default (what PEFT computes, so greedy outputs equal transformers');
//! with `GpuContext::set_f16_overlays(true)` F16, BF16 and quantised bases get f16 overlays
//! (half the memory) unless the stored row length is odd. A GPT-2 Conv1D base is stored `[in, out]`: its
//! overlay keeps that layout and ΔW is built transposed by swapping the roles of the two
//! spectral axes, so the kernel always writes rows of the stored layout.

use crate::error::{Error, Result};
use crate::fourier::{Adapter, LayerFit};
use crate::weights::{DType, ModelFiles};

use super::buffers::GpuTensor;
use super::context::GpuContext;
use super::kernels::delta::{DeltaOut, DeltaPlan, GpuDeltaPlan};
use super::kernels::dequant::{self, WeightBuffers, WeightFormat};

/// One adaptable layer's base weight on the GPU (uploaded once).
pub struct GpuLayer {
    pub module: String,
    /// Stored (logical, dequantised) shape.
    pub rows: usize,
    pub cols: usize,
    pub format: WeightFormat,
    pub weight: GpuTensor,
    pub scales: Option<GpuTensor>,
    pub biases: Option<GpuTensor>,
}

impl GpuLayer {
    /// Upload `module`'s base weight (and scales/biases) from the model's mmap.
    pub fn upload(ctx: &GpuContext, model: &ModelFiles, module: &str) -> Result<Self> {
        let (rows, cols) = model.linear_dims(module)?;
        if model.is_quantized(module) {
            let q = model.quantized(module)?;
            Ok(GpuLayer {
                module: module.to_string(),
                rows,
                cols,
                format: WeightFormat::Affine {
                    spec: q.spec,
                    sb: q.dtype(),
                },
                weight: ctx.upload_tensor(&q.weight)?,
                scales: Some(ctx.upload_tensor(&q.scales)?),
                biases: Some(ctx.upload_tensor(&q.biases)?),
            })
        } else {
            let w = model.weights.tensor(&format!("{module}.weight"))?;
            let format = match w.dtype {
                DType::F32 => WeightFormat::F32,
                DType::F16 => WeightFormat::F16,
                DType::BF16 => WeightFormat::BF16,
                other => {
                    return Err(Error::tensor(
                        w.path,
                        w.name,
                        "F32, F16, BF16 or MLX-quantised U32",
                        other.to_string(),
                    ))
                }
            };
            Ok(GpuLayer {
                module: module.to_string(),
                rows,
                cols,
                format,
                weight: ctx.upload_tensor(&w)?,
                scales: None,
                biases: None,
            })
        }
    }

    /// A layer from raw little-endian bytes (e.g. synthetic weights in a benchmark).
    #[allow(clippy::too_many_arguments)]
    pub fn from_bytes(
        ctx: &GpuContext,
        module: &str,
        rows: usize,
        cols: usize,
        format: WeightFormat,
        weight: &[u8],
        scales: Option<&[u8]>,
        biases: Option<&[u8]>,
    ) -> Result<Self> {
        let up =
            |label: &str, bytes: &[u8], dtype: DType, shape: Vec<usize>| -> Result<GpuTensor> {
                Ok(GpuTensor {
                    buffer: ctx.upload_bytes(
                        label,
                        bytes,
                        wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                    )?,
                    dtype,
                    shape,
                    bytes: bytes.len() as u64,
                })
            };
        let (wdtype, sb) = match format {
            WeightFormat::F32 => (DType::F32, None),
            WeightFormat::F16 => (DType::F16, None),
            WeightFormat::BF16 => (DType::BF16, None),
            WeightFormat::Affine { sb, .. } => (DType::U32, Some(sb)),
        };
        let sb_shape = match format {
            WeightFormat::Affine { spec, .. } => vec![rows, cols / spec.group_size],
            _ => Vec::new(),
        };
        Ok(GpuLayer {
            module: module.to_string(),
            rows,
            cols,
            format,
            weight: up(module, weight, wdtype, vec![rows, cols])?,
            scales: match (scales, sb) {
                (Some(b), Some(d)) => Some(up("scales", b, d, sb_shape.clone())?),
                _ => None,
            },
            biases: match (biases, sb) {
                (Some(b), Some(d)) => Some(up("biases", b, d, sb_shape)?),
                _ => None,
            },
        })
    }

    /// Bytes uploaded for this layer.
    pub fn bytes(&self) -> u64 {
        self.weight.bytes
            + self.scales.as_ref().map_or(0, |t| t.bytes)
            + self.biases.as_ref().map_or(0, |t| t.bytes)
    }

    /// Whether this layer can have an f16 overlay (non-F32 base, even rows).
    pub fn overlay_f16(&self) -> bool {
        self.format != WeightFormat::F32 && self.cols % 2 == 0
    }
}

/// An adapted layer's merged weight, in the base's stored layout `[rows, cols]`.
pub struct Overlay {
    pub module: String,
    pub buffer: wgpu::Buffer,
    pub f16: bool,
    pub rows: usize,
    pub cols: usize,
}

impl Overlay {
    pub fn bytes(&self) -> u64 {
        (self.rows * self.cols) as u64 * if self.f16 { 2 } else { 4 }
    }

    /// Read back as f32 `[rows, cols]` (tests and tools).
    pub fn read(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let raw = ctx.read_back(&self.buffer, self.bytes())?;
        Ok(if self.f16 {
            raw.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()
        } else {
            super::buffers::f32s(&raw)
        })
    }
}

/// The GPU plan of one adapted layer, in the stored layout's orientation.
fn layer_plan(adapter: &Adapter, fit: &LayerFit) -> Result<DeltaPlan> {
    let m = adapter.require_module(&fit.module)?;
    let (rows, cols) = adapter.positions(m, fit.out_features, fit.in_features)?;
    if fit.transposed {
        // Stored [in, out]: ΔWᵀ[q, p] = Re Σ c ω2^{v q} ω1^{u p}, i.e. swap the axes.
        DeltaPlan::new(
            fit.in_features,
            fit.out_features,
            &cols,
            &rows,
            &m.coeffs,
            adapter.config.scaling,
        )
    } else {
        DeltaPlan::new(
            fit.out_features,
            fit.in_features,
            &rows,
            &cols,
            &m.coeffs,
            adapter.config.scaling,
        )
    }
}

/// Build (or rebuild in place, when `reuse` holds the layer's overlay) the overlays of every
/// adapted layer in one submission. `layers` must hold each fitted module.
pub fn apply(
    ctx: &GpuContext,
    layers: &[GpuLayer],
    adapter: &Adapter,
    fits: &[LayerFit],
    mut reuse: Vec<Overlay>,
) -> Result<Vec<Overlay>> {
    let dummy = ctx.storage("dummy", 4)?;
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("apply adapter"),
        });
    let mut out = Vec::with_capacity(fits.len());
    let mut plans = Vec::with_capacity(fits.len());
    for fit in fits {
        let layer = layers
            .iter()
            .find(|l| l.module == fit.module)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("layer '{}' was not uploaded", fit.module))
            })?;
        let f16 = ctx.f16_overlays() && layer.overlay_f16();
        let overlay = match reuse
            .iter()
            .position(|o| o.module == fit.module && o.f16 == f16)
        {
            Some(i) => reuse.swap_remove(i),
            None => {
                let bytes = (layer.rows * layer.cols) as u64 * if f16 { 2 } else { 4 };
                Overlay {
                    module: fit.module.clone(),
                    buffer: ctx.storage(&fit.module, bytes)?,
                    f16,
                    rows: layer.rows,
                    cols: layer.cols,
                }
            }
        };
        dequant::record(
            ctx,
            &mut enc,
            &WeightBuffers {
                weight: &layer.weight.buffer,
                scales: layer.scales.as_ref().map(|t| &t.buffer),
                biases: layer.biases.as_ref().map(|t| &t.buffer),
            },
            layer.format,
            layer.rows,
            layer.cols,
            &overlay.buffer,
            f16,
            &dummy,
        )?;
        let plan = GpuDeltaPlan::upload(ctx, &layer_plan(adapter, fit)?)?;
        plan.record(
            ctx,
            &mut enc,
            &overlay.buffer,
            if f16 {
                DeltaOut::AddF16
            } else {
                DeltaOut::AddF32
            },
        )?;
        plans.push(plan);
        out.push(overlay);
    }
    ctx.queue.submit([enc.finish()]);
    ctx.take_error()?;
    Ok(out)
}

/// ΔW `[d1, d2]` of one module, f32, computed on the GPU (for `fourierft delta --backend gpu`).
pub fn delta(
    ctx: &GpuContext,
    adapter: &Adapter,
    module: &str,
    d1: usize,
    d2: usize,
) -> Result<(Vec<f32>, Vec<u32>, Vec<u32>)> {
    let m = adapter.require_module(module)?;
    let (rows, cols) = adapter.positions(m, d1, d2)?;
    let plan = DeltaPlan::new(d1, d2, &rows, &cols, &m.coeffs, adapter.config.scaling)?;
    let gplan = GpuDeltaPlan::upload(ctx, &plan)?;
    let bytes = (d1 * d2) as u64 * 4;
    let out = ctx.storage("delta_w", bytes)?;
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("delta"),
        });
    gplan.record(ctx, &mut enc, &out, DeltaOut::WriteF32)?;
    ctx.queue.submit([enc.finish()]);
    let raw = ctx.read_back(&out, bytes)?;
    Ok((super::buffers::f32s(&raw), rows, cols))
}
