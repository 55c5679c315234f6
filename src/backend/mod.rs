//! Compute backends. `cpu` is the plain reference (the test oracle); `wgpu` runs WGSL compute
//! shaders on whatever GPU the platform offers (Vulkan, Metal, DX12, GL).

pub mod cpu;
pub mod wgpu;

use crate::error::{Error, Result};

/// Which backend to run on, as chosen by `--backend` or `FOURIERFT_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Cpu,
    Gpu,
    /// The GPU when an adapter is found, else the CPU.
    Auto,
}

impl BackendChoice {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" | "" => Ok(Self::Auto),
            other => Err(Error::InvalidArgument(format!(
                "backend '{other}': expected cpu, gpu or auto"
            ))),
        }
    }

    /// `FOURIERFT_BACKEND` if set, else `default`.
    pub fn from_env_or(default: Self) -> Result<Self> {
        match std::env::var("FOURIERFT_BACKEND") {
            Ok(v) => Self::parse(&v)
                .map_err(|e| Error::InvalidArgument(format!("FOURIERFT_BACKEND: {e}"))),
            Err(_) => Ok(default),
        }
    }
}
