//! The CPU reference backend. Plain f32 arithmetic, threaded over output rows where it matters;
//! the oracle every GPU kernel and model path is tested against.
//!
//! Quantised weights are dequantised element by element as `scale·q + bias` in f32 (what
//! transformers computes from the same GGUF/MLX data), never requantised.

pub mod merge;
pub mod spectral;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::fourier::{Adapter, LayerFit};
use crate::weights::{DType, ModelFiles, QuantSpec};

use super::Backend;
use spectral::SpectralLayer;

/// An f32 buffer.
pub struct CpuBuf(RwLock<Vec<f32>>);

impl CpuBuf {
    fn r(&self) -> RwLockReadGuard<'_, Vec<f32>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
    fn w(&self) -> RwLockWriteGuard<'_, Vec<f32>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes of a tensor: read in place from the model's memory map (no copy), or owned.
#[derive(Clone)]
pub enum Bytes {
    Mapped(Arc<memmap2::Mmap>, usize, usize),
    Owned(Arc<Vec<u8>>),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m, off, len) => &m[*off..*off + *len],
            Bytes::Owned(v) => v,
        }
    }
}

/// A weight matrix `[rows = out, cols = in]`.
#[derive(Clone)]
pub enum CpuMat {
    F32 {
        rows: usize,
        cols: usize,
        data: Arc<Vec<f32>>,
    },
    /// MLX affine, read in place: U32 words, scales and biases in `sb` (F32/F16/BF16).
    Affine {
        rows: usize,
        cols: usize,
        spec: QuantSpec,
        sb: DType,
        words: Bytes,
        scales: Bytes,
        biases: Bytes,
    },
    /// An adapted layer: the base (shared with the unadapted model) plus `ΔW` in spectral form.
    Spectral {
        base: Box<CpuMat>,
        layer: Arc<SpectralLayer>,
    },
}

#[inline]
fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

#[inline]
fn sb_value(b: &[u8], i: usize, dt: DType) -> f32 {
    match dt {
        DType::F16 => half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32(),
        DType::BF16 => half::bf16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32(),
        _ => f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]),
    }
}

impl CpuMat {
    pub fn shape(&self) -> (usize, usize) {
        match self {
            CpuMat::F32 { rows, cols, .. } | CpuMat::Affine { rows, cols, .. } => (*rows, *cols),
            CpuMat::Spectral { base, .. } => base.shape(),
        }
    }

    /// Host bytes this matrix reads per use (mapped or owned).
    pub fn bytes(&self) -> u64 {
        match self {
            CpuMat::F32 { rows, cols, .. } => (rows * cols * 4) as u64,
            CpuMat::Affine {
                words,
                scales,
                biases,
                ..
            } => (words.get().len() + scales.get().len() + biases.get().len()) as u64,
            CpuMat::Spectral { base, layer } => base.bytes() + layer.bytes(),
        }
    }

    /// Row `o` dotted with `x` (length cols), dequantising on the fly.
    #[inline]
    fn dot_row(&self, o: usize, x: &[f32]) -> f32 {
        match self {
            CpuMat::F32 { cols, data, .. } => {
                let w = &data[o * cols..(o + 1) * cols];
                dot(w, x)
            }
            CpuMat::Affine {
                cols,
                spec,
                sb,
                words,
                scales,
                biases,
                ..
            } => {
                let bits = spec.bits as usize;
                let wpr = cols * bits / 32;
                let g = spec.group_size;
                let gpr = cols / g;
                let wb = &words.get()[o * wpr * 4..(o + 1) * wpr * 4];
                let (sc, bi) = (scales.get(), biases.get());
                let mut acc = 0f32;
                if bits == 4 || bits == 8 {
                    // Whole words per group (group ≥ 32): 8 (4-bit) or 4 (8-bit) codes a word.
                    let per_word = 32 / bits;
                    let mask = (1u32 << bits) - 1;
                    let words_per_group = g / per_word;
                    for gi in 0..gpr {
                        let (s, b) = (
                            sb_value(sc, o * gpr + gi, *sb),
                            sb_value(bi, o * gpr + gi, *sb),
                        );
                        let mut part = [0f32; 8];
                        let xg = &x[gi * g..(gi + 1) * g];
                        for wj in 0..words_per_group {
                            let w = word(wb, gi * words_per_group + wj);
                            let xs = &xg[wj * per_word..(wj + 1) * per_word];
                            for (k, &xv) in xs.iter().enumerate() {
                                let q = ((w >> (k * bits)) & mask) as f32;
                                part[k] += (s * q + b) * xv;
                            }
                        }
                        acc += part.iter().sum::<f32>();
                    }
                } else {
                    let mask = (1u64 << bits) - 1;
                    for gi in 0..gpr {
                        let (s, b) = (
                            sb_value(sc, o * gpr + gi, *sb),
                            sb_value(bi, o * gpr + gi, *sb),
                        );
                        let mut part = 0f32;
                        for c in gi * g..(gi + 1) * g {
                            let bit = c * bits;
                            let wi = bit / 32;
                            let sh = bit % 32;
                            let mut v = (word(wb, wi) as u64) >> sh;
                            if sh + bits > 32 {
                                v |= (word(wb, wi + 1) as u64) << (32 - sh);
                            }
                            part += (s * (v & mask) as f32 + b) * x[c];
                        }
                        acc += part;
                    }
                }
                acc
            }
            // `matmul` adds ΔW x for a whole row; this is the base part only.
            CpuMat::Spectral { base, .. } => base.dot_row(o, x),
        }
    }

    /// Row `o` as f32 (embedding lookup).
    fn row_into(&self, o: usize, out: &mut [f32]) {
        match self {
            CpuMat::F32 { cols, data, .. } => out.copy_from_slice(&data[o * cols..(o + 1) * cols]),
            CpuMat::Affine {
                cols,
                spec,
                sb,
                words,
                scales,
                biases,
                ..
            } => {
                let wpr = cols * spec.bits as usize / 32;
                let gpr = cols / spec.group_size;
                let wb = &words.get()[o * wpr * 4..(o + 1) * wpr * 4];
                let w: Vec<u32> = (0..wpr).map(|i| word(wb, i)).collect();
                let s: Vec<f32> = (0..gpr)
                    .map(|g| sb_value(scales.get(), o * gpr + g, *sb))
                    .collect();
                let b: Vec<f32> = (0..gpr)
                    .map(|g| sb_value(biases.get(), o * gpr + g, *sb))
                    .collect();
                crate::weights::quant::dequantize_row(&w, &s, &b, *spec, *cols, out);
            }
            CpuMat::Spectral { base, layer } => {
                base.row_into(o, out);
                layer.add_row(o, out);
            }
        }
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four partial sums: vectorises, and is a fixed, reproducible order.
    let mut s = [0f32; 4];
    let n4 = a.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        s[0] += a[i] * b[i];
        s[1] += a[i + 1] * b[i + 1];
        s[2] += a[i + 2] * b[i + 2];
        s[3] += a[i + 3] * b[i + 3];
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for i in n4..a.len() {
        t += a[i] * b[i];
    }
    t
}

/// The CPU backend.
pub struct CpuBackend {
    threads: usize,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend {
            threads: crate::fourier::delta::default_threads(),
        }
    }
}

fn check_len(what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(Error::InvalidArgument(format!(
            "{what}: buffer of {have} values, {need} needed"
        )));
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buf = CpuBuf;
    type Mat = CpuMat;

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn buffer(&self, len: usize) -> Result<CpuBuf> {
        Ok(CpuBuf(RwLock::new(vec![0.0; len])))
    }

    fn vector(&self, data: &[f32]) -> Result<CpuBuf> {
        Ok(CpuBuf(RwLock::new(data.to_vec())))
    }

    fn matrix(&self, model: &ModelFiles, module: &str) -> Result<CpuMat> {
        let (rows, cols) = model.linear_dims(module)?;
        if model.is_quantized(module) {
            let q = model.quantized(module)?;
            let bytes = |v: &crate::weights::TensorView<'_>| -> Bytes {
                match model.weights.file_of(v.name).and_then(|f| f.mapped(v)) {
                    Some((map, off)) => Bytes::Mapped(map, off, v.data.len()),
                    None => Bytes::Owned(Arc::new(v.data.to_vec())),
                }
            };
            q.scales
                .expect_dtype(&[DType::F32, DType::F16, DType::BF16])?;
            Ok(CpuMat::Affine {
                rows,
                cols,
                spec: q.spec,
                sb: q.scales.dtype,
                words: bytes(&q.weight),
                scales: bytes(&q.scales),
                biases: bytes(&q.biases),
            })
        } else {
            let w = model.weights.tensor(&format!("{module}.weight"))?;
            w.expect_dtype(&[DType::F32, DType::F16, DType::BF16])?;
            Ok(CpuMat::F32 {
                rows,
                cols,
                data: Arc::new(w.to_f32_vec()?),
            })
        }
    }

    fn overlays(
        &self,
        model: &ModelFiles,
        adapter: &Adapter,
        fits: &[LayerFit],
        bases: &[&CpuMat],
        _reuse: Vec<CpuMat>,
    ) -> Result<Vec<CpuMat>> {
        if bases.len() != fits.len() {
            return Err(Error::InvalidArgument(format!(
                "overlays: {} layers but {} base matrices",
                fits.len(),
                bases.len()
            )));
        }
        // Layers stored [out, in] keep their base as it is (mapped or shared) and ΔW in
        // spectral form; Conv1D layers stored [in, out] get a merged f32 overlay.
        let spectral = |fit: &LayerFit, base: &CpuMat| {
            !fit.transposed && base.shape() == (fit.out_features, fit.in_features)
        };
        let chosen: Vec<&LayerFit> = fits
            .iter()
            .zip(bases)
            .filter(|(f, b)| spectral(f, b))
            .map(|(f, _)| f)
            .collect();
        let mut layers = SpectralLayer::build_all(adapter, &chosen)?.into_iter();
        let mut out = Vec::with_capacity(fits.len());
        for (fit, &base) in fits.iter().zip(bases) {
            if spectral(fit, base) {
                let base = match base {
                    CpuMat::Spectral { base, .. } => base.as_ref().clone(),
                    b => b.clone(),
                };
                let layer = layers.next().ok_or_else(|| {
                    Error::InvalidArgument("overlays: a spectral layer is missing".into())
                })?;
                out.push(CpuMat::Spectral {
                    base: Box::new(base),
                    layer: Arc::new(layer),
                });
            } else {
                let (rows, cols) = model.linear_dims(&fit.module)?;
                out.push(CpuMat::F32 {
                    rows,
                    cols,
                    data: Arc::new(merge::overlay_f32(model, adapter, fit)?),
                });
            }
        }
        Ok(out)
    }

    fn overlay_bytes(&self, overlay: &CpuMat) -> u64 {
        match overlay {
            CpuMat::Spectral { layer, .. } => layer.bytes(),
            m => m.bytes(),
        }
    }

    fn overlay_read_bytes(&self, overlay: &CpuMat) -> u64 {
        overlay.bytes()
    }

    fn read(&self, buf: &CpuBuf, offset: usize, len: usize) -> Result<Vec<f32>> {
        let b = buf.r();
        check_len("read", b.len(), offset + len)?;
        Ok(b[offset..offset + len].to_vec())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn embed(&self, table: &CpuMat, tokens: &[u32], out: &CpuBuf) -> Result<()> {
        let (vocab, dim) = table.shape();
        let mut o = out.w();
        check_len("embed", o.len(), tokens.len() * dim)?;
        for (r, &t) in tokens.iter().enumerate() {
            if t as usize >= vocab {
                return Err(Error::InvalidArgument(format!(
                    "token id {t} is outside the vocabulary of {vocab}"
                )));
            }
            table.row_into(t as usize, &mut o[r * dim..(r + 1) * dim]);
        }
        Ok(())
    }

    fn matmul(&self, x: &CpuBuf, w: &CpuMat, out: &CpuBuf, rows: usize) -> Result<()> {
        if let CpuMat::Spectral { base, layer } = w {
            self.matmul(x, base, out, rows)?;
            let (n_out, n_in) = w.shape();
            let xg = x.r();
            let mut og = out.w();
            for r in 0..rows {
                layer.add_to(
                    &xg[r * n_in..(r + 1) * n_in],
                    &mut og[r * n_out..(r + 1) * n_out],
                );
            }
            return Ok(());
        }
        let (n_out, n_in) = w.shape();
        let xg = x.r();
        let mut og = out.w();
        check_len("matmul input", xg.len(), rows * n_in)?;
        check_len("matmul output", og.len(), rows * n_out)?;
        let threads = if n_out * n_in * rows < 1 << 16 {
            1
        } else {
            self.threads
        };
        let per = n_out.div_ceil(threads);
        let xs = &xg[..rows * n_in];
        // Each thread owns a range of output columns o for every row.
        let mut cols_out: Vec<Vec<f32>> = Vec::new();
        if threads == 1 {
            for r in 0..rows {
                let xr = &xs[r * n_in..(r + 1) * n_in];
                for o in 0..n_out {
                    og[r * n_out + o] = w.dot_row(o, xr);
                }
            }
            return Ok(());
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = t * per;
                    let hi = ((t + 1) * per).min(n_out);
                    s.spawn(move || {
                        let mut v = Vec::with_capacity(rows * hi.saturating_sub(lo));
                        for r in 0..rows {
                            let xr = &xs[r * n_in..(r + 1) * n_in];
                            for o in lo..hi {
                                v.push(w.dot_row(o, xr));
                            }
                        }
                        v
                    })
                })
                .collect();
            for h in handles {
                cols_out.push(h.join().unwrap_or_default());
            }
        });
        for (t, v) in cols_out.iter().enumerate() {
            let lo = t * per;
            let hi = ((t + 1) * per).min(n_out);
            let width = hi.saturating_sub(lo);
            for r in 0..rows {
                og[r * n_out + lo..r * n_out + hi].copy_from_slice(&v[r * width..(r + 1) * width]);
            }
        }
        Ok(())
    }

    fn add_bias(&self, x: &CpuBuf, bias: &CpuBuf, rows: usize, dim: usize) -> Result<()> {
        let b = bias.r();
        let mut xg = x.w();
        check_len("bias", b.len(), dim)?;
        check_len("add_bias", xg.len(), rows * dim)?;
        for r in 0..rows {
            for (v, bb) in xg[r * dim..(r + 1) * dim].iter_mut().zip(b.iter()) {
                *v += bb;
            }
        }
        Ok(())
    }

    fn rmsnorm(
        &self,
        x: &CpuBuf,
        weight: &CpuBuf,
        out: &CpuBuf,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()> {
        let xg = x.r();
        let wg = weight.r();
        let mut og = out.w();
        check_len("rmsnorm", og.len(), rows * dim)?;
        for r in 0..rows {
            let xr = &xg[r * dim..(r + 1) * dim];
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
            let inv = 1.0 / (ms + eps).sqrt();
            for i in 0..dim {
                og[r * dim + i] = wg[i] * (xr[i] * inv);
            }
        }
        Ok(())
    }

    fn rope(
        &self,
        x: &CpuBuf,
        inv_freq: &CpuBuf,
        rows: usize,
        heads: usize,
        head_dim: usize,
        pos0: usize,
    ) -> Result<()> {
        let f = inv_freq.r();
        let mut xg = x.w();
        let half = head_dim / 2;
        check_len("rope", xg.len(), rows * heads * head_dim)?;
        for r in 0..rows {
            let pos = (pos0 + r) as f32;
            for h in 0..heads {
                let base = (r * heads + h) * head_dim;
                for i in 0..half {
                    let a = pos * f[i];
                    let (s, c) = a.sin_cos();
                    let x0 = xg[base + i];
                    let x1 = xg[base + i + half];
                    xg[base + i] = x0 * c - x1 * s;
                    xg[base + i + half] = x1 * c + x0 * s;
                }
            }
        }
        Ok(())
    }

    fn kv_store(
        &self,
        k: &CpuBuf,
        v: &CpuBuf,
        k_cache: &CpuBuf,
        v_cache: &CpuBuf,
        rows: usize,
        kv_dim: usize,
        pos0: usize,
    ) -> Result<()> {
        for (src, dst) in [(k, k_cache), (v, v_cache)] {
            let s = src.r();
            let mut d = dst.w();
            check_len("kv cache", d.len(), (pos0 + rows) * kv_dim)?;
            d[pos0 * kv_dim..(pos0 + rows) * kv_dim].copy_from_slice(&s[..rows * kv_dim]);
        }
        Ok(())
    }

    fn attention(
        &self,
        q: &CpuBuf,
        k_cache: &CpuBuf,
        v_cache: &CpuBuf,
        out: &CpuBuf,
        rows: usize,
        pos0: usize,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        let qg = q.r();
        let kg = k_cache.r();
        let vg = v_cache.r();
        let mut og = out.w();
        let kv_dim = kv_heads * head_dim;
        let group = heads / kv_heads.max(1);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut scores = vec![0f32; pos0 + rows];
        for r in 0..rows {
            let n_ctx = pos0 + r + 1;
            for h in 0..heads {
                let kh = h / group;
                let qv = &qg[(r * heads + h) * head_dim..(r * heads + h + 1) * head_dim];
                let mut max = f32::NEG_INFINITY;
                for (t, sc) in scores[..n_ctx].iter_mut().enumerate() {
                    let kv = &kg[t * kv_dim + kh * head_dim..t * kv_dim + (kh + 1) * head_dim];
                    *sc = dot(qv, kv) * scale;
                    max = max.max(*sc);
                }
                let mut sum = 0f32;
                for sc in scores[..n_ctx].iter_mut() {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                let o = &mut og[(r * heads + h) * head_dim..(r * heads + h + 1) * head_dim];
                o.iter_mut().for_each(|v| *v = 0.0);
                for (t, &p) in scores[..n_ctx].iter().enumerate() {
                    let vv = &vg[t * kv_dim + kh * head_dim..t * kv_dim + (kh + 1) * head_dim];
                    let w = p / sum;
                    for (ov, &x) in o.iter_mut().zip(vv) {
                        *ov += w * x;
                    }
                }
            }
        }
        Ok(())
    }

    fn silu_mul(&self, gate: &CpuBuf, up: &CpuBuf, out: &CpuBuf, len: usize) -> Result<()> {
        let g = gate.r();
        let u = up.r();
        let mut o = out.w();
        for i in 0..len {
            let x = g[i];
            o[i] = x / (1.0 + (-x).exp()) * u[i];
        }
        Ok(())
    }

    fn add(&self, x: &CpuBuf, y: &CpuBuf, len: usize) -> Result<()> {
        let yg = y.r();
        let mut xg = x.w();
        for i in 0..len {
            xg[i] += yg[i];
        }
        Ok(())
    }

    fn copy(
        &self,
        src: &CpuBuf,
        src_off: usize,
        dst: &CpuBuf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        if std::ptr::eq(src, dst) {
            // One buffer: a single write lock (a read and a write lock would deadlock).
            let mut d = dst.w();
            check_len("copy", d.len(), src_off.max(dst_off) + len)?;
            d.copy_within(src_off..src_off + len, dst_off);
            return Ok(());
        }
        let s = src.r();
        let mut d = dst.w();
        check_len("copy source", s.len(), src_off + len)?;
        check_len("copy", d.len(), dst_off + len)?;
        d[dst_off..dst_off + len].copy_from_slice(&s[src_off..src_off + len]);
        Ok(())
    }
}
