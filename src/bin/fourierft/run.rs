//! `fourierft logits` and `fourierft generate`: running a LLaMA-family model.

use std::path::Path;
use std::sync::Arc;

use fourierft::backend::cpu::CpuBackend;
use fourierft::backend::Backend;
use fourierft::fourier::Adapter;
use fourierft::model::{Llama, LlamaOptions};
use fourierft::weights::writer::{write_safetensors, OutTensor};
use fourierft::weights::ModelFiles;
use fourierft::{Error, Result};

/// Token ids from the command line.
#[derive(Clone, Debug)]
pub struct TokenList(pub Vec<u32>);

/// Parse "1,2,3" into token ids.
pub fn parse_tokens(s: &str) -> std::result::Result<TokenList, String> {
    let v: std::result::Result<Vec<u32>, _> =
        s.split(',').map(|t| t.trim().parse::<u32>()).collect();
    match v {
        Ok(v) if !v.is_empty() => Ok(TokenList(v)),
        _ => Err(format!(
            "'{s}': expected comma-separated token ids, e.g. 1,2,3"
        )),
    }
}

fn logits_on<B: Backend>(
    be: Arc<B>,
    files: &ModelFiles,
    adapter: Option<&Adapter>,
    tokens: &[u32],
) -> Result<Vec<f32>> {
    let opts = LlamaOptions {
        max_ctx: tokens.len().max(1),
        max_batch: tokens.len().clamp(1, 256),
    };
    let mut m = Llama::new(be, files, opts)?;
    m.set_adapter(files, adapter)?;
    m.forward(tokens, true)
}

/// `fourierft logits`: logits F32 [seq, vocab] for every position.
pub fn logits(
    model: &Path,
    adapter: Option<&Path>,
    tokens: &[u32],
    out: &Path,
    gpu: Option<crate::GpuContext>,
) -> Result<()> {
    let files = ModelFiles::open(model)?;
    let vocab = files.config.vocab_size;
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::InvalidArgument(format!(
            "token id {t} is outside the vocabulary of {vocab} ({})",
            model.display()
        )));
    }
    let adapter = adapter.map(Adapter::load).transpose()?;
    let values = match gpu {
        Some(ctx) => crate::gpu_backend::logits(ctx, &files, adapter.as_ref(), tokens)?,
        None => logits_on(
            Arc::new(CpuBackend::new()),
            &files,
            adapter.as_ref(),
            tokens,
        )?,
    };
    write_safetensors(
        out,
        &[OutTensor::f32("logits", vec![tokens.len(), vocab], &values)],
        None,
    )?;
    eprintln!(
        "wrote {}: logits [{}, {vocab}]",
        out.display(),
        tokens.len()
    );
    Ok(())
}
