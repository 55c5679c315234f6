//! Wrapper of `shaders/elementwise.wgsl`: silu_mul, add, add_bias, copy, copy_self, kv_store.
//! Every entry takes the same five bindings (uniform; a, b read; c, d written) and a
//! `Params { n, dim, src_off, dst_off }` block.

use std::sync::Arc;

use crate::error::Result;

use super::super::context::{Binding, GpuContext, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource {
    name: "elementwise.wgsl",
    code: include_str!("../../../../shaders/elementwise.wgsl"),
};
pub const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageReadWrite,
    Binding::StorageReadWrite,
];

/// The entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    SiluMul,
    Add,
    AddBias,
    Copy,
    CopySelf,
    KvStore,
}

impl Op {
    fn entry(self) -> &'static str {
        match self {
            Op::SiluMul => "silu_mul",
            Op::Add => "add",
            Op::AddBias => "add_bias",
            Op::Copy => "copy",
            Op::CopySelf => "copy_self",
            Op::KvStore => "kv_store",
        }
    }
}

pub fn kernel(ctx: &GpuContext, op: Op) -> Result<Arc<Kernel>> {
    ctx.kernel(SHADER, op.entry(), BINDINGS, &[])
}

/// `Params` words.
pub fn params(n: usize, dim: usize, src_off: usize, dst_off: usize) -> [u32; 4] {
    [n as u32, dim as u32, src_off as u32, dst_off as u32]
}

/// Workgroups (x, y) covering `n` invocations in groups of 256 (index x + y·nwg.x·256).
pub fn groups(ctx: &GpuContext, n: usize, per_group: usize) -> (u32, u32, u32) {
    let total = n.div_ceil(per_group).max(1) as u64;
    let gx = total
        .min(ctx.limits.max_compute_workgroups_per_dimension as u64)
        .max(1);
    let gy = total.div_ceil(gx).max(1);
    (gx as u32, gy as u32, 1)
}
