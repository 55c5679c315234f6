//! Running models on the wgpu backend (the same generic code as the CPU path).

use std::sync::Arc;

use fourierft::backend::wgpu::{GpuBackend, GpuContext};
use fourierft::fourier::Adapter;
use fourierft::weights::ModelFiles;
use fourierft::Result;

pub fn logits(
    ctx: GpuContext,
    files: &ModelFiles,
    adapter: Option<&Adapter>,
    tokens: &[u32],
) -> Result<Vec<f32>> {
    crate::run::logits_on(Arc::new(GpuBackend::new(ctx)?), files, adapter, tokens)
}

pub fn generate(
    ctx: GpuContext,
    files: &ModelFiles,
    req: &crate::run::GenerateRequest<'_>,
) -> Result<()> {
    crate::run::generate_on(Arc::new(GpuBackend::new(ctx)?), files, req)
}

pub fn bench_decode(
    ctx: GpuContext,
    files: &ModelFiles,
    adapter: Option<&Adapter>,
    prompt: usize,
    decode: usize,
) -> Result<serde_json::Value> {
    crate::bench::decode_on(
        Arc::new(GpuBackend::new(ctx)?),
        files,
        adapter,
        prompt,
        decode,
    )
}
