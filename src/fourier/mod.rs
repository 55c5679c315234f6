//! FourierFT: the torch-compatible generator, spectral positions, adapter files (PEFT folders
//! and our packed format) and ΔW on the CPU. No GPU code lives here.

pub mod adapter;
pub mod config;
pub mod delta;
pub mod fit;
pub mod mt19937;
pub mod positions;

pub use adapter::{Adapter, AdapterFormat, AdapterModule, ExtraTensor, LayerFit};
pub use config::{Bias, FourierConfig, TargetModules};
pub use fit::{CpuMethod, ModuleDelta};
