//! Compute backends. `cpu` is the plain reference (the test oracle); `wgpu` runs WGSL compute
//! shaders on whatever GPU the platform offers (Vulkan, Metal, DX12, GL).

pub mod cpu;
pub mod wgpu;

use crate::error::{Error, Result};
use crate::fourier::{Adapter, LayerFit};
use crate::weights::ModelFiles;

/// What the transformer graphs (`model/`) need from a device. Written once over this trait,
/// the models run on the CPU reference and on wgpu alike.
///
/// Buffers hold f32 activations (and KV caches). Matrices are weights `[out, in]`: float,
/// MLX-affine quantised, or an adapted layer's overlay. Ops are recorded in order; on a GPU
/// they run when [`Backend::read`] or [`Backend::sync`] is called, on the CPU at once.
/// Nothing here allocates once the buffers exist, so a decode loop can run allocation-free.
pub trait Backend: Send + Sync {
    type Buf: Send + Sync;
    type Mat: Send + Sync;

    fn name(&self) -> String;

    /// A zeroed f32 buffer of `len` values.
    fn buffer(&self, len: usize) -> Result<Self::Buf>;
    /// An f32 buffer holding `data`.
    fn vector(&self, data: &[f32]) -> Result<Self::Buf>;
    /// Module `module`'s weight (`module.weight`, quantised or float) from the model files.
    fn matrix(&self, model: &ModelFiles, module: &str) -> Result<Self::Mat>;
    /// The adapted layers of `adapter`, one per fitted layer (same order as `fits`), whose
    /// base matrices are `bases`: an overlay `deq(W) + ΔW` on the GPU, the base plus a spectral
    /// ΔW on the CPU. `reuse` may hold earlier overlays of the same layers, rewritten in place.
    fn overlays(
        &self,
        model: &ModelFiles,
        adapter: &Adapter,
        fits: &[LayerFit],
        bases: &[&Self::Mat],
        reuse: Vec<Self::Mat>,
    ) -> Result<Vec<Self::Mat>>;

    /// Bytes an adapted layer built by [`Backend::overlays`] holds beyond its base (what the
    /// overlay cache accounts for).
    fn overlay_bytes(&self, overlay: &Self::Mat) -> u64;
    /// Bytes a matrix-vector product with the adapted layer reads (its base included when the
    /// layer reads the base too): the bytes-per-token figure of the decode benchmark.
    fn overlay_read_bytes(&self, overlay: &Self::Mat) -> u64;

    /// `len` values of `buf` from `offset`, waiting for recorded work.
    fn read(&self, buf: &Self::Buf, offset: usize, len: usize) -> Result<Vec<f32>>;
    /// Wait for all recorded work.
    fn sync(&self) -> Result<()>;

    /// `out[r, :] = table[tokens[r], :]` (dim = the table's row length).
    fn embed(&self, table: &Self::Mat, tokens: &[u32], out: &Self::Buf) -> Result<()>;
    /// `out[r, o] = Σ_i x[r, i]·W[o, i]` for `rows` rows.
    fn matmul(&self, x: &Self::Buf, w: &Self::Mat, out: &Self::Buf, rows: usize) -> Result<()>;
    /// `x[r, :] += bias` for `rows` rows of length `bias.len`.
    fn add_bias(&self, x: &Self::Buf, bias: &Self::Buf, rows: usize, dim: usize) -> Result<()>;
    /// `out[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight`.
    fn rmsnorm(
        &self,
        x: &Self::Buf,
        weight: &Self::Buf,
        out: &Self::Buf,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()>;
    /// Rotary embedding in place (rotate-half convention) for rows at positions pos0.., `heads`
    /// heads of `head_dim` each, angles `pos·inv_freq[i]`.
    #[allow(clippy::too_many_arguments)]
    fn rope(
        &self,
        x: &Self::Buf,
        inv_freq: &Self::Buf,
        rows: usize,
        heads: usize,
        head_dim: usize,
        pos0: usize,
    ) -> Result<()>;
    /// Copy `rows` rows of k and v (`kv_dim` each) into the caches at positions pos0...
    #[allow(clippy::too_many_arguments)]
    fn kv_store(
        &self,
        k: &Self::Buf,
        v: &Self::Buf,
        k_cache: &Self::Buf,
        v_cache: &Self::Buf,
        rows: usize,
        kv_dim: usize,
        pos0: usize,
    ) -> Result<()>;
    /// Causal grouped-query attention of `rows` queries at positions pos0.. over the cache
    /// positions 0..pos0+rows.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Self::Buf,
        k_cache: &Self::Buf,
        v_cache: &Self::Buf,
        out: &Self::Buf,
        rows: usize,
        pos0: usize,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Result<()>;
    /// `out = silu(gate) * up` over `len` values.
    fn silu_mul(&self, gate: &Self::Buf, up: &Self::Buf, out: &Self::Buf, len: usize)
        -> Result<()>;
    /// `x += y` over `len` values.
    fn add(&self, x: &Self::Buf, y: &Self::Buf, len: usize) -> Result<()>;
    /// Copy `len` values from `src[src_off..]` to `dst[dst_off..]`.
    fn copy(
        &self,
        src: &Self::Buf,
        src_off: usize,
        dst: &Self::Buf,
        dst_off: usize,
        len: usize,
    ) -> Result<()>;
}

/// Which backend to run on, as chosen by `--backend` or `FOURIERFT_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Cpu,
    Gpu,
    /// The GPU when an adapter is found, else the CPU.
    Auto,
}

impl BackendChoice {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" | "" => Ok(Self::Auto),
            other => Err(Error::InvalidArgument(format!(
                "backend '{other}': expected cpu, gpu or auto"
            ))),
        }
    }

    /// `FOURIERFT_BACKEND` if set, else `default`.
    pub fn from_env_or(default: Self) -> Result<Self> {
        match std::env::var("FOURIERFT_BACKEND") {
            Ok(v) => Self::parse(&v)
                .map_err(|e| Error::InvalidArgument(format!("FOURIERFT_BACKEND: {e}"))),
            Err(_) => Ok(default),
        }
    }
}
