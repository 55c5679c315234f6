//! The generation loop: prefill, decode with the KV cache, sample, stream UTF-8-safe text,
//! stop at EOS, a stop string or the token budget.

use std::time::Instant;

use crate::backend::Backend;
use crate::error::Result;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::{StopMatcher, TextStream, Tokenizer};

use super::Llama;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop when one of these strings appears in the output (it is not emitted).
    pub stop: Vec<String>,
    /// Stop at the tokenizer's end-of-sequence ids.
    pub stop_at_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampler: SamplerConfig::greedy(),
            stop: Vec::new(),
            stop_at_eos: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    pub stop_reason: StopReason,
}

impl GenerateStats {
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_secs.max(1e-12)
    }
    /// Tokens after the first, over the time spent producing them.
    pub fn decode_tokens_per_sec(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_secs.max(1e-12)
    }
}

/// Generate from `prompt` (token ids). `on_text` receives each piece of text as soon as it is
/// complete and may return `false` to cancel. Returns the generated ids and statistics.
pub fn generate<B: Backend>(
    model: &mut Llama<B>,
    tok: &Tokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<(Vec<u32>, GenerateStats)> {
    model.reset();
    let mut sampler = Sampler::with_vocab(opts.sampler, model.config.vocab_size);
    let mut stream = TextStream::new(true);
    let mut stops = StopMatcher::new(&opts.stop);
    let mut ids = Vec::with_capacity(opts.max_tokens);
    let t0 = Instant::now();
    let mut logits = model.forward(prompt, false)?;
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut reason = StopReason::MaxTokens;
    while ids.len() < opts.max_tokens {
        let t = sampler.sample(&logits);
        if opts.stop_at_eos && tok.is_eos(t) {
            reason = StopReason::Eos;
            break;
        }
        ids.push(t);
        let piece = stream.push(tok, t)?;
        let step = stops.push(&piece);
        if !step.text.is_empty() && !on_text(&step.text) {
            reason = StopReason::Cancelled;
            break;
        }
        if step.stopped {
            reason = StopReason::StopString;
            break;
        }
        if ids.len() == opts.max_tokens {
            break;
        }
        if model.position() + 1 > model.options.max_ctx {
            reason = StopReason::ContextFull;
            break;
        }
        logits = model.forward(&[t], false)?;
    }
    if !matches!(reason, StopReason::StopString | StopReason::Cancelled) {
        let mut rest = stream.finish(tok)?;
        let step = stops.push(&rest);
        rest = step.text + &stops.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
    }
    let stats = GenerateStats {
        prompt_tokens: prompt.len(),
        generated_tokens: ids.len(),
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
        stop_reason: reason,
    };
    Ok((ids, stats))
}
