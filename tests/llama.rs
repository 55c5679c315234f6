//! The LLaMA graph against transformers + PEFT (goldens in tests/fixtures/golden/llama_logits):
//! logits for the base, adapter A, adapter B and A again, and greedy tokens with the KV cache.

mod common;

use std::sync::Arc;

use common::llama_check::check_tiny_llama;
use fourierft::backend::cpu::CpuBackend;
use fourierft::model::LlamaOptions;

#[test]
fn tiny_llama_on_the_cpu_matches_transformers_and_peft() {
    check_tiny_llama(
        Arc::new(CpuBackend::new()),
        LlamaOptions {
            max_ctx: 64,
            max_batch: 64,
        },
    );
    // Prefill in chunks of 5 must give the same logits.
    check_tiny_llama(
        Arc::new(CpuBackend::new()),
        LlamaOptions {
            max_ctx: 64,
            max_batch: 5,
        },
    );
}
