//! Wrapper of `shaders/matmul.wgsl`: `out[r, o] = Σ_i x[r, i]·W[o, i]` (entry `main`) and the
//! embedding gather (entry `embed`) for every stored weight format (F32, F16/BF16 and f16
//! overlays, MLX affine). Parameters go in a [`Params`] block (12 u32); the caller owns the
//! uniform buffer it lives in.

use crate::error::{Error, Result};
use crate::weights::{DType, QuantSpec};

use super::super::context::{Binding, GpuContext, Kernel, ShaderSource};
use std::sync::Arc;

pub const SHADER: ShaderSource = ShaderSource {
    name: "matmul.wgsl",
    code: include_str!("../../../../shaders/matmul.wgsl"),
};
/// Uniform, x (or tokens), W, scales+biases, out.
pub const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageReadWrite,
];
/// Invocations per workgroup of `main` (`WG`).
pub const WORKGROUP: usize = 256;
/// Input rows per workgroup of the prefill variant (`RB`; the decode variant uses 1).
pub const PREFILL_ROWS: usize = 8;

/// How the kernel reads W.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatFormat {
    F32,
    F16,
    BF16,
    /// MLX affine codes; scales and biases in `sb` (F32, F16 or BF16).
    Affine {
        spec: QuantSpec,
        sb: DType,
    },
}

impl MatFormat {
    fn overrides(self, rb: u32, lanes: u32) -> Result<Vec<(&'static str, u32)>> {
        let (fmt, bits, group, sb) = match self {
            MatFormat::F32 => (0, 4, 64, 0),
            MatFormat::F16 => (1, 4, 64, 0),
            MatFormat::BF16 => (2, 4, 64, 0),
            MatFormat::Affine { spec, sb } => (
                3,
                spec.bits,
                spec.group_size as u32,
                match sb {
                    DType::F32 => 0,
                    DType::F16 => 1,
                    DType::BF16 => 2,
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "scales/biases of dtype {other}"
                        )))
                    }
                },
            ),
        };
        Ok(vec![
            ("FMT", fmt),
            ("BITS", bits),
            ("GROUP", group),
            ("SB_FMT", sb),
            ("RB", rb),
            ("LANES", lanes),
        ])
    }

    /// Bytes of one stored row of W (`cols` values).
    pub fn row_bytes(self, cols: usize) -> u64 {
        match self {
            MatFormat::F32 => cols as u64 * 4,
            MatFormat::F16 | MatFormat::BF16 => cols as u64 * 2,
            MatFormat::Affine { spec, .. } => (cols * spec.bits as usize / 32) as u64 * 4,
        }
    }
}

/// Lanes that share one output row (`LANES`): 32 on GPUs, so a row is read in coalesced
/// 128-byte runs; on CPU-emulated adapters (lavapipe) a single lane per row is fastest (it
/// streams the row through the cache and skips the reduction: ~3-5x faster than 32 lanes, measured on 2 cores).
pub fn lanes(ctx: &GpuContext) -> usize {
    if ctx.info.device_type == wgpu::DeviceType::Cpu {
        1
    } else {
        32
    }
}

/// The matmul pipeline: `rows == 1` gets the decode (matrix-vector) variant, more rows the
/// prefill variant that decodes each weight word once per [`PREFILL_ROWS`] input rows.
/// `lanes`: see [`lanes`].
pub fn kernel(
    ctx: &GpuContext,
    format: MatFormat,
    rows: usize,
    lanes: usize,
) -> Result<Arc<Kernel>> {
    let rb = if rows <= 1 { 1 } else { PREFILL_ROWS as u32 };
    ctx.kernel(
        SHADER,
        "main",
        BINDINGS,
        &format.overrides(rb, lanes as u32)?,
    )
}

/// The embedding-gather pipeline.
pub fn embed_kernel(ctx: &GpuContext, format: MatFormat) -> Result<Arc<Kernel>> {
    ctx.kernel(SHADER, "embed", BINDINGS, &format.overrides(1, 32)?)
}

/// The shader's `Params`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params {
    pub rows: u32,
    pub k: u32,
    pub n_out: u32,
    pub out_stride: u32,
    pub o0: u32,
    pub row_words: u32,
    pub gpr: u32,
    pub sb_bias: u32,
    pub sb_row0: u32,
    pub tok0: u32,
}

impl Params {
    pub fn words(&self) -> [u32; 12] {
        [
            self.rows,
            self.k,
            self.n_out,
            self.out_stride,
            self.o0,
            self.row_words,
            self.gpr,
            self.sb_bias,
            self.sb_row0,
            self.tok0,
            0,
            0,
        ]
    }
}

/// Workgroups of `main` for `n_out` outputs (this chunk) and `rows` input rows.
pub fn groups(n_out: usize, rows: usize, lanes: usize) -> (u32, u32, u32) {
    let rb = if rows <= 1 { 1 } else { PREFILL_ROWS };
    (
        n_out.div_ceil(WORKGROUP / lanes) as u32,
        rows.div_ceil(rb) as u32,
        1,
    )
}
