//! `adapter_config.json` of a PEFT 0.21 FourierFT adapter, read strictly.
//!
//! Every key PEFT 0.21.2 writes is understood; any other key is refused, because a key we do
//! not know (e.g. `alpha` or `ifft2_norm` from other FourierFT code) changes the maths and
//! ignoring it would give a silently wrong ΔW.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Keys of `peft.PeftConfig` (0.21.2).
pub const PEFT_BASE_KEYS: &[&str] = &[
    "auto_mapping",
    "base_model_name_or_path",
    "inference_mode",
    "peft_type",
    "peft_version",
    "revision",
    "task_type",
];

/// Keys that `peft.FourierFTConfig` (0.21.2) adds.
pub const FOURIERFT_KEYS: &[&str] = &[
    "bias",
    "exclude_modules",
    "fan_in_fan_out",
    "init_weights",
    "layers_pattern",
    "layers_to_transform",
    "modules_to_save",
    "n_frequency",
    "n_frequency_pattern",
    "random_loc_seed",
    "scaling",
    "target_modules",
];

/// Which biases the adapter trains (and therefore ships).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bias {
    None,
    All,
    FourierOnly,
}

/// `target_modules` as PEFT accepts it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// A list: a module matches when its name equals an entry or ends with `.entry`.
    List(Vec<String>),
    /// A string: a regex that must match the whole module name.
    Regex(String),
}

/// A parsed FourierFT configuration.
#[derive(Debug, Clone)]
pub struct FourierConfig {
    pub n_frequency: usize,
    pub scaling: f32,
    /// `random_loc_seed` as torch uses it (only the low 32 bits matter to the generator).
    pub random_loc_seed: u64,
    pub fan_in_fan_out: bool,
    pub target_modules: Option<TargetModules>,
    pub exclude_modules: Option<TargetModules>,
    pub bias: Bias,
    pub modules_to_save: Vec<String>,
    pub layers_to_transform: Option<Vec<i64>>,
    pub layers_pattern: Option<Vec<String>>,
    /// `(regex key, n)` in file order: the first key whose `.*\.{key}$` matches wins.
    pub n_frequency_pattern: Vec<(String, usize)>,
    pub init_weights: bool,
    pub base_model_name_or_path: Option<String>,
    pub task_type: Option<String>,
    pub peft_version: Option<String>,
    /// The JSON object as read, kept so a packed file round-trips it exactly.
    pub raw: Map<String, Value>,
}

fn bad(path: &Path, key: &str, expected: &str, found: &Value) -> Error {
    Error::config(
        path,
        format!("key '{key}': expected {expected}, found {}", short(found)),
    )
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(57).map(|c| c.0).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

fn opt_str_list(path: &Path, key: &str, v: &Value) -> Result<Option<Vec<String>>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(vec![s.clone()])),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(path, key, "a list of strings", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        _ => Err(bad(path, key, "null, a string or a list of strings", v)),
    }
}

fn target_modules(path: &Path, key: &str, v: &Value) -> Result<Option<TargetModules>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(TargetModules::Regex(s.clone()))),
        Value::Array(_) => Ok(opt_str_list(path, key, v)?.map(TargetModules::List)),
        _ => Err(bad(
            path,
            key,
            "null, a regex string or a list of module names",
            v,
        )),
    }
}

fn positive_usize(path: &Path, key: &str, v: &Value) -> Result<usize> {
    match v.as_u64() {
        Some(n) if n > 0 && n <= usize::MAX as u64 => Ok(n as usize),
        _ => Err(bad(path, key, "a positive integer", v)),
    }
}

impl FourierConfig {
    /// Parse the text of an `adapter_config.json` (or the config a packed file carries).
    /// `path` is only used in messages.
    pub fn from_json_str(path: &Path, text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::json(path, e))?;
        let Value::Object(raw) = value else {
            return Err(Error::json(path, "expected a JSON object"));
        };
        Self::from_map(path, raw)
    }

    pub fn from_map(path: &Path, raw: Map<String, Value>) -> Result<Self> {
        match raw.get("peft_type") {
            Some(Value::String(t)) if t == "FOURIERFT" => {}
            Some(other) => {
                return Err(Error::config(
                    path,
                    format!(
                        "peft_type is {}, expected \"FOURIERFT\" (this runtime only applies FourierFT adapters)",
                        short(other)
                    ),
                ))
            }
            None => {
                return Err(Error::config(
                    path,
                    "no 'peft_type' key: expected a PEFT adapter_config.json with \"peft_type\": \"FOURIERFT\"",
                ))
            }
        }
        let unknown: Vec<&str> = raw
            .keys()
            .map(String::as_str)
            .filter(|k| !PEFT_BASE_KEYS.contains(k) && !FOURIERFT_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::config(
                path,
                format!(
                    "unknown key(s) {}: not part of PEFT 0.21 FourierFTConfig; this adapter was written by other \
                     code whose maths may differ, refusing to guess",
                    unknown.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let get = |k: &str| raw.get(k).unwrap_or(&Value::Null);

        let n_frequency = match get("n_frequency") {
            Value::Null => 1000,
            v => positive_usize(path, "n_frequency", v)?,
        };
        let scaling = match get("scaling") {
            Value::Null => 150.0,
            v => match v.as_f64() {
                Some(x) if x.is_finite() => x as f32,
                _ => return Err(bad(path, "scaling", "a finite number", v)),
            },
        };
        let random_loc_seed = match raw.get("random_loc_seed") {
            None => 777,
            Some(v) => {
                if let Some(u) = v.as_u64() {
                    u
                } else if let Some(i) = v.as_i64() {
                    // torch maps negative seeds to their two's complement.
                    i as u64
                } else {
                    return Err(bad(path, "random_loc_seed", "an integer seed", v));
                }
            }
        };
        let fan_in_fan_out = match get("fan_in_fan_out") {
            Value::Null => false,
            Value::Bool(b) => *b,
            v => return Err(bad(path, "fan_in_fan_out", "true or false", v)),
        };
        let bias = match get("bias") {
            Value::Null => Bias::None,
            Value::String(s) if s == "none" => Bias::None,
            Value::String(s) if s == "all" => Bias::All,
            Value::String(s) if s == "fourier_only" => Bias::FourierOnly,
            v => {
                return Err(bad(
                    path,
                    "bias",
                    "\"none\", \"all\" or \"fourier_only\"",
                    v,
                ))
            }
        };
        let modules_to_save =
            opt_str_list(path, "modules_to_save", get("modules_to_save"))?.unwrap_or_default();
        let layers_to_transform = match get("layers_to_transform") {
            Value::Null => None,
            Value::Number(n) => Some(vec![n.as_i64().ok_or_else(|| {
                bad(
                    path,
                    "layers_to_transform",
                    "integer layer indices",
                    get("layers_to_transform"),
                )
            })?]),
            Value::Array(a) => Some(
                a.iter()
                    .map(|x| {
                        x.as_i64().ok_or_else(|| {
                            bad(
                                path,
                                "layers_to_transform",
                                "integer layer indices",
                                get("layers_to_transform"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            v => {
                return Err(bad(
                    path,
                    "layers_to_transform",
                    "null, an integer or a list of integers",
                    v,
                ))
            }
        };
        let layers_pattern = opt_str_list(path, "layers_pattern", get("layers_pattern"))?;
        let n_frequency_pattern = match get("n_frequency_pattern") {
            Value::Null => Vec::new(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        positive_usize(path, &format!("n_frequency_pattern.{k}"), v)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?,
            v => {
                return Err(bad(
                    path,
                    "n_frequency_pattern",
                    "an object {module regex: n}",
                    v,
                ))
            }
        };
        // Compile every pattern now so a bad regex is reported at load time.
        for (k, _) in &n_frequency_pattern {
            pattern_regex(path, k)?;
        }
        let init_weights = match get("init_weights") {
            Value::Null => false,
            Value::Bool(b) => *b,
            v => return Err(bad(path, "init_weights", "true or false", v)),
        };
        let opt_string = |k: &str| -> Result<Option<String>> {
            match get(k) {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                v => Err(bad(path, k, "a string or null", v)),
            }
        };
        for k in ["inference_mode"] {
            if !matches!(get(k), Value::Null | Value::Bool(_)) {
                return Err(bad(path, k, "true or false", get(k)));
            }
        }
        let _ = opt_string("revision")?;
        Ok(FourierConfig {
            n_frequency,
            scaling,
            random_loc_seed,
            fan_in_fan_out,
            target_modules: target_modules(path, "target_modules", get("target_modules"))?,
            exclude_modules: target_modules(path, "exclude_modules", get("exclude_modules"))?,
            bias,
            modules_to_save,
            layers_to_transform,
            layers_pattern,
            n_frequency_pattern,
            init_weights,
            base_model_name_or_path: opt_string("base_model_name_or_path")?,
            task_type: opt_string("task_type")?,
            peft_version: opt_string("peft_version")?,
            raw,
        })
    }

    /// n for one module, PEFT's rule: the first `n_frequency_pattern` key (file order) for which
    /// `re.match(rf".*\.{key}$", module)` succeeds, else an exact key equal to the module name,
    /// else `n_frequency`.
    pub fn n_for_module(&self, path: &Path, module: &str) -> Result<usize> {
        for (key, n) in &self.n_frequency_pattern {
            let re = pattern_regex(path, key)?;
            if re.is_match(module).unwrap_or(false) {
                return Ok(*n);
            }
        }
        Ok(self
            .n_frequency_pattern
            .iter()
            .find(|(k, _)| k == module)
            .map(|(_, n)| *n)
            .unwrap_or(self.n_frequency))
    }

    /// The config as JSON text (the keys and values as read).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&Value::Object(self.raw.clone())).unwrap_or_default()
    }
}

/// `re.match(rf".*\.{key}$", name)`: anchored at the start; Python's `$` also matches before
/// a final newline, which module names never contain.
fn pattern_regex(path: &Path, key: &str) -> Result<fancy_regex::Regex> {
    // Python's re.match anchors only the start; the pattern text is spliced in verbatim so
    // an alternation in the key binds exactly as it does in Python.
    fancy_regex::Regex::new(&format!(r"^(?:.*\.{key}$)")).map_err(|e| {
        Error::config(
            path,
            format!("n_frequency_pattern key '{key}' is not a valid regular expression: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<FourierConfig> {
        FourierConfig::from_json_str(Path::new("adapter_config.json"), s)
    }

    #[test]
    fn defaults_and_pattern_order() {
        let c = parse(
            r#"{"peft_type":"FOURIERFT","target_modules":["q_proj"],
                "n_frequency_pattern":{"layers.1.self_attn.q_proj":7,"q_proj":17}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.n_frequency, c.scaling, c.random_loc_seed),
            (1000, 150.0, 777)
        );
        let p = Path::new("x");
        assert_eq!(
            c.n_for_module(p, "model.layers.1.self_attn.q_proj")
                .unwrap(),
            7
        );
        assert_eq!(
            c.n_for_module(p, "model.layers.0.self_attn.q_proj")
                .unwrap(),
            17
        );
        assert_eq!(
            c.n_for_module(p, "model.layers.0.self_attn.v_proj")
                .unwrap(),
            1000
        );
    }

    #[test]
    fn refuses_foreign_keys_and_types() {
        let e = parse(r#"{"peft_type":"FOURIERFT","alpha":1.0,"ifft2_norm":"ortho"}"#).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("'alpha'") && m.contains("'ifft2_norm'"), "{m}");
        let e = parse(r#"{"peft_type":"LORA","r":8}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("peft_type is \"LORA\""), "{e}");
        let e = parse(r#"{"peft_type":"FOURIERFT","n_frequency":0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("n_frequency") && e.contains("positive"), "{e}");
        let e = parse(r#"{"peft_type":"FOURIERFT","bias":"some"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bias"), "{e}");
        let e = parse(r#"{"peft_type":"FOURIERFT","n_frequency_pattern":{"(":3}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid regular expression"), "{e}");
        let e = parse("{not json").unwrap_err().to_string();
        assert!(e.contains("invalid JSON"), "{e}");
    }
}
