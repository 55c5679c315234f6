//! fourierft: run FourierFT-customised models on phones.
//!
//! The crate is layered as in ARCHITECTURE.md §2:
//! - [`weights`]: memory-mapped safetensors, dtypes, MLX-affine quantisation, config.json
//!   (no GPU code);
//! - [`backend`]: the CPU reference and the wgpu backend (context, buffers, WGSL kernels);
//! - [`fourier`]: the torch-compatible generator, spectral positions, PEFT and packed adapter
//!   files, and ΔW on the CPU (no GPU code).

pub mod backend;
pub mod engine;
pub mod error;
pub mod fourier;
pub mod model;
pub mod sampler;
pub mod tokenizer;
pub mod weights;

pub use engine::{
    AdapterChoice, AdapterId, Engine, EngineConfig, EngineStats, Generation, Request,
};
pub use error::{Error, FilePath, Result};
