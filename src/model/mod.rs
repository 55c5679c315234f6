//! Transformer graphs, written once over the [`Backend`](crate::backend::Backend) trait.

pub mod generate;
pub mod llama;
pub mod rope;

pub use generate::{generate, GenerateOptions, GenerateStats, StopReason};
pub use llama::{Llama, LlamaOptions, OverlaySet};
