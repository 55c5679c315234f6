//! Running models on the GPU backend (wired in when the wgpu `Backend` lands).

use fourierft::backend::wgpu::GpuContext;
use fourierft::fourier::Adapter;
use fourierft::weights::ModelFiles;
use fourierft::{Error, Result};

pub fn logits(
    _ctx: GpuContext,
    _files: &ModelFiles,
    _adapter: Option<&Adapter>,
    _tokens: &[u32],
) -> Result<Vec<f32>> {
    Err(Error::InvalidArgument(
        "--backend gpu: model execution on the GPU is not built yet in this version; use --backend cpu".into(),
    ))
}

pub fn generate(
    _ctx: GpuContext,
    _files: &ModelFiles,
    _req: &crate::run::GenerateRequest<'_>,
) -> Result<()> {
    Err(Error::InvalidArgument(
        "--backend gpu: model execution on the GPU is not built yet in this version; use --backend cpu".into(),
    ))
}

pub fn bench_decode(
    _ctx: GpuContext,
    _files: &ModelFiles,
    _adapter: Option<&Adapter>,
    _prompt: usize,
    _decode: usize,
) -> Result<serde_json::Value> {
    Err(Error::InvalidArgument(
        "--backend gpu: model execution on the GPU is not built yet in this version; use --backend cpu".into(),
    ))
}
