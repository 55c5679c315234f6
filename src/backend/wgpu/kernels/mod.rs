//! Rust wrappers of the WGSL kernels in `shaders/`, one per file, of the same name.

pub mod attention;
pub mod delta;
pub mod dequant;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod rope;
pub mod spectral;

use super::context::ShaderSource;

/// Every shader the crate embeds (the naga validation test walks this list and the folder).
pub const ALL_SHADERS: &[ShaderSource] = &[
    attention::SHADER,
    delta::SHADER,
    dequant::SHADER,
    elementwise::SHADER,
    matmul::SHADER,
    norm::SHADER,
    rope::SHADER,
    spectral::SHADER,
];

/// Rows per chunk so that `rows * row_bytes` fits `max_binding` and every chunk starts at a
/// multiple of `align` bytes for each (row_bytes, ...) given; `unit` rows is the granularity.
pub(crate) fn chunk_rows(
    total_rows: usize,
    row_bytes: &[u64],
    max_binding: u64,
    align: u64,
    unit: usize,
) -> Option<usize> {
    let mut step = unit as u64;
    for &rb in row_bytes {
        // smallest multiple of `unit` rows whose byte size is a multiple of `align`
        let per_unit = rb * unit as u64;
        let g = gcd(per_unit, align);
        let need = align / g;
        step = lcm(step, need * unit as u64);
    }
    let fit = row_bytes
        .iter()
        .map(|&rb| max_binding.checked_div(rb).unwrap_or(u64::MAX))
        .min()
        .unwrap_or(u64::MAX);
    if fit >= total_rows as u64 {
        return Some(total_rows);
    }
    let rows = fit / step * step;
    (rows > 0).then_some(rows as usize)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Checks one layer's sparse spectrum before a kernel is planned for it: the shape suits the
/// kernels' u32 index arithmetic, and the positions match the coefficients and lie inside it.
pub(crate) fn check_spectrum(
    what: &str,
    d1: usize,
    d2: usize,
    rows: &[u32],
    cols: &[u32],
    coeffs: &[f32],
) -> crate::error::Result<()> {
    use crate::error::Error;
    if d1 == 0 || d2 == 0 || d1 >= 1 << 31 || d2 >= 1 << 31 {
        return Err(Error::InvalidArgument(format!(
            "{what} {d1}x{d2} out of range for the GPU kernels"
        )));
    }
    if rows.len() != coeffs.len() || cols.len() != coeffs.len() {
        return Err(Error::InvalidArgument(format!(
            "{what}: {} coefficients but {} row and {} column positions",
            coeffs.len(),
            rows.len(),
            cols.len()
        )));
    }
    if let Some(k) = (0..coeffs.len()).find(|&k| rows[k] as usize >= d1 || cols[k] as usize >= d2) {
        return Err(Error::InvalidArgument(format!(
            "{what}: spectral position ({}, {}) outside {d1}x{d2}",
            rows[k], cols[k]
        )));
    }
    Ok(())
}
