//! Model weights: memory-mapped safetensors, dtypes, MLX-affine quantisation, config.json.
//! No GPU code lives here.

pub mod writer;
