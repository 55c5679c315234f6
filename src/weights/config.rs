//! `config.json` of a Hugging Face / mlx-community model folder.
//!
//! Llama-family keys follow transformers (`hidden_size`, `num_key_value_heads`, ...); GPT-2
//! keys (`n_embd`, `n_layer`, ...) are mapped onto the same fields. RoPE settings are read
//! from top-level `rope_theta` + `rope_scaling` (transformers 4) or from `rope_parameters`
//! (transformers 5); `rope_parameters` wins where both exist. MLX quantisation is read from
//! `quantization` (or `quantization_config`, which mlx_lm also writes).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

use super::quant::QuantSpec;

/// Model families this runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Bert,
    Gpt2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Bert => "bert",
            Arch::Gpt2 => "gpt2",
        }
    }

    /// Llama, Mistral and Qwen2 share the decoder graph (RMSNorm, RoPE, SwiGLU).
    pub fn is_llama_family(self) -> bool {
        matches!(self, Arch::Llama | Arch::Mistral | Arch::Qwen2)
    }

    fn from_model_type(s: &str) -> Option<Arch> {
        Some(match s {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "bert" => Arch::Bert,
            "gpt2" => Arch::Gpt2,
            _ => return None,
        })
    }

    fn from_architecture(s: &str) -> Option<Arch> {
        if s.starts_with("Llama") {
            Some(Arch::Llama)
        } else if s.starts_with("Mistral") {
            Some(Arch::Mistral)
        } else if s.starts_with("Qwen2") && !s.starts_with("Qwen2Moe") && !s.starts_with("Qwen2VL")
        {
            Some(Arch::Qwen2)
        } else if s.starts_with("Bert") {
            Some(Arch::Bert)
        } else if s.starts_with("GPT2") {
            Some(Arch::Gpt2)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// RoPE frequency scaling.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Position interpolation: frequencies divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// MLX quantisation settings of a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuantConfig {
    pub default: QuantSpec,
    /// Per-module settings keyed by module path ("model.layers.0.mlp.down_proj");
    /// `None` = the module is not quantised.
    pub overrides: HashMap<String, Option<QuantSpec>>,
}

impl QuantConfig {
    /// The spec for `module` (a module path; a trailing `.weight` is ignored): its override
    /// if there is one (`None` for `false`), else the default.
    pub fn for_module(&self, module: &str) -> Option<QuantSpec> {
        let m = module.strip_suffix(".weight").unwrap_or(module);
        match self.overrides.get(m) {
            Some(o) => *o,
            None => Some(self.default),
        }
    }

    /// Parse the value of a `quantization` key. `path` is used in messages.
    pub fn from_json(path: &Path, key: &str, v: &Value) -> Result<Self> {
        let o = v.as_object().ok_or_else(|| {
            Error::config(
                path,
                format!("'{key}' must be an object with group_size and bits"),
            )
        })?;
        if let Some(mode) = o.get("mode") {
            let m = mode
                .as_str()
                .ok_or_else(|| Error::config(path, format!("'{key}.mode' must be a string")))?;
            if m != "affine" {
                return Err(Error::unsupported(
                    path,
                    format!(
                        "'{key}.mode' = \"{m}\"; only MLX \"affine\" quantisation is supported"
                    ),
                ));
            }
        }
        let default = spec_from(path, key, o)?;
        let mut overrides = HashMap::new();
        for (k, v) in o {
            if matches!(k.as_str(), "group_size" | "bits" | "mode") {
                continue;
            }
            match v {
                Value::Bool(false) => {
                    overrides.insert(k.clone(), None);
                }
                Value::Bool(true) => {
                    overrides.insert(k.clone(), Some(default));
                }
                Value::Object(m) => {
                    if let Some(mode) = m.get("mode").and_then(|x| x.as_str()) {
                        if mode != "affine" {
                            return Err(Error::unsupported(
                                path,
                                format!(
                                    "'{key}.{k}.mode' = \"{mode}\"; only \"affine\" is supported"
                                ),
                            ));
                        }
                    }
                    overrides.insert(k.clone(), Some(spec_from(path, &format!("{key}.{k}"), m)?));
                }
                // Other scalar keys (e.g. "quant_method") are not module settings.
                _ => {}
            }
        }
        Ok(QuantConfig { default, overrides })
    }
}

fn spec_from(path: &Path, key: &str, o: &Map<String, Value>) -> Result<QuantSpec> {
    let get = |k: &str| -> Result<u64> {
        o.get(k)
            .ok_or_else(|| Error::config(path, format!("'{key}' has no '{k}'")))?
            .as_u64()
            .ok_or_else(|| Error::config(path, format!("'{key}.{k}' must be a positive integer")))
    };
    let bits = get("bits")?;
    let group = get("group_size")?;
    let spec = QuantSpec {
        bits: u32::try_from(bits).unwrap_or(u32::MAX),
        group_size: usize::try_from(group).unwrap_or(usize::MAX),
    };
    spec.check()
        .map_err(|e| Error::unsupported(path, format!("'{key}': {e}")))?;
    Ok(spec)
}

/// What a runtime needs from `config.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelConfig {
    /// The config.json this came from.
    pub path: PathBuf,
    pub arch: Arch,
    /// `model_type` as written (may be absent and inferred from `architectures`).
    pub model_type: String,
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// RMSNorm epsilon (llama family).
    pub rms_norm_eps: Option<f64>,
    /// LayerNorm epsilon (BERT, GPT-2).
    pub layer_norm_eps: Option<f64>,
    pub max_position_embeddings: usize,
    /// RoPE base (llama family; 10000 when absent).
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases (Qwen2 always; Llama/Mistral with `attention_bias`).
    pub qkv_bias: bool,
    /// o_proj has a bias (Llama with `attention_bias`).
    pub o_bias: bool,
    /// MLP projections have biases (Llama `mlp_bias`).
    pub mlp_bias: bool,
    /// `torch_dtype` (transformers 4) or `dtype` (transformers 5).
    pub torch_dtype: Option<String>,
    /// `hidden_act` / GPT-2 `activation_function`.
    pub hidden_act: String,
    /// Mistral sliding-window size, if any.
    pub sliding_window: Option<usize>,
    /// BERT token type vocabulary.
    pub type_vocab_size: Option<usize>,
    /// Classification labels: from `id2label` (length) or `num_labels`.
    pub num_labels: Option<usize>,
    /// `id2label` sorted by id.
    pub id2label: Option<Vec<String>>,
    pub bos_token_id: Option<Vec<u32>>,
    pub eos_token_id: Option<Vec<u32>>,
    pub pad_token_id: Option<u32>,
    pub quantization: Option<QuantConfig>,
    /// The whole JSON object, for keys this struct does not model.
    #[serde(skip)]
    pub raw: Map<String, Value>,
}

struct Reader<'a> {
    path: &'a Path,
    o: &'a Map<String, Value>,
}

impl<'a> Reader<'a> {
    /// A present, non-null value.
    fn val(&self, k: &str) -> Option<&'a Value> {
        self.o.get(k).filter(|v| !v.is_null())
    }
    fn usize_opt(&self, k: &str) -> Result<Option<usize>> {
        match self.val(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    Error::config(
                        self.path,
                        format!("'{k}' must be a non-negative integer, found {v}"),
                    )
                }),
        }
    }
    fn usize_req(&self, keys: &[&str]) -> Result<usize> {
        for k in keys {
            if let Some(v) = self.usize_opt(k)? {
                return Ok(v);
            }
        }
        Err(Error::config(
            self.path,
            format!("missing required key '{}'", keys.join("' or '")),
        ))
    }
    fn f64_opt(&self, k: &str) -> Result<Option<f64>> {
        match self.val(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                Error::config(self.path, format!("'{k}' must be a number, found {v}"))
            }),
        }
    }
    fn bool_opt(&self, k: &str) -> Result<Option<bool>> {
        match self.val(k) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                Error::config(self.path, format!("'{k}' must be true or false, found {v}"))
            }),
        }
    }
    fn str_opt(&self, k: &str) -> Result<Option<&'a str>> {
        match self.val(k) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                Error::config(self.path, format!("'{k}' must be a string, found {v}"))
            }),
        }
    }
    fn ids_opt(&self, k: &str) -> Result<Option<Vec<u32>>> {
        let bad = |v: &Value| {
            Error::config(
                self.path,
                format!("'{k}' must be a token id or a list of ids, found {v}"),
            )
        };
        let one = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok());
        match self.val(k) {
            None => Ok(None),
            Some(v @ Value::Array(a)) => a
                .iter()
                .map(|x| one(x).ok_or_else(|| bad(v)))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => one(v).map(|x| Some(vec![x])).ok_or_else(|| bad(v)),
        }
    }
}

impl ModelConfig {
    /// Read and parse `path` (a config.json).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(path, &text)
    }

    /// Parse config.json text; `path` is used in messages.
    pub fn from_json_str(path: &Path, s: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(s).map_err(|e| Error::json(path, e))?;
        let o = match v {
            Value::Object(o) => o,
            _ => return Err(Error::json(path, "config.json must be a JSON object")),
        };
        let r = Reader { path, o: &o };

        let architectures: Vec<String> = match r.val("architectures") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Some(v) => {
                return Err(Error::config(
                    path,
                    format!("'architectures' must be a list of strings, found {v}"),
                ))
            }
        };
        let model_type = r.str_opt("model_type")?.unwrap_or("").to_string();
        let arch = match Arch::from_model_type(&model_type) {
            Some(a) => a,
            None if model_type.is_empty() => architectures
                .iter()
                .find_map(|a| Arch::from_architecture(a))
                .ok_or_else(|| {
                    Error::unsupported(
                        path,
                        format!(
                            "no 'model_type' and no known entry in 'architectures' {architectures:?}; supported: llama, mistral, qwen2, bert, gpt2"
                        ),
                    )
                })?,
            None => {
                return Err(Error::unsupported(
                    path,
                    format!("model_type '{model_type}'; supported: llama, mistral, qwen2, bert, gpt2"),
                ))
            }
        };
        let model_type = if model_type.is_empty() {
            arch.name().to_string()
        } else {
            model_type
        };

        let gpt2 = arch == Arch::Gpt2;
        let hidden_size = if gpt2 {
            r.usize_req(&["n_embd", "hidden_size"])?
        } else {
            r.usize_req(&["hidden_size"])?
        };
        let num_hidden_layers = if gpt2 {
            r.usize_req(&["n_layer", "num_hidden_layers"])?
        } else {
            r.usize_req(&["num_hidden_layers"])?
        };
        let num_attention_heads = if gpt2 {
            r.usize_req(&["n_head", "num_attention_heads"])?
        } else {
            r.usize_req(&["num_attention_heads"])?
        };
        let vocab_size = r.usize_req(&["vocab_size"])?;
        if hidden_size == 0 || num_attention_heads == 0 {
            return Err(Error::config(
                path,
                "'hidden_size' and 'num_attention_heads' must be positive",
            ));
        }
        let intermediate_size = if gpt2 {
            r.usize_opt("n_inner")?.unwrap_or(4 * hidden_size)
        } else {
            r.usize_req(&["intermediate_size"])?
        };
        let num_key_value_heads = r
            .usize_opt("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(Error::config(
                path,
                format!("'num_key_value_heads' = {num_key_value_heads} must divide 'num_attention_heads' = {num_attention_heads}"),
            ));
        }
        let head_dim = match r.usize_opt("head_dim")? {
            Some(h) => h,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(Error::config(
                        path,
                        format!("'hidden_size' {hidden_size} is not divisible by 'num_attention_heads' {num_attention_heads} and there is no 'head_dim'"),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        let max_position_embeddings = if gpt2 {
            r.usize_opt("n_positions")?
                .or(r.usize_opt("max_position_embeddings")?)
                .unwrap_or(1024)
        } else {
            r.usize_opt("max_position_embeddings")?
                .unwrap_or(if arch == Arch::Bert { 512 } else { 2048 })
        };

        let (rms_norm_eps, layer_norm_eps) = match arch {
            Arch::Bert => (None, Some(r.f64_opt("layer_norm_eps")?.unwrap_or(1e-12))),
            Arch::Gpt2 => (
                None,
                Some(
                    r.f64_opt("layer_norm_epsilon")?
                        .or(r.f64_opt("layer_norm_eps")?)
                        .unwrap_or(1e-5),
                ),
            ),
            _ => (Some(r.f64_opt("rms_norm_eps")?.unwrap_or(1e-6)), None),
        };

        let (rope_theta, rope_scaling) = parse_rope(&r)?;

        let tie_word_embeddings = r
            .bool_opt("tie_word_embeddings")?
            .unwrap_or(matches!(arch, Arch::Gpt2 | Arch::Bert));
        let attention_bias = r.bool_opt("attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias) = match arch {
            Arch::Qwen2 => (true, false),
            Arch::Bert | Arch::Gpt2 => (true, true),
            _ => (attention_bias, attention_bias),
        };
        let mlp_bias = match arch {
            Arch::Bert | Arch::Gpt2 => true,
            _ => r.bool_opt("mlp_bias")?.unwrap_or(false),
        };
        let torch_dtype = match r.str_opt("dtype")? {
            Some(d) => Some(d.to_string()),
            None => r.str_opt("torch_dtype")?.map(String::from),
        };
        let hidden_act = if gpt2 {
            r.str_opt("activation_function")?
                .unwrap_or("gelu_new")
                .to_string()
        } else {
            r.str_opt("hidden_act")?
                .unwrap_or(if arch == Arch::Bert { "gelu" } else { "silu" })
                .to_string()
        };
        let sliding_window = r.usize_opt("sliding_window")?;
        let type_vocab_size = if arch == Arch::Bert {
            Some(r.usize_opt("type_vocab_size")?.unwrap_or(2))
        } else {
            r.usize_opt("type_vocab_size")?
        };

        let id2label = match r.val("id2label") {
            None => None,
            Some(Value::Object(m)) => {
                let mut by_id = BTreeMap::new();
                for (k, v) in m {
                    let id: usize = k.parse().map_err(|_| {
                        Error::config(
                            path,
                            format!("'id2label' key '{k}' is not a non-negative integer"),
                        )
                    })?;
                    let label = v.as_str().ok_or_else(|| {
                        Error::config(path, format!("'id2label.{k}' must be a string"))
                    })?;
                    by_id.insert(id, label.to_string());
                }
                if by_id.keys().copied().ne(0..by_id.len()) {
                    return Err(Error::config(
                        path,
                        "'id2label' ids must be 0..n without gaps",
                    ));
                }
                Some(by_id.into_values().collect::<Vec<_>>())
            }
            Some(v) => {
                return Err(Error::config(
                    path,
                    format!("'id2label' must be an object, found {v}"),
                ))
            }
        };
        let num_labels = match (&id2label, r.usize_opt("num_labels")?) {
            (Some(l), _) => Some(l.len()),
            (None, n) => n,
        };

        let quantization = match (r.val("quantization"), r.val("quantization_config")) {
            (Some(q), _) => Some(QuantConfig::from_json(path, "quantization", q)?),
            (None, Some(q)) if q.get("bits").is_some() || q.get("group_size").is_some() => {
                Some(QuantConfig::from_json(path, "quantization_config", q)?)
            }
            (None, Some(q)) => {
                let method = q
                    .get("quant_method")
                    .and_then(|m| m.as_str())
                    .unwrap_or("?");
                return Err(Error::unsupported(
                    path,
                    format!("'quantization_config' with quant_method '{method}'; only MLX affine quantisation is supported"),
                ));
            }
            (None, None) => None,
        };

        Ok(ModelConfig {
            path: path.to_path_buf(),
            arch,
            model_type,
            architectures,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            layer_norm_eps,
            max_position_embeddings,
            rope_theta,
            rope_scaling,
            tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias,
            torch_dtype,
            hidden_act,
            sliding_window,
            type_vocab_size,
            num_labels,
            id2label,
            bos_token_id: r.ids_opt("bos_token_id")?,
            eos_token_id: r.ids_opt("eos_token_id")?,
            pad_token_id: r.ids_opt("pad_token_id")?.and_then(|v| v.first().copied()),
            quantization,
            raw: o.clone(),
        })
    }

    /// The normalisation epsilon whichever kind the architecture uses.
    pub fn norm_eps(&self) -> f64 {
        self.rms_norm_eps.or(self.layer_norm_eps).unwrap_or(1e-6)
    }
}

fn parse_rope(r: &Reader<'_>) -> Result<(f64, Option<RopeScaling>)> {
    let path = r.path;
    let mut theta = r.f64_opt("rope_theta")?;
    let mut scaling_key = "rope_scaling";
    let mut scaling = r.val("rope_scaling");
    if let Some(p) = r.val("rope_parameters") {
        let po = p.as_object().ok_or_else(|| {
            Error::config(
                path,
                format!("'rope_parameters' must be an object, found {p}"),
            )
        })?;
        if !po.contains_key("rope_type")
            && !po.contains_key("rope_theta")
            && po.values().all(|v| v.is_object())
        {
            return Err(Error::unsupported(
                path,
                "'rope_parameters' per attention type (nested objects); only one RoPE setting per model is supported",
            ));
        }
        if let Some(t) = po.get("rope_theta").filter(|v| !v.is_null()) {
            theta = Some(t.as_f64().ok_or_else(|| {
                Error::config(
                    path,
                    format!("'rope_parameters.rope_theta' must be a number, found {t}"),
                )
            })?);
        }
        scaling_key = "rope_parameters";
        scaling = Some(p);
    }
    let theta = theta.unwrap_or(10000.0);
    let Some(s) = scaling else {
        return Ok((theta, None));
    };
    let so = s.as_object().ok_or_else(|| {
        Error::config(
            path,
            format!("'{scaling_key}' must be an object, found {s}"),
        )
    })?;
    let kind = so
        .get("rope_type")
        .or_else(|| so.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        so.get(k).and_then(|v| v.as_f64()).ok_or_else(|| {
            Error::config(
                path,
                format!("'{scaling_key}.{k}' must be a number (rope_type '{kind}')"),
            )
        })
    };
    let scaling = match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: so
                .get("original_max_position_embeddings")
                .and_then(|v| v.as_u64())
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| {
                    Error::config(
                        path,
                        format!(
                            "'{scaling_key}.original_max_position_embeddings' must be an integer"
                        ),
                    )
                })?,
        }),
        other => {
            return Err(Error::unsupported(
                path,
                format!("'{scaling_key}' rope_type '{other}'; supported: default, linear, llama3"),
            ))
        }
    };
    Ok((theta, scaling))
}
