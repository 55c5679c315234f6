//! Wrapper of `shaders/norm.wgsl`: RMSNorm, one workgroup per row.

use std::sync::Arc;

use crate::error::Result;

use super::super::context::{Binding, GpuContext, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource {
    name: "norm.wgsl",
    code: include_str!("../../../../shaders/norm.wgsl"),
};
/// Uniform, x, weight, out.
pub const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageReadWrite,
];

pub fn kernel(ctx: &GpuContext) -> Result<Arc<Kernel>> {
    ctx.kernel(SHADER, "rmsnorm", BINDINGS, &[])
}

/// `Params` words.
pub fn params(rows: usize, dim: usize, eps: f32) -> [u32; 4] {
    [rows as u32, dim as u32, eps.to_bits(), 0]
}
