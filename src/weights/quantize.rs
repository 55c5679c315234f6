//! Convert an F32/F16/BF16 Hugging Face model folder into an MLX-affine quantised one, the
//! way `mlx_lm.convert -q` lays it out (loadable by mlx_lm and by this runtime).
//!
//! Which tensors are quantised (mlx_lm quantises every `nn.Linear` / `nn.Embedding` whose
//! input dimension is a multiple of the group size; we only see tensors, so):
//! every 2-D float tensor named `*.weight` whose last dimension is a multiple of the group
//! size, except GPT-2 `Conv1D` weights (`attn.c_attn`, `attn.c_proj`, `mlp.c_fc`,
//! `mlp.c_proj`), which are stored `[in, out]` and are kept as they are. Norm weights,
//! biases and 1-D tensors are never 2-D `*.weight` matrices of a Linear, except LayerNorm in
//! some exotic layouts, which are excluded by name (`norm`, `ln_`). Tensors left
//! unquantised need no config entry: loaders detect quantisation by the `.scales` tensor.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

use super::config::{Arch, ModelConfig};
use super::dtype::DType;
use super::quant::{self, QuantSpec};
use super::safetensors_file::{TensorView, WeightStore};
use super::writer::{write_safetensors, OutTensor};

/// What [`quantize_model_dir`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuantizeReport {
    pub spec: QuantSpec,
    /// Modules (tensor name without `.weight`) stored quantised.
    pub quantized: Vec<String>,
    /// 2-D `*.weight` tensors left unquantised because their input dimension is not a
    /// multiple of the group size (or they are GPT-2 Conv1D weights).
    pub skipped: Vec<String>,
    /// Number of tensors copied unchanged.
    pub kept: usize,
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// Other files copied (tokenizer.json, ...).
    pub copied_files: Vec<String>,
}

const GPT2_CONV1D: &[&str] = &[".attn.c_attn", ".attn.c_proj", ".mlp.c_fc", ".mlp.c_proj"];

/// Weight files and formats never copied into the output folder.
fn is_weight_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".safetensors")
        || lower == "model.safetensors.index.json"
        || lower == "config.json"
        || [
            ".bin",
            ".pt",
            ".pth",
            ".gguf",
            ".h5",
            ".msgpack",
            ".onnx",
            ".ckpt",
            ".npz",
            ".tmp-write",
        ]
        .iter()
        .any(|x| lower.ends_with(x))
}

fn should_quantize(arch: Arch, t: &TensorView<'_>, spec: QuantSpec) -> Option<bool> {
    // None: not a candidate at all; Some(false): candidate left unquantised.
    let module = t.name.strip_suffix(".weight")?;
    if t.shape.len() != 2 || !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return None;
    }
    let leaf = module
        .rsplit('.')
        .next()
        .unwrap_or(module)
        .to_ascii_lowercase();
    if leaf.contains("norm") || leaf.starts_with("ln_") || leaf == "ln" {
        return None;
    }
    if arch == Arch::Gpt2 && GPT2_CONV1D.iter().any(|s| module.ends_with(s)) {
        return Some(false);
    }
    Some(spec.packed_cols(t.shape[1]).is_some() && t.shape[0] > 0)
}

/// Quantise the model in `input` into a new folder `output` (which must not exist or be
/// empty). `progress(done, total)` is called after each tensor.
pub fn quantize_model_dir(
    input: &Path,
    output: &Path,
    spec: QuantSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<QuantizeReport> {
    spec.check().map_err(Error::InvalidArgument)?;
    if output.exists() {
        let empty_dir = output.is_dir()
            && std::fs::read_dir(output)
                .map_err(|e| Error::io(output, e))?
                .next()
                .is_none();
        if !empty_dir {
            return Err(Error::config(
                output,
                "output already exists and is not an empty folder; refusing to overwrite it",
            ));
        }
    }
    let config_path = input.join("config.json");
    let config = ModelConfig::from_file(&config_path)?;
    if config.quantization.is_some() {
        return Err(Error::config(
            &config_path,
            "the model is already quantised ('quantization' in config.json)",
        ));
    }
    let store = WeightStore::open(input)?;

    let names = store.names();
    let total = names.len();
    let mut out = Vec::with_capacity(total + 64);
    let mut report = QuantizeReport {
        spec,
        quantized: Vec::new(),
        skipped: Vec::new(),
        kept: 0,
        input_bytes: store.total_bytes(),
        output_bytes: 0,
        copied_files: Vec::new(),
    };
    for (i, name) in names.iter().enumerate() {
        let t = store.tensor(name)?;
        match should_quantize(config.arch, &t, spec) {
            Some(true) => {
                let module = &name[..name.len() - ".weight".len()];
                let (rows, cols) = (t.shape[0], t.shape[1]);
                let w = t.to_f32_vec()?;
                let (words, scales, biases) = quant::quantize(&w, rows, cols, spec, t.dtype);
                let packed = words.len() / rows;
                let groups = scales.len() / rows;
                out.push(OutTensor::u32(name.to_string(), vec![rows, packed], &words));
                for (suffix, vals) in [("scales", &scales), ("biases", &biases)] {
                    let n = format!("{module}.{suffix}");
                    out.push(OutTensor::floats(n, vec![rows, groups], t.dtype, vals));
                }
                report.quantized.push(module.to_string());
            }
            q => {
                if q == Some(false) {
                    report.skipped.push(name.to_string());
                }
                out.push(OutTensor::copy_of(&t));
                report.kept += 1;
            }
        }
        progress(i + 1, total);
    }

    // Stage everything in a sibling folder, then rename.
    let tmp = super::writer::staging_dir(output)?;
    let result = (|| -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), "mlx".to_string());
        let st = tmp.join("model.safetensors");
        write_safetensors(&st, &out, Some(meta))?;
        report.output_bytes = out.iter().map(|t| t.data.len() as u64).sum();
        drop(std::mem::take(&mut out));

        let mut cfg = config.raw.clone();
        let q = serde_json::json!({
            "group_size": spec.group_size,
            "bits": spec.bits,
            "mode": "affine",
        });
        cfg.insert("quantization".into(), q.clone());
        cfg.insert("quantization_config".into(), q);
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(cfg))
            .map_err(|e| Error::json(&config_path, e))?;
        let cfg_out = tmp.join("config.json");
        std::fs::write(&cfg_out, text + "\n").map_err(|e| Error::io(&cfg_out, e))?;

        let mut entries: Vec<_> = std::fs::read_dir(input)
            .map_err(|e| Error::io(input, e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::io(input, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if !p.is_file() || is_weight_file(&name) || name.starts_with('.') {
                continue;
            }
            let dst = tmp.join(&name);
            std::fs::copy(&p, &dst).map_err(|e| Error::io(&p, e))?;
            report.copied_files.push(name);
        }
        Ok(())
    })();
    super::writer::publish_staged(&tmp, output, result)?;
    Ok(report)
}
