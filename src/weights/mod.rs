//! Model weights: memory-mapped safetensors, dtypes, MLX-affine quantisation, config.json.
//! No GPU code lives here.

pub mod config;
pub mod dtype;
pub mod gguf;
pub mod gguf_convert;
pub mod model;
pub mod quant;
pub mod quantize;
pub mod safetensors_file;
pub mod writer;

pub use config::{Arch, ModelConfig, QuantConfig, RopeScaling};
pub use dtype::DType;
pub use model::{ModelFiles, ModelSummary, QuantizedTensor};
pub use quant::QuantSpec;
pub use quantize::{quantize_model_dir, QuantizeReport};
pub use safetensors_file::{SafeTensorsFile, TensorView, WeightStore};
