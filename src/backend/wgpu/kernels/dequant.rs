//! Wrapper of `shaders/dequant.wgsl`: overlay = deq(W) (or a dtype conversion), the first half
//! of an adapted layer's merge.

use crate::error::{Error, Result};
use crate::weights::{DType, QuantSpec};

use super::super::buffers::pad4;
use super::super::context::{Binding, GpuContext, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource {
    name: "dequant.wgsl",
    code: include_str!("../../../../shaders/dequant.wgsl"),
};
const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageReadWrite,
];

/// How a base weight is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    F32,
    F16,
    BF16,
    /// MLX affine: U32 words `[rows, cols·bits/32]`, scales and biases `[rows, cols/group]` in `sb`.
    Affine {
        spec: QuantSpec,
        sb: DType,
    },
}

impl WeightFormat {
    fn fmt(self) -> u32 {
        match self {
            WeightFormat::F32 => 0,
            WeightFormat::F16 => 1,
            WeightFormat::BF16 => 2,
            WeightFormat::Affine { .. } => 3,
        }
    }
    /// Bytes of one row of the main tensor.
    pub fn row_bytes(self, cols: usize) -> u64 {
        match self {
            WeightFormat::F32 => cols as u64 * 4,
            WeightFormat::F16 | WeightFormat::BF16 => cols as u64 * 2,
            WeightFormat::Affine { spec, .. } => (cols * spec.bits as usize / 32) as u64 * 4,
        }
    }
    /// Bytes of one row of scales (and of biases).
    pub fn sb_row_bytes(self, cols: usize) -> u64 {
        match self {
            WeightFormat::Affine { spec, sb } => {
                (cols / spec.group_size) as u64 * sb.size_in_bytes() as u64
            }
            _ => 0,
        }
    }
}

/// The base tensors of one layer on the GPU.
pub struct WeightBuffers<'a> {
    pub weight: &'a wgpu::Buffer,
    pub scales: Option<&'a wgpu::Buffer>,
    pub biases: Option<&'a wgpu::Buffer>,
}

/// Record `dst = deq(W)` for a `[rows, cols]` weight; `dst` is f16 (pairs) or f32.
#[allow(clippy::too_many_arguments)]
pub fn record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    w: &WeightBuffers<'_>,
    format: WeightFormat,
    rows: usize,
    cols: usize,
    dst: &wgpu::Buffer,
    dst_f16: bool,
    dummy: &wgpu::Buffer,
) -> Result<()> {
    let (bits, group, sb_fmt) = match format {
        WeightFormat::Affine { spec, sb } => {
            let sbf = match sb {
                DType::F32 => 0,
                DType::F16 => 1,
                DType::BF16 => 2,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "scales/biases of dtype {other}"
                    )));
                }
            };
            (spec.bits, spec.group_size as u32, sbf)
        }
        _ => (4, 64, 0),
    };
    let is_affine = matches!(format, WeightFormat::Affine { .. });
    if is_affine && (w.scales.is_none() || w.biases.is_none()) {
        return Err(Error::InvalidArgument(
            "an affine weight needs scales and biases".into(),
        ));
    }
    let kernel = ctx.kernel(
        SHADER,
        "main",
        BINDINGS,
        &[
            ("FMT", format.fmt()),
            ("BITS", bits),
            ("GROUP", group),
            ("SB_FMT", sb_fmt),
            ("OUT_F16", dst_f16 as u32),
        ],
    )?;
    let dst_row = cols as u64 * if dst_f16 { 2 } else { 4 };
    let src_row = format.row_bytes(cols);
    let sb_row = format.sb_row_bytes(cols);
    let mut row_bytes = vec![dst_row, src_row];
    if is_affine {
        row_bytes.push(sb_row);
    }
    let per_chunk = super::chunk_rows(
        rows,
        &row_bytes,
        ctx.max_binding(),
        ctx.limits.min_storage_buffer_offset_alignment as u64,
        1,
    )
    .ok_or_else(|| {
        Error::Gpu(format!(
            "weight {rows}x{cols}: one row does not fit a storage binding"
        ))
    })?;
    fn range(buf: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: buf,
            offset,
            size: std::num::NonZeroU64::new(pad4(size)),
        })
    }
    let mut r0 = 0usize;
    while r0 < rows {
        let n = per_chunk.min(rows - r0);
        let out_words = pad4(n as u64 * dst_row) / 4;
        let params: [u32; 8] = [
            n as u32,
            cols as u32,
            (src_row / 4) as u32,
            if is_affine {
                (cols / group as usize) as u32
            } else {
                0
            },
            r0 as u32,
            out_words as u32,
            0,
            0,
        ];
        let ubuf = ctx.uniform("dequant params", bytemuck::cast_slice(&params))?;
        let (scales, biases) = match (w.scales, w.biases) {
            (Some(s), Some(b)) if is_affine => (
                range(s, r0 as u64 * sb_row, n as u64 * sb_row),
                range(b, r0 as u64 * sb_row, n as u64 * sb_row),
            ),
            _ => (dummy.as_entire_binding(), dummy.as_entire_binding()),
        };
        let gx_total = out_words.div_ceil(256);
        let gx = gx_total
            .min(ctx.limits.max_compute_workgroups_per_dimension as u64)
            .max(1);
        let gy = gx_total.div_ceil(gx).max(1);
        ctx.dispatch(
            enc,
            &kernel,
            &[
                ubuf.as_entire_binding(),
                range(w.weight, r0 as u64 * src_row, n as u64 * src_row),
                scales,
                biases,
                range(dst, r0 as u64 * dst_row, n as u64 * dst_row),
            ],
            (gx as u32, gy as u32, 1),
        );
        r0 += n;
    }
    Ok(())
}
