//! `fourierft inspect PATH [--json] [--model M]`.

use std::path::Path;

use serde_json::{json, Value};

use fourierft::fourier::adapter::PACKED_FORMAT;
use fourierft::fourier::Adapter;
use fourierft::weights::{ModelFiles, SafeTensorsFile, WeightStore};
use fourierft::{Error, Result};

enum Kind {
    Adapter,
    Model,
    Tensors,
}

fn classify(path: &Path) -> Result<Kind> {
    if path.is_dir() {
        if path.join("adapter_config.json").is_file() {
            return Ok(Kind::Adapter);
        }
        if path.join("config.json").is_file() {
            return Ok(Kind::Model);
        }
        return Err(Error::config(
            path,
            "expected a model folder (config.json + safetensors) or a PEFT adapter folder (adapter_config.json)",
        ));
    }
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    let f = SafeTensorsFile::open(path)?;
    let packed = f
        .metadata()
        .and_then(|m| m.get("format"))
        .is_some_and(|v| v == PACKED_FORMAT);
    let dir = path.parent().unwrap_or(Path::new("."));
    if packed || dir.join("adapter_config.json").is_file() {
        Ok(Kind::Adapter)
    } else if dir.join("config.json").is_file() {
        Ok(Kind::Model)
    } else {
        Ok(Kind::Tensors)
    }
}

pub fn run(path: &Path, as_json: bool, model: Option<&Path>) -> Result<()> {
    let v = match classify(path)? {
        Kind::Adapter => adapter_info(path, model)?,
        Kind::Model => {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            let m = ModelFiles::open(dir)?;
            let mut v = serde_json::to_value(m.summary()).map_err(|e| Error::json(dir, e))?;
            v["kind"] = json!("model");
            v
        }
        Kind::Tensors => {
            let w = WeightStore::open(path)?;
            let mut dtypes = std::collections::BTreeMap::<String, usize>::new();
            for n in w.names() {
                if let Some(t) = w.get(n) {
                    *dtypes.entry(t.dtype.to_string()).or_default() += 1;
                }
            }
            json!({"kind": "tensors", "path": path, "tensors": w.len(), "dtypes": dtypes, "bytes": w.total_bytes()})
        }
    };
    if as_json {
        crate::print_json(&v);
    } else {
        print_text(&v, 0);
    }
    Ok(())
}

/// `fourierft inspect --gpu`: the adapter the GPU backend would use, its limits and features.
pub fn gpu(as_json: bool) -> Result<()> {
    let ctx = fourierft::backend::wgpu::GpuContext::new()?;
    let mut v =
        serde_json::to_value(ctx.summary()).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    v["kind"] = json!("gpu");
    if as_json {
        crate::print_json(&v);
    } else {
        print_text(&v, 0);
    }
    Ok(())
}

fn adapter_info(path: &Path, model: Option<&Path>) -> Result<Value> {
    let a = Adapter::load(path)?;
    let c = &a.config;
    let modules: Vec<Value> = a
        .modules
        .iter()
        .map(|m| json!({"name": m.name, "n": m.n(), "dtype": m.stored_dtype.to_string(), "explicit_positions": m.positions.is_some()}))
        .collect();
    let mut ns: Vec<usize> = a.modules.iter().map(|m| m.n()).collect();
    ns.sort_unstable();
    ns.dedup();
    let mut v = json!({
        "kind": "adapter",
        "type": "FOURIERFT",
        "format": a.format,
        "path": a.source,
        "file_bytes": a.file_bytes,
        "target_modules": c.target_modules,
        "modules_adapted": a.modules.len(),
        "n_frequency": c.n_frequency,
        "n_values": ns,
        "n_frequency_pattern": c.n_frequency_pattern.iter().map(|(k, n)| json!([k, n])).collect::<Vec<_>>(),
        "coefficients": a.modules.iter().map(|m| m.n()).sum::<usize>(),
        "random_loc_seed": c.random_loc_seed,
        "scaling": c.scaling,
        "fan_in_fan_out": c.fan_in_fan_out,
        "bias": c.bias,
        "modules_to_save": c.modules_to_save,
        "layers_to_transform": c.layers_to_transform,
        "base_model_name_or_path": c.base_model_name_or_path,
        "peft_version": c.peft_version,
        "extra_tensors": a.extras.iter().map(|e| json!({"name": e.name, "shape": e.shape, "dtype": e.dtype.to_string()})).collect::<Vec<_>>(),
        "modules": modules,
    });
    if let Some(mp) = model {
        let m = ModelFiles::open(mp)?;
        v["fits"] = match a.fit(&m) {
            Ok(fits) => json!({"model": mp, "ok": true, "layers": fits}),
            Err(e) => json!({"model": mp, "ok": false, "reason": e.to_string()}),
        };
    }
    Ok(v)
}

fn print_text(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    if let Value::Object(m) = v {
        for (k, val) in m {
            match val {
                Value::Object(_) => {
                    outln!("{pad}{k}:");
                    print_text(val, indent + 2);
                }
                Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                    outln!("{pad}{k}: ({} entries)", a.len());
                    for x in a.iter().take(64) {
                        let line: Vec<String> = x
                            .as_object()
                            .map(|o| {
                                o.iter()
                                    .map(|(k, v)| format!("{k}={}", scalar(v)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        outln!("{pad}  - {}", line.join("  "));
                    }
                    if a.len() > 64 {
                        outln!("{pad}  … {} more", a.len() - 64);
                    }
                }
                _ => outln!("{pad}{k}: {}", scalar(val)),
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
