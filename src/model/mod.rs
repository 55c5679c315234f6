//! Transformer graphs, written once over the [`Backend`](crate::backend::Backend) trait.

pub mod llama;
pub mod rope;

pub use llama::{Llama, LlamaOptions};
