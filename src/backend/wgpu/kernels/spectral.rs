//! Wrapper of `shaders/spectral.wgsl`: `out += ΔW x` for an adapted layer kept in spectral
//! form (the GPU counterpart of `backend::cpu::spectral`), so applying or swapping an adapter
//! uploads O(n) tables instead of rebuilding an out×in overlay.
//!
//! Per layer the host uploads one u32 table: the distinct v's, CSR starts of the terms grouped
//! by u, the distinct u's, the terms `(index of v_k, bits of c_k·scaling/(d1·d2))`, then the
//! starts of the u's grouped by `u mod oa`. Per shape it uploads the cos/sin tables, computed in
//! f64. Per row chunk: B (an inverse DFT of x at the distinct v's), Z (the coefficients scattered
//! by u), out (an inverse DFT at every output, added to the base matmul's result). B and out
//! are each direct (one dispatch) or split by one Cooley–Tukey step (two dispatches) when the
//! side's length has a factor that makes that cheaper ([`split`]); see the shader's header.

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

/// The passes (entry points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Direct B.
    B,
    /// Factorised B, stage 1 (T).
    T,
    /// Factorised B, stage 2.
    Bf,
    Z,
    /// Factorised out, stage 1 (Y).
    Y,
    /// Direct out.
    Out,
    /// Factorised out, stage 2.
    Outf,
}

/// What a pass binds as its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// The input x.
    X,
    /// Nothing (a dummy buffer): the pass reads the scratch through its destination.
    Unused,
    Scratch,
}

/// One dispatch of a row chunk: its destination is the scratch buffer, except for the last
/// (`to_out`), which adds into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub stage: Stage,
    pub src: Src,
    pub to_out: bool,
    pub groups: (u32, u32, u32),
}

pub fn kernel(ctx: &GpuContext, stage: Stage) -> Result<Arc<Kernel>> {
    let entry = match stage {
        Stage::B => "spectral_b",
        Stage::T => "spectral_t",
        Stage::Bf => "spectral_bf",
        Stage::Z => "spectral_z",
        Stage::Y => "spectral_y",
        Stage::Out => "spectral_out",
        Stage::Outf => "spectral_outf",
    };
    ctx.kernel(SHADER, entry, BINDINGS, &[])
}

/// The split `n = a·b` (1 < b < n) that minimises `cost(a, b)`, if that beats `direct`.
/// `None` for n prime (or 1) or when no split pays.
pub fn split(
    n: usize,
    direct: usize,
    cost: impl Fn(usize, usize) -> usize,
) -> Option<(usize, usize)> {
    (2..n)
        .filter(|b| n % b == 0)
        .map(|b| (cost(n / b, b), (n / b, b)))
        .filter(|&(c, _)| c < direct)
        .min()
        .map(|(_, ab)| ab)
}

/// Everything the passes need besides the buffers (no GPU objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub d1: usize,
    pub d2: usize,
    pub nv: usize,
    pub nu: usize,
    /// `[off_v, off_us, off_ul, off_t, off_ws]` into the layer's table.
    pub offsets: [u32; 5],
    /// `d2 = ia·ib` when B is factorised.
    pub input: Option<(usize, usize)>,
    /// `d1 = oa·ob` when out is factorised.
    pub output: Option<(usize, usize)>,
}

impl Layout {
    /// Scratch f32 values per input row: B and Z, then T / Y (complex).
    pub fn scratch_per_row(&self) -> usize {
        2 * (self.nv + self.nu + self.work_per_row())
    }

    /// Complex values of T / Y per row (0 when both sides are direct).
    fn work_per_row(&self) -> usize {
        let t = self.input.map_or(0, |_| self.d2);
        let y = self.output.map_or(0, |_| self.d1);
        t.max(y)
    }

    /// `Params` words for the row chunk `[r0, r0 + rows)`.
    pub fn params(&self, r0: usize, rows: usize) -> [u32; 20] {
        let zbase = 2 * self.nv * rows;
        let wbase = zbase + 2 * self.nu * rows;
        let (ia, ib) = self.input.unwrap_or((1, self.d2));
        let (oa, ob) = self.output.unwrap_or((1, self.d1));
        let o = self.offsets;
        [
            self.d1 as u32,
            self.d2 as u32,
            self.nv as u32,
            self.nu as u32,
            o[0],
            o[1],
            o[2],
            o[3],
            r0 as u32,
            rows as u32,
            zbase as u32,
            wbase as u32,
            ia as u32,
            ib as u32,
            oa as u32,
            ob as u32,
            o[4],
            0,
            0,
            0,
        ]
    }

    /// The dispatches of a chunk of `rows` rows, in order.
    pub fn dispatches(&self, rows: usize) -> Vec<Dispatch> {
        let g = |n: usize| (n.div_ceil(WG) as u32, rows as u32, 1);
        let d = |stage, src, to_out, groups| Dispatch {
            stage,
            src,
            to_out,
            groups,
        };
        let mut v = Vec::with_capacity(5);
        match self.input {
            Some(_) => {
                v.push(d(Stage::T, Src::X, false, g(self.d2)));
                v.push(d(Stage::Bf, Src::Unused, false, g(self.nv)));
            }
            None => v.push(d(Stage::B, Src::X, false, g(self.nv.div_ceil(VB)))),
        }
        v.push(d(Stage::Z, Src::Unused, false, g(self.nu)));
        match self.output {
            Some(_) => {
                v.push(d(Stage::Y, Src::Unused, false, g(self.d1)));
                v.push(d(Stage::Outf, Src::Scratch, true, g(self.d1)));
            }
            None => v.push(d(Stage::Out, Src::Scratch, true, g(self.d1.div_ceil(PO)))),
        }
        v
    }
}

/// Host-side tables of one layer (no GPU objects).
#[derive(Debug, Clone)]
pub struct SpectralPlan {
    pub layout: Layout,
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
        super::check_spectrum("spectral layer", d1, d2, rows, cols, coeffs)?;
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
        // Work per row: direct B is nv·d2, factorised d2·ib + nv·ia; direct out is d1·nu,
        // factorised nu·ob + d1·oa.
        let input = split(d2, nv * d2, |a, b| d2 * b + nv * a);
        let output = split(d1, d1 * nu, |a, b| nu * b + d1 * a);
        // The distinct u's ordered by (u mod oa, u), each u's terms contiguous.
        let oa = output.map_or(1, |(a, _)| a as u32);
        let mut us: Vec<(u32, Vec<usize>)> = by_u.into_iter().collect();
        us.sort_by_key(|&(u, _)| (u % oa, u));
        let off_v = 0usize;
        let off_us = off_v + nv;
        let off_ul = off_us + nu + 1;
        let off_t = off_ul + nu;
        let off_ws = off_t + 2 * n;
        let len = off_ws + oa as usize + 1;
        if len >= 1 << 31 {
            return Err(Error::InvalidArgument(format!(
                "spectral layer {d1}x{d2}: {n} coefficients are too many for the GPU kernel"
            )));
        }
        let mut table = Vec::with_capacity(len);
        table.extend_from_slice(&vs);
        let mut start = 0u32;
        for (_, ks) in &us {
            table.push(start);
            start += ks.len() as u32;
        }
        table.push(start);
        table.extend(us.iter().map(|&(u, _)| u));
        for (_, ks) in &us {
            for &k in ks {
                table.push(v_index[&cols[k]]);
                table.push(((coeffs[k] as f64 * s) as f32).to_bits());
            }
        }
        // Starts of the groups of u's by u mod oa (one group [0, nu) when out is direct).
        for w in 0..=oa {
            table.push(us.partition_point(|&(u, _)| u % oa < w) as u32);
        }
        let offsets = [off_v, off_us, off_ul, off_t, off_ws].map(|o| o as u32);
        Ok(SpectralPlan {
            layout: Layout {
                d1,
                d2,
                nv,
                nu,
                offsets,
                input,
                output,
            },
            table,
        })
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
        let l = p.layout;
        assert_eq!((l.nv, l.nu), (3, 3));
        // Too small to pay for a split.
        assert_eq!((l.input, l.output), (None, None));
        let [ov, ous, oul, ot, ows] = l.offsets.map(|o| o as usize);
        assert_eq!(&p.table[ows..], &[0, 3]);
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

    #[test]
    fn splits_pay_only_where_they_should() {
        // SmolLM2's q: 576 = 24·24.
        assert_eq!(
            split(576, 474 * 576, |a, b| 576 * b + 474 * a),
            Some((24, 24))
        );
        // Prime or 1: direct.
        assert_eq!(split(97, 97 * 97, |a, b| 97 * b + 97 * a), None);
        assert_eq!(split(1, 1, |a, b| b + a), None);
        // Twelve distinct u's over d1 = 16 split as oa = ob = 4 (12·4 + 16·4 < 16·12): the u's
        // are grouped by u mod 4. d2 = 13 is prime: B stays direct.
        let rows = [13, 7, 1, 8, 4, 4, 0, 2, 3, 5, 6, 9, 10];
        let cols: Vec<u32> = (0..13).collect();
        let p = SpectralPlan::new(16, 13, &rows, &cols, &[1.0; 13], 1.0).unwrap();
        let l = p.layout;
        assert_eq!((l.input, l.output), (None, Some((4, 4))));
        let [_, _, oul, _, ows] = l.offsets.map(|o| o as usize);
        assert_eq!(
            &p.table[oul..oul + 12],
            &[0, 4, 8, 1, 5, 9, 13, 2, 6, 10, 3, 7]
        );
        assert_eq!(&p.table[ows..], &[0, 3, 7, 10, 12]);
        assert_eq!(l.scratch_per_row(), 2 * (13 + 12 + 16));
    }
}
