//! Wrapper of `shaders/attention.wgsl`: causal GQA over the KV cache with an online softmax,
//! one workgroup per (head, query row).

use std::sync::Arc;

use crate::error::Result;

use super::super::context::{Binding, GpuContext, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource {
    name: "attention.wgsl",
    code: include_str!("../../../../shaders/attention.wgsl"),
};
/// Uniform, q, k_cache, v_cache, out.
pub const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageReadWrite,
];
/// Largest head_dim the kernel handles (4 accumulators × 128 invocations; `qs` holds 512).
pub const MAX_HEAD_DIM: usize = 512;

pub fn kernel(ctx: &GpuContext) -> Result<Arc<Kernel>> {
    ctx.kernel(SHADER, "attention", BINDINGS, &[])
}

/// `Params` words.
pub fn params(
    rows: usize,
    pos0: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> [u32; 8] {
    let scale = 1.0 / (head_dim as f32).sqrt();
    [
        rows as u32,
        pos0 as u32,
        heads as u32,
        kv_heads as u32,
        head_dim as u32,
        scale.to_bits(),
        0,
        0,
    ]
}
