//! A model folder: config.json + weights, with helpers to read (dequantised) linear weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::config::{Arch, ModelConfig};
use super::dtype::DType;
use super::quant::{self, QuantSpec};
use super::safetensors_file::{TensorView, WeightStore};

/// One opened model folder.
#[derive(Debug)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub weights: WeightStore,
}

/// The three tensors of an MLX-quantised module, shape-checked.
#[derive(Debug, Clone, Copy)]
pub struct QuantizedTensor<'a> {
    /// U32 `[rows, cols*bits/32]`.
    pub weight: TensorView<'a>,
    /// `[rows, cols/group]`, model dtype.
    pub scales: TensorView<'a>,
    /// `[rows, cols/group]`, same dtype as `scales`.
    pub biases: TensorView<'a>,
    pub spec: QuantSpec,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> QuantizedTensor<'a> {
    /// Read `module.weight`, `module.scales`, `module.biases` from `store` and check every
    /// shape and dtype against `spec`.
    pub fn load(store: &'a WeightStore, module: &str, spec: QuantSpec) -> Result<Self> {
        let weight = store.tensor(&format!("{module}.weight"))?;
        let scales = store.tensor(&format!("{module}.scales"))?;
        let biases = store.tensor(&format!("{module}.biases"))?;
        Self::from_views(weight, scales, biases, spec)
    }

    /// Check three views that form one quantised matrix.
    pub fn from_views(
        weight: TensorView<'a>,
        scales: TensorView<'a>,
        biases: TensorView<'a>,
        spec: QuantSpec,
    ) -> Result<Self> {
        weight.expect_dtype(&[DType::U32])?;
        let (rows, packed) = weight.expect_2d()?;
        let cols = spec.unpacked_cols(packed).ok_or_else(|| {
            Error::tensor(
                weight.path,
                weight.name,
                format!(
                    "a packed column count whose {} columns ({bits}-bit) are a multiple of group size {}",
                    packed * 32 / spec.bits as usize,
                    spec.group_size,
                    bits = spec.bits
                ),
                format!("shape {:?}", weight.shape),
            )
        })?;
        let groups = spec.groups(cols);
        for t in [&scales, &biases] {
            t.expect_dtype(&[DType::F32, DType::F16, DType::BF16])?;
            t.expect_shape(&[rows, groups]).map_err(|_| {
                Error::tensor(
                    t.path,
                    t.name,
                    format!(
                        "shape [{rows}, {groups}] for a [{rows}, {cols}] weight with {}-bit, group {} quantisation",
                        spec.bits, spec.group_size
                    ),
                    format!("shape {:?}", t.shape),
                )
            })?;
        }
        if biases.dtype != scales.dtype {
            return Err(Error::tensor(
                biases.path,
                biases.name,
                format!("dtype {} (the dtype of {})", scales.dtype, scales.name),
                format!("dtype {}", biases.dtype),
            ));
        }
        Ok(QuantizedTensor {
            weight,
            scales,
            biases,
            spec,
            rows,
            cols,
        })
    }

    /// The model dtype (that of the scales).
    pub fn dtype(&self) -> DType {
        self.scales.dtype
    }

    /// f32 `[rows, cols]`, computed in f32 arithmetic (`scale*q + bias`).
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let w = self.weight.to_u32_vec()?;
        let s = self.scales.to_f32_vec()?;
        let b = self.biases.to_f32_vec()?;
        Ok(quant::dequantize(
            &w, &s, &b, self.rows, self.cols, self.spec,
        ))
    }

    /// f32 `[rows, cols]` exactly as `mlx.core.dequantize` returns it in the model dtype.
    pub fn dequantize_mlx(&self) -> Result<Vec<f32>> {
        let w = self.weight.to_u32_vec()?;
        let s = self.scales.to_f32_vec()?;
        let b = self.biases.to_f32_vec()?;
        Ok(quant::dequantize_as(
            &w,
            &s,
            &b,
            self.rows,
            self.cols,
            self.spec,
            self.dtype(),
        ))
    }
}

/// Quantisation as shown by `fourierft inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuantSummary {
    pub bits: u32,
    pub group_size: usize,
    pub mode: String,
    /// Modules with their own setting in config.json.
    pub overrides: usize,
    /// Modules stored quantised (having `.scales`).
    pub quantized_modules: usize,
}

/// What `fourierft inspect` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub path: PathBuf,
    pub arch: Arch,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub tensor_count: usize,
    /// dtype name -> number of tensors.
    pub dtypes: BTreeMap<String, usize>,
    pub quantization: Option<QuantSummary>,
    pub total_bytes: u64,
    pub files: Vec<PathBuf>,
}

impl ModelFiles {
    /// Open a model folder (config.json + safetensors weights).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            if !path.exists() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
                ));
            }
            return Err(Error::format(
                path,
                "expected a model folder (config.json + *.safetensors)",
            ));
        }
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        let weights = WeightStore::open(path)?;
        Ok(ModelFiles {
            dir: path.to_path_buf(),
            config,
            weights,
        })
    }

    fn strip(module: &str) -> &str {
        module.strip_suffix(".weight").unwrap_or(module)
    }

    /// True if `module` is stored MLX-quantised (has a `.scales` tensor).
    pub fn is_quantized(&self, module: &str) -> bool {
        self.weights
            .contains(&format!("{}.scales", Self::strip(module)))
    }

    /// The quantisation spec that applies to a quantised `module`.
    pub fn quant_spec(&self, module: &str) -> Result<QuantSpec> {
        let module = Self::strip(module);
        let q = self.config.quantization.as_ref().ok_or_else(|| {
            Error::config(
                &self.config.path,
                format!("'{module}.scales' exists but config.json has no 'quantization' section"),
            )
        })?;
        q.for_module(module).ok_or_else(|| {
            Error::config(
                &self.config.path,
                format!("'{module}.scales' exists but 'quantization.{module}' is false"),
            )
        })
    }

    /// The three tensors of a quantised `module`, shape-checked.
    pub fn quantized(&self, module: &str) -> Result<QuantizedTensor<'_>> {
        let module = Self::strip(module);
        QuantizedTensor::load(&self.weights, module, self.quant_spec(module)?)
    }

    fn weight_view(&self, module: &str) -> Result<TensorView<'_>> {
        let name = format!("{module}.weight");
        self.weights.get(&name).ok_or_else(|| Error::MissingTensor {
            path: self.dir.clone().into(),
            tensor: name,
            hint: format!(" (no weight for module '{module}' in this model)"),
        })
    }

    /// Logical `(rows, cols)` of `module.weight` as stored (for quantised modules the
    /// dequantised shape, `cols = packed_cols*32/bits`).
    pub fn linear_dims(&self, module: &str) -> Result<(usize, usize)> {
        let module = Self::strip(module);
        if self.is_quantized(module) {
            let q = self.quantized(module)?;
            return Ok((q.rows, q.cols));
        }
        self.weight_view(module)?.expect_2d()
    }

    /// `module.weight` as f32 `[rows, cols]` (F32/F16/BF16/F64 or MLX-quantised; quantised
    /// weights are dequantised in f32 arithmetic, see [`QuantizedTensor::dequantize`]).
    pub fn dequantize_weight(&self, module: &str) -> Result<Vec<f32>> {
        let module = Self::strip(module);
        if self.is_quantized(module) {
            return self.quantized(module)?.dequantize();
        }
        let v = self.weight_view(module)?;
        v.expect_2d()?;
        v.to_f32_vec()
    }

    /// Summary for `fourierft inspect`.
    pub fn summary(&self) -> ModelSummary {
        let mut dtypes = BTreeMap::new();
        let mut quantized_modules = 0;
        for f in self.weights.files() {
            for t in f.tensors() {
                *dtypes.entry(t.dtype.name().to_string()).or_insert(0) += 1;
                if t.name.ends_with(".scales") {
                    quantized_modules += 1;
                }
            }
        }
        let c = &self.config;
        ModelSummary {
            path: self.dir.clone(),
            arch: c.arch,
            model_type: c.model_type.clone(),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            tensor_count: self.weights.len(),
            dtypes,
            quantization: c.quantization.as_ref().map(|q| QuantSummary {
                bits: q.default.bits,
                group_size: q.default.group_size,
                mode: "affine".into(),
                overrides: q.overrides.len(),
                quantized_modules,
            }),
            total_bytes: self.weights.total_bytes(),
            files: self
                .weights
                .files()
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect(),
        }
    }
}
