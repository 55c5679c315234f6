//! FourierFT: the torch-compatible generator, spectral positions, adapter files (PEFT folders
//! and our packed format) and ΔW on the CPU. No GPU code lives here.

pub mod delta;
pub mod mt19937;
pub mod positions;
