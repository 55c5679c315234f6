//! The wgpu backend: one [`GpuContext`] (the only place that talks to the instance, adapter
//! and device), tensors uploaded from the mmap with one copy each, and WGSL kernels from
//! `shaders/`, each with a wrapper of the same name in [`kernels`].

pub mod apply;
pub mod backend;
pub mod buffers;
pub mod context;
pub mod kernels;

pub use apply::{GpuLayer, Overlay};
pub use backend::{GpuBackend, GpuBuf, GpuMat};
pub use buffers::GpuTensor;
pub use context::{GpuContext, GpuSummary};
