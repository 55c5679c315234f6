//! Wrapper of `shaders/rope.wgsl`: rotate-half RoPE in place, one invocation per rotated pair.

use std::sync::Arc;

use crate::error::Result;

use super::super::context::{Binding, GpuContext, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource {
    name: "rope.wgsl",
    code: include_str!("../../../../shaders/rope.wgsl"),
};
/// Uniform, x (in place), inv_freq.
pub const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageReadWrite,
    Binding::StorageRead,
];
/// Invocations per workgroup.
pub const GROUP: usize = 64;

pub fn kernel(ctx: &GpuContext) -> Result<Arc<Kernel>> {
    ctx.kernel(SHADER, "rope", BINDINGS, &[])
}

/// `Params` words.
pub fn params(rows: usize, heads: usize, head_dim: usize, pos0: usize) -> [u32; 4] {
    [rows as u32, heads as u32, head_dim as u32, pos0 as u32]
}
