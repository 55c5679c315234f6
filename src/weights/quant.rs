//! MLX "affine" quantisation (ARCHITECTURE.md §3), bit-for-bit as `mlx.core.quantize` /
//! `mlx.core.dequantize` (mlx 0.32.4, mode "affine") compute it.
//!
//! Layout of a quantised `[rows, cols]` matrix with `b` bits and group size `g`:
//! - `weight`: U32 `[rows, cols*b/32]`; each row is one little-endian bit stream, code `k` at
//!   bits `[k*b, k*b+b)` (3/5/6-bit codes may straddle two words);
//! - `scales`, `biases`: `[rows, cols/g]` in the model dtype; `w = scale*q + bias`.
//!
//! Quantisation of one group (MLX CPU kernel, all in f32):
//! `scale = max((max-min)/n_bins, 1e-7)`, negated unless |min| > |max|; `edge` = min or max
//! accordingly; `q0 = rint(edge/scale)`; if `q0 != 0` then `scale = edge/q0, bias = edge`
//! else `bias = 0`; `q = clamp(rint((w-bias)/scale), 0, n_bins)`; scales and biases are then
//! rounded to the input dtype. The f32 scale (not the rounded one) is used for the codes.
//! `rint` rounds half to even. NaN inputs give unspecified codes (never a panic).

use crate::error::{Error, Result};

use super::dtype::DType;

/// Bits and group size of MLX affine quantisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct QuantSpec {
    pub bits: u32,
    pub group_size: usize,
}

impl QuantSpec {
    pub const BITS: [u32; 6] = [2, 3, 4, 5, 6, 8];
    pub const GROUP_SIZES: [usize; 3] = [32, 64, 128];

    /// A validated spec: bits in {2,3,4,5,6,8}, group size in {32,64,128}.
    pub fn new(bits: u32, group_size: usize) -> Result<Self> {
        let s = QuantSpec { bits, group_size };
        s.check().map_err(Error::InvalidArgument)?;
        Ok(s)
    }

    /// Why the spec is invalid, if it is.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !Self::BITS.contains(&self.bits) {
            return Err(format!(
                "quantisation bits must be one of 2, 3, 4, 5, 6, 8, got {}",
                self.bits
            ));
        }
        if !Self::GROUP_SIZES.contains(&self.group_size) {
            return Err(format!(
                "quantisation group_size must be one of 32, 64, 128, got {}",
                self.group_size
            ));
        }
        Ok(())
    }

    /// Largest code value, `2^bits - 1`.
    pub fn n_bins(&self) -> u32 {
        (1u32 << self.bits) - 1
    }

    /// Number of u32 words per row for `cols` logical columns, or `None` if `cols` is not a
    /// multiple of the group size.
    pub fn packed_cols(&self, cols: usize) -> Option<usize> {
        if cols == 0 || cols % self.group_size != 0 {
            return None;
        }
        // group_size is a multiple of 32, so cols*bits is a multiple of 32.
        cols.checked_mul(self.bits as usize).map(|b| b / 32)
    }

    /// Logical columns for `packed` u32 words per row.
    pub fn unpacked_cols(&self, packed: usize) -> Option<usize> {
        let bits = packed.checked_mul(32)?;
        if bits % self.bits as usize != 0 {
            return None;
        }
        let cols = bits / self.bits as usize;
        (cols % self.group_size == 0 && cols > 0).then_some(cols)
    }

    /// Groups per row for `cols` logical columns.
    pub fn groups(&self, cols: usize) -> usize {
        cols / self.group_size
    }
}

/// Code `k` of a row's bit stream.
#[inline(always)]
fn code_at(words: &[u32], k: usize, bits: u32, mask: u32) -> u32 {
    let p = k * bits as usize;
    let w = p / 32;
    let off = (p % 32) as u32;
    let mut v = words[w] >> off;
    if off + bits > 32 {
        v |= words[w + 1] << (32 - off);
    }
    v & mask
}

fn check_row_lens(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    spec: QuantSpec,
    cols: usize,
    out: &[f32],
) {
    let packed = spec.packed_cols(cols).unwrap_or_else(|| {
        panic!(
            "dequantize_row: cols {cols} is not a multiple of group size {}",
            spec.group_size
        )
    });
    assert!(
        words.len() == packed
            && scales.len() == cols / spec.group_size
            && biases.len() == cols / spec.group_size
            && out.len() == cols,
        "dequantize_row: inconsistent slice lengths (words {}, scales {}, biases {}, out {}) for cols {cols}, {spec:?}",
        words.len(),
        scales.len(),
        biases.len(),
        out.len()
    );
}

/// Dequantise one row in f32 arithmetic: `out[k] = scale*q + bias` (two f32 roundings; no
/// fused multiply-add), which is what MLX computes for F32 models.
///
/// Panics if the slice lengths do not fit `cols` and `spec` (a caller bug; shapes read from
/// files are checked before this is reached).
pub fn dequantize_row(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    spec: QuantSpec,
    cols: usize,
    out: &mut [f32],
) {
    check_row_lens(words, scales, biases, spec, cols, out);
    let g = spec.group_size;
    match spec.bits {
        4 => {
            // 8 codes per word; a group is g/8 whole words.
            for (gi, (o, w)) in out
                .chunks_exact_mut(g)
                .zip(words.chunks_exact(g / 8))
                .enumerate()
            {
                let (s, b) = (scales[gi], biases[gi]);
                for (o8, &word) in o.chunks_exact_mut(8).zip(w) {
                    for (j, x) in o8.iter_mut().enumerate() {
                        *x = s * ((word >> (4 * j)) & 0xf) as f32 + b;
                    }
                }
            }
        }
        8 => {
            for (gi, (o, w)) in out
                .chunks_exact_mut(g)
                .zip(words.chunks_exact(g / 4))
                .enumerate()
            {
                let (s, b) = (scales[gi], biases[gi]);
                for (o4, &word) in o.chunks_exact_mut(4).zip(w) {
                    for (j, x) in o4.iter_mut().enumerate() {
                        *x = s * ((word >> (8 * j)) & 0xff) as f32 + b;
                    }
                }
            }
        }
        bits => {
            let mask = spec.n_bins();
            for (k, x) in out.iter_mut().enumerate() {
                let gi = k / g;
                *x = scales[gi] * code_at(words, k, bits, mask) as f32 + biases[gi];
            }
        }
    }
}

/// Dequantise one row exactly as `mlx.core.dequantize` does for a model stored in `dtype`:
/// for F16/BF16 the product and the sum are each rounded to that dtype; F32 is
/// [`dequantize_row`]. The results are f32 values representable in `dtype`.
pub fn dequantize_row_as(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    spec: QuantSpec,
    cols: usize,
    dtype: DType,
    out: &mut [f32],
) {
    if !matches!(dtype, DType::F16 | DType::BF16) {
        dequantize_row(words, scales, biases, spec, cols, out);
    } else {
        check_row_lens(words, scales, biases, spec, cols, out);
        let mask = spec.n_bins();
        for (k, x) in out.iter_mut().enumerate() {
            let gi = k / spec.group_size;
            let q = code_at(words, k, spec.bits, mask) as f32;
            let p = dtype.round_f32(scales[gi] * q);
            *x = dtype.round_f32(p + biases[gi]);
        }
    }
}

fn check_matrix(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    rows: usize,
    cols: usize,
    spec: QuantSpec,
) -> (usize, usize) {
    let packed = spec.packed_cols(cols).unwrap_or_else(|| {
        panic!(
            "dequantize: cols {cols} is not a multiple of group size {}",
            spec.group_size
        )
    });
    let groups = spec.groups(cols);
    assert!(
        words.len() == rows * packed && scales.len() == rows * groups && biases.len() == rows * groups,
        "dequantize: inconsistent lengths (words {}, scales {}, biases {}) for [{rows}, {cols}], {spec:?}",
        words.len(),
        scales.len(),
        biases.len()
    );
    (packed, groups)
}

/// Dequantise a `[rows, cols]` matrix in f32 arithmetic (see [`dequantize_row`]).
pub fn dequantize(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    rows: usize,
    cols: usize,
    spec: QuantSpec,
) -> Vec<f32> {
    let (packed, groups) = check_matrix(words, scales, biases, rows, cols, spec);
    let mut out = vec![0f32; rows * cols];
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        dequantize_row(
            &words[r * packed..(r + 1) * packed],
            &scales[r * groups..(r + 1) * groups],
            &biases[r * groups..(r + 1) * groups],
            spec,
            cols,
            o,
        );
    }
    out
}

/// Dequantise a `[rows, cols]` matrix exactly as MLX does for a model stored in `dtype`
/// (see [`dequantize_row_as`]).
pub fn dequantize_as(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    rows: usize,
    cols: usize,
    spec: QuantSpec,
    dtype: DType,
) -> Vec<f32> {
    let (packed, groups) = check_matrix(words, scales, biases, rows, cols, spec);
    let mut out = vec![0f32; rows * cols];
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        dequantize_row_as(
            &words[r * packed..(r + 1) * packed],
            &scales[r * groups..(r + 1) * groups],
            &biases[r * groups..(r + 1) * groups],
            spec,
            cols,
            dtype,
            o,
        );
    }
    out
}

/// `std::max(a, b)` as C++ defines it: `(a < b) ? b : a`.
#[inline(always)]
fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min(a, b)`: `(b < a) ? b : a`.
#[inline(always)]
fn cmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// Quantise a row-major `[rows, cols]` matrix like `mlx.core.quantize(w.astype(out_dtype),
/// group_size, bits)` (mode "affine"). `w` is first rounded to `out_dtype` (a no-op when
/// the values already come from an `out_dtype` tensor). Returns (words `[rows,
/// cols*bits/32]`, scales `[rows, cols/group]`, biases `[rows, cols/group]`); scales and
/// biases are exactly representable in `out_dtype` (F32, F16 or BF16).
///
/// Panics if `w.len() != rows*cols` or `cols` is not a multiple of the group size (caller
/// bugs: check with [`QuantSpec::packed_cols`] first).
pub fn quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    spec: QuantSpec,
    out_dtype: DType,
) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    assert_eq!(
        w.len(),
        rows * cols,
        "quantize: w has {} values, expected {rows}x{cols}",
        w.len()
    );
    let packed = spec.packed_cols(cols).unwrap_or_else(|| {
        panic!(
            "quantize: cols {cols} is not a multiple of group size {}",
            spec.group_size
        )
    });
    let g = spec.group_size;
    let groups = cols / g;
    let bits = spec.bits;
    let n_bins = spec.n_bins() as f32;
    let eps = 1e-7f32;
    let mut words = vec![0u32; rows * packed];
    let mut scales = vec![0f32; rows * groups];
    let mut biases = vec![0f32; rows * groups];
    let mut group = vec![0f32; g];
    for r in 0..rows {
        let row_words = &mut words[r * packed..(r + 1) * packed];
        for gi in 0..groups {
            let src = &w[r * cols + gi * g..r * cols + (gi + 1) * g];
            for (d, &s) in group.iter_mut().zip(src) {
                *d = out_dtype.round_f32(s);
            }
            let mut w_min = f32::INFINITY;
            let mut w_max = f32::NEG_INFINITY;
            for &x in &group {
                w_max = cmax(w_max, x);
                w_min = cmin(w_min, x);
            }
            let mask = w_min.abs() > w_max.abs();
            let mut scale = cmax((w_max - w_min) / n_bins, eps);
            if !mask {
                scale = -scale;
            }
            let edge = if mask { w_min } else { w_max };
            let q0 = (edge / scale).round_ties_even();
            let mut bias = 0f32;
            if q0 != 0.0 {
                scale = edge / q0;
                bias = edge;
            }
            for (j, &x) in group.iter().enumerate() {
                let q = ((x - bias) / scale).round_ties_even();
                let q = cmin(cmax(q, 0.0), n_bins) as u32; // NaN -> 0
                let k = gi * g + j;
                let p = k * bits as usize;
                let (wi, off) = (p / 32, (p % 32) as u32);
                row_words[wi] |= q << off;
                if off + bits > 32 {
                    row_words[wi + 1] |= q >> (32 - off);
                }
            }
            scales[r * groups + gi] = out_dtype.round_f32(scale);
            biases[r * groups + gi] = out_dtype.round_f32(bias);
        }
    }
    (words, scales, biases)
}
