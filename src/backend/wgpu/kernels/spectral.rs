//! Wrapper of `shaders/spectral.wgsl`: `out += ΔW x` for an adapted layer kept in spectral
//! form (the GPU counterpart of `backend::cpu::spectral`), so applying or swapping an adapter
//! uploads O(n) tables instead of rebuilding an out×in overlay.
//!
//! Per layer the host uploads one u32 table: the distinct v's, CSR starts of the terms grouped
//! by u, the distinct u's, then the terms `(index of v_k, bits of c_k·scaling/(d1·d2))`. Per shape
//! it uploads the cos/sin tables, computed in f64. Three dispatches per row chunk: B (one
//! inverse DFT of x at the distinct v's), Z (the coefficients scattered by u), out (an inverse
//! DFT at every output row, added to the base matmul's result).

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::PI;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::super::context::{Binding, GpuContext, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource {
    name: "spectral.wgsl",
    code: include_str!("../../../../shaders/spectral.wgsl"),
};
/// Uniform, layer tables, cos/sin tables, source (read), destination (read-write).
pub const BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageRead,
    Binding::StorageReadWrite,
];
/// Invocations per workgroup (along x) of every entry point.
pub const WG: usize = 64;
/// Distinct v's per invocation of `spectral_b` (`VB` in the shader).
pub const VB: usize = 4;
/// Outputs per invocation of `spectral_out` (`PO` in the shader).
pub const PO: usize = 4;
/// Input rows the shared scratch buffer holds at once (more rows run in chunks).
pub const SCRATCH_ROWS: usize = 64;

/// The three passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    B,
    Z,
    Out,
}

pub fn kernel(ctx: &GpuContext, stage: Stage) -> Result<Arc<Kernel>> {
    let entry = match stage {
        Stage::B => "spectral_b",
        Stage::Z => "spectral_z",
        Stage::Out => "spectral_out",
    };
    ctx.kernel(SHADER, entry, BINDINGS, &[])
}

/// Host-side tables of one layer (no GPU objects).
#[derive(Debug, Clone)]
pub struct SpectralPlan {
    pub d1: usize,
    pub d2: usize,
    pub nv: usize,
    pub nu: usize,
    /// `[off_v, off_us, off_ul, off_t]` into `table`.
    pub offsets: [u32; 4],
    pub table: Vec<u32>,
}

impl SpectralPlan {
    /// The tables for positions `(rows over d1, cols over d2)` and coefficients.
    pub fn new(
        d1: usize,
        d2: usize,
        rows: &[u32],
        cols: &[u32],
        coeffs: &[f32],
        scaling: f32,
    ) -> Result<Self> {
        if d1 == 0 || d2 == 0 || d1 >= 1 << 31 || d2 >= 1 << 31 {
            return Err(Error::InvalidArgument(format!(
                "spectral layer {d1}x{d2} out of range for the GPU kernel"
            )));
        }
        if rows.len() != coeffs.len() || cols.len() != coeffs.len() {
            return Err(Error::InvalidArgument(
                "positions and coefficients differ in length".into(),
            ));
        }
        if let Some(k) =
            (0..coeffs.len()).find(|&k| rows[k] as usize >= d1 || cols[k] as usize >= d2)
        {
            return Err(Error::InvalidArgument(format!(
                "spectral position ({}, {}) outside {d1}x{d2}",
                rows[k], cols[k]
            )));
        }
        let s = scaling as f64 / (d1 as f64 * d2 as f64);
        let mut vs: Vec<u32> = cols.to_vec();
        vs.sort_unstable();
        vs.dedup();
        let v_index: HashMap<u32, u32> =
            vs.iter().enumerate().map(|(i, &v)| (v, i as u32)).collect();
        let mut by_u: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (k, &u) in rows.iter().enumerate() {
            by_u.entry(u).or_default().push(k);
        }
        let (nv, nu, n) = (vs.len(), by_u.len(), coeffs.len());
        let off_v = 0usize;
        let off_us = off_v + nv;
        let off_ul = off_us + nu + 1;
        let off_t = off_ul + nu;
        let len = off_t + 2 * n;
        if len >= 1 << 31 {
            return Err(Error::InvalidArgument(format!(
                "spectral layer {d1}x{d2}: {n} coefficients are too many for the GPU kernel"
            )));
        }
        let mut table = Vec::with_capacity(len);
        table.extend_from_slice(&vs);
        let mut start = 0u32;
        for ks in by_u.values() {
            table.push(start);
            start += ks.len() as u32;
        }
        table.push(start);
        table.extend(by_u.keys().copied());
        for ks in by_u.values() {
            for &k in ks {
                table.push(v_index[&cols[k]]);
                table.push(((coeffs[k] as f64 * s) as f32).to_bits());
            }
        }
        Ok(SpectralPlan {
            d1,
            d2,
            nv,
            nu,
            offsets: [off_v as u32, off_us as u32, off_ul as u32, off_t as u32],
            table,
        })
    }

    /// Scratch f32 values per input row (B and Z, complex).
    pub fn scratch_per_row(&self) -> usize {
        2 * (self.nv + self.nu)
    }
}

/// `(cos, sin)(2πj/d2)` for j < d2, then `(cos, sin)(2πj/d1)` for j < d1, computed in f64.
pub fn shape_tables(d1: usize, d2: usize) -> Vec<f32> {
    let mut t = Vec::with_capacity(2 * (d1 + d2));
    for len in [d2, d1] {
        for j in 0..len {
            let a = 2.0 * PI * j as f64 / len as f64;
            t.push(a.cos() as f32);
            t.push(a.sin() as f32);
        }
    }
    t
}

/// `Params` words for the row chunk `[r0, r0 + rows)`; Z starts at f32 `zbase` of the scratch.
#[allow(clippy::too_many_arguments)]
pub fn params(
    d1: usize,
    d2: usize,
    nv: usize,
    nu: usize,
    offsets: [u32; 4],
    r0: usize,
    rows: usize,
    zbase: usize,
) -> [u32; 12] {
    [
        d1 as u32,
        d2 as u32,
        nv as u32,
        nu as u32,
        offsets[0],
        offsets[1],
        offsets[2],
        offsets[3],
        r0 as u32,
        rows as u32,
        zbase as u32,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_group_terms_by_u() {
        let p = SpectralPlan::new(
            6,
            4,
            &[0, 5, 0, 3],
            &[1, 2, 1, 3],
            &[1.0, 2.0, 3.0, 4.0],
            24.0,
        )
        .unwrap();
        assert_eq!((p.nv, p.nu), (3, 3));
        let [ov, ous, oul, ot] = p.offsets.map(|o| o as usize);
        assert_eq!(&p.table[ov..ov + 3], &[1, 2, 3]);
        assert_eq!(&p.table[ous..ous + 4], &[0, 2, 3, 4]);
        assert_eq!(&p.table[oul..oul + 3], &[0, 3, 5]);
        // u = 0: terms 0 and 2 (v index 0), c·24/24.
        assert_eq!(p.table[ot], 0);
        assert_eq!(f32::from_bits(p.table[ot + 1]), 1.0);
        assert_eq!(f32::from_bits(p.table[ot + 3]), 3.0);
        assert!(SpectralPlan::new(6, 4, &[6], &[0], &[1.0], 1.0).is_err());
        assert_eq!(shape_tables(3, 2).len(), 10);
    }
}
