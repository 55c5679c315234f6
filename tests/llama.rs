//! The LLaMA graph against transformers + PEFT (goldens in tests/fixtures/golden/llama_logits):
//! logits for the base, adapter A, adapter B and A again, and greedy tokens with the KV cache.

mod common;

use std::sync::Arc;

use common::llama_check::check_tiny_llama_both_prefills;
use fourierft::backend::cpu::CpuBackend;

#[test]
fn tiny_llama_on_the_cpu_matches_transformers_and_peft() {
    check_tiny_llama_both_prefills(Arc::new(CpuBackend::new()));
}
