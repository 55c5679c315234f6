//! Wrapper of `shaders/delta.wgsl`: ΔW of one layer by the two-stage factorised DFT.
//!
//! The host picks the split d1 = n1·n2 (n1 a divisor of d1, at most 64, minimising
//! `12·n/n1 + 3·n1`, the per-output cost of the two stages), sorts the coefficients by
//! `u mod n1`, folds `scaling/(d1·d2)` into them, and builds the twiddle tables in f64.

use std::f64::consts::PI;

use crate::error::{Error, Result};

use super::super::context::{Binding, GpuContext, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource {
    name: "delta.wgsl",
    code: include_str!("../../../../shaders/delta.wgsl"),
};
const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageReadWrite,
];
/// Columns per workgroup (`TQ` in the shader).
pub const TQ: usize = 16;
const N1_MAX: usize = 64;

/// Where the kernel writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOut {
    /// `out = ΔW`, f32 `[d1, d2]`.
    WriteF32,
    /// `out += ΔW`, f32 overlay `[d1, d2]`.
    AddF32,
    /// `out += ΔW`, f16 overlay `[d1, d2]` (two halves per u32; d2 must be even).
    AddF16,
}

impl DeltaOut {
    fn mode(self) -> u32 {
        match self {
            DeltaOut::WriteF32 => 0,
            DeltaOut::AddF32 => 1,
            DeltaOut::AddF16 => 2,
        }
    }
    fn elem_bytes(self) -> u64 {
        if self == DeltaOut::AddF16 {
            2
        } else {
            4
        }
    }
}

/// Host-side preparation of one layer (no GPU objects).
#[derive(Debug, Clone)]
pub struct DeltaPlan {
    pub d1: usize,
    pub d2: usize,
    pub n1: usize,
    pub n2: usize,
    /// `(u, v, bits of c·scaling/(d1·d2), 0)`, sorted by `u mod n1`.
    pub entries: Vec<[u32; 4]>,
    /// CSR starts of each group, `n1 + 1` values.
    pub groups: Vec<u32>,
    /// `(cos, sin)(2πj/d1)` for j < d1, then `(cos, sin)(2πj/d2)` for j < d2.
    pub tables: Vec<[f32; 2]>,
}

/// The divisor n1 of d1 (≤ 64) with the lowest modelled cost for n coefficients.
pub fn choose_n1(d1: usize, n: usize) -> usize {
    (1..=N1_MAX.min(d1))
        .filter(|k| d1 % k == 0)
        .min_by(|&a, &b| {
            let cost = |k: usize| 12.0 * n as f64 / k as f64 + 3.0 * k as f64;
            cost(a).total_cmp(&cost(b))
        })
        .unwrap_or(1)
}

impl DeltaPlan {
    /// Plan ΔW `[d1, d2]` for positions `(rows over d1, cols over d2)` and coefficients.
    pub fn new(
        d1: usize,
        d2: usize,
        rows: &[u32],
        cols: &[u32],
        coeffs: &[f32],
        scaling: f32,
    ) -> Result<Self> {
        super::check_spectrum("ΔW", d1, d2, rows, cols, coeffs)?;
        let n1 = choose_n1(d1, coeffs.len());
        let n2 = d1 / n1;
        let norm = scaling as f64 / (d1 as f64 * d2 as f64);
        let mut order: Vec<usize> = (0..coeffs.len()).collect();
        order.sort_by_key(|&k| rows[k] as usize % n1);
        let mut groups = vec![0u32; n1 + 1];
        for &k in &order {
            groups[rows[k] as usize % n1 + 1] += 1;
        }
        for r in 0..n1 {
            groups[r + 1] += groups[r];
        }
        let entries = order
            .iter()
            .map(|&k| {
                [
                    rows[k],
                    cols[k],
                    ((coeffs[k] as f64 * norm) as f32).to_bits(),
                    0,
                ]
            })
            .collect();
        let mut tables = Vec::with_capacity(d1 + d2);
        for (len, count) in [(d1, d1), (d2, d2)] {
            for j in 0..count {
                let a = 2.0 * PI * j as f64 / len as f64;
                tables.push([a.cos() as f32, a.sin() as f32]);
            }
        }
        Ok(DeltaPlan {
            d1,
            d2,
            n1,
            n2,
            entries,
            groups,
            tables,
        })
    }

    /// Modelled multiply-adds: stage 1 (complex, 4 each) + stage 2 (real, 2 each) per output.
    pub fn flops(&self) -> f64 {
        let per_out = 8.0 * self.entries.len() as f64 / self.n1 as f64 + 4.0 * self.n1 as f64;
        per_out * self.d1 as f64 * self.d2 as f64
    }
}

/// The plan's buffers on the GPU (reusable for several outputs).
pub struct GpuDeltaPlan {
    pub plan_shape: (usize, usize, usize, usize),
    n: usize,
    entries: wgpu::Buffer,
    groups: wgpu::Buffer,
    tables: wgpu::Buffer,
}

impl GpuDeltaPlan {
    pub fn upload(ctx: &GpuContext, plan: &DeltaPlan) -> Result<Self> {
        let usage = wgpu::BufferUsages::STORAGE;
        let flat: Vec<u32> = plan.entries.iter().flatten().copied().collect();
        let tw: Vec<f32> = plan.tables.iter().flatten().copied().collect();
        for (what, bytes) in [
            ("coefficients", flat.len() * 4),
            ("twiddle tables", tw.len() * 4),
        ] {
            if bytes as u64 > ctx.max_binding() {
                return Err(Error::Gpu(format!(
                    "ΔW {}x{}: {what} need {bytes} bytes, more than one storage binding ({})",
                    plan.d1,
                    plan.d2,
                    ctx.max_binding()
                )));
            }
        }
        Ok(GpuDeltaPlan {
            plan_shape: (plan.d1, plan.d2, plan.n1, plan.n2),
            n: plan.entries.len(),
            entries: ctx.upload_bytes("delta entries", bytemuck::cast_slice(&flat), usage)?,
            groups: ctx.upload_bytes("delta groups", bytemuck::cast_slice(&plan.groups), usage)?,
            tables: ctx.upload_bytes("delta tables", bytemuck::cast_slice(&tw), usage)?,
        })
    }

    /// Record ΔW into `out` (which holds `[d1, d2]` in the layout `mode` says).
    pub fn record(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        out: &wgpu::Buffer,
        mode: DeltaOut,
    ) -> Result<()> {
        let (d1, d2, n1, n2) = self.plan_shape;
        if mode == DeltaOut::AddF16 && d2 % 2 != 0 {
            return Err(Error::InvalidArgument(format!(
                "f16 overlay {d1}x{d2}: the row length must be even"
            )));
        }
        if n2 as u64 > ctx.limits.max_compute_workgroups_per_dimension as u64 {
            return Err(Error::Gpu(format!(
                "ΔW {d1}x{d2}: {n2} row groups exceed this device's {} workgroups per dimension",
                ctx.limits.max_compute_workgroups_per_dimension
            )));
        }
        let kernel = ctx.kernel(SHADER, "main", BINDINGS, &[("OUT_MODE", mode.mode())])?;
        let row_bytes = d2 as u64 * mode.elem_bytes();
        // Chunks are whole p1 blocks: rows [p1_lo·n2, p1_hi·n2).
        let rows_per_chunk = super::chunk_rows(
            d1,
            &[row_bytes],
            ctx.max_binding(),
            ctx.limits.min_storage_buffer_offset_alignment as u64,
            n2,
        )
        .ok_or_else(|| {
            Error::Gpu(format!(
                "ΔW {d1}x{d2}: one row block does not fit a storage binding"
            ))
        })?;
        let p1_per_chunk = (rows_per_chunk / n2).max(1);
        let x_groups = d2.div_ceil(TQ) as u32;
        let mut p1 = 0usize;
        while p1 < n1 {
            let p1_hi = (p1 + p1_per_chunk).min(n1);
            let row_lo = p1 * n2;
            let rows = (p1_hi - p1) * n2;
            let params: [u32; 8] = [
                d1 as u32,
                d2 as u32,
                n1 as u32,
                n2 as u32,
                p1 as u32,
                p1_hi as u32,
                row_lo as u32,
                self.n as u32,
            ];
            let ubuf = ctx.uniform("delta params", bytemuck::cast_slice(&params))?;
            let offset = row_lo as u64 * row_bytes;
            let size = crate::backend::wgpu::buffers::pad4(rows as u64 * row_bytes);
            let out_binding = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: out,
                offset,
                size: std::num::NonZeroU64::new(size),
            });
            ctx.dispatch(
                enc,
                &kernel,
                &[
                    ubuf.as_entire_binding(),
                    self.entries.as_entire_binding(),
                    self.groups.as_entire_binding(),
                    self.tables.as_entire_binding(),
                    out_binding,
                ],
                (x_groups, n2 as u32, 1),
            );
            p1 = p1_hi;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n1_divides_and_balances() {
        assert_eq!(4096 % choose_n1(4096, 1000), 0);
        assert!((32..=64).contains(&choose_n1(4096, 1000)));
        assert_eq!(choose_n1(7, 1000), 7);
        assert_eq!(choose_n1(131, 50), 1); // prime > 64: single group
        let p = DeltaPlan::new(6, 4, &[0, 5, 3], &[1, 2, 3], &[1.0, 2.0, 3.0], 24.0).unwrap();
        assert_eq!(p.groups.len(), p.n1 + 1);
        assert_eq!(*p.groups.last().unwrap() as usize, 3);
        assert_eq!(p.tables.len(), 10);
    }
}
