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

pub fn logits_on<B: Backend>(
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

/// What `fourierft generate` was asked.
pub struct GenerateRequest<'a> {
    pub model: &'a Path,
    pub adapter: Option<&'a Path>,
    pub prompt: &'a str,
    pub chat: bool,
    pub system: Option<&'a str>,
    pub options: fourierft::model::GenerateOptions,
}

pub fn generate_on<B: Backend>(
    be: Arc<B>,
    files: &ModelFiles,
    req: &GenerateRequest<'_>,
) -> Result<()> {
    use std::io::Write as _;
    let tok = fourierft::tokenizer::Tokenizer::from_dir(req.model)?;
    let text = if req.chat {
        let mut msgs = Vec::new();
        if let Some(s) = req.system {
            msgs.push(fourierft::tokenizer::ChatMessage::system(s));
        }
        msgs.push(fourierft::tokenizer::ChatMessage::user(req.prompt));
        tok.apply_chat(&msgs, true)?
    } else {
        req.prompt.to_string()
    };
    // A chat template already holds the special tokens; a plain prompt gets the model's BOS.
    let ids = tok.encode(&text, !req.chat)?;
    if ids.is_empty() {
        return Err(Error::InvalidArgument(
            "the prompt encodes to no tokens".into(),
        ));
    }
    let adapter = req.adapter.map(Adapter::load).transpose()?;
    let max_ctx = ids.len() + req.options.max_tokens + 1;
    let mut m = Llama::new(
        be,
        files,
        LlamaOptions {
            max_ctx,
            max_batch: ids.len().clamp(1, 128),
        },
    )?;
    m.set_adapter(files, adapter.as_ref())?;
    let mut out = std::io::stdout();
    let (_, stats) = fourierft::model::generate(&mut m, &tok, &ids, &req.options, &mut |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        true
    })?;
    let _ = writeln!(out);
    let _ = out.flush();
    eprintln!(
        "[{}] prefill {} tokens, {:.1} tok/s; decode {} tokens, {:.1} tok/s; stop: {:?}",
        m.backend().name(),
        stats.prompt_tokens,
        stats.prefill_tokens_per_sec(),
        stats.generated_tokens,
        stats.decode_tokens_per_sec(),
        stats.stop_reason
    );
    Ok(())
}

/// `fourierft generate`.
pub fn generate(req: &GenerateRequest<'_>, gpu: Option<crate::GpuContext>) -> Result<()> {
    let files = ModelFiles::open(req.model)?;
    match gpu {
        Some(ctx) => crate::gpu_backend::generate(ctx, &files, req),
        None => generate_on(Arc::new(CpuBackend::new()), &files, req),
    }
}
