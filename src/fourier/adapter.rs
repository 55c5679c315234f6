//! FourierFT adapters: a PEFT folder exactly as `save_pretrained` writes it, or our packed
//! single file (see `docs/packed-format.md`). Both load into [`Adapter`].
//!
//! A PEFT folder holds `adapter_config.json` and `adapter_model.safetensors` with one `[n]`
//! tensor per adapted module, `base_model.model.<module>.fourierft_spectrum`; trained biases
//! (`bias` = `all` / `fourier_only`) and `modules_to_save` copies ride along as
//! `base_model.model.<name>` tensors and are kept as [`ExtraTensor`]s that replace the base
//! tensor of the same name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, FilePath, Result};
use crate::weights::{DType, SafeTensorsFile, TensorView};

use super::config::{Bias, FourierConfig};
use super::positions::spectral_positions;

/// Where an adapter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterFormat {
    /// A Hugging Face PEFT folder (`adapter_config.json` + `adapter_model.safetensors`).
    Peft,
    /// Our packed single file.
    Packed,
}

/// One adapted layer: its coefficients and, optionally, explicit spectral positions.
#[derive(Debug, Clone)]
pub struct AdapterModule {
    /// The base weight's name without `.weight`, e.g. `model.layers.0.self_attn.q_proj`.
    pub name: String,
    /// Coefficients c_k as f32 (PEFT upcasts F16/BF16 spectra with `.float()` too).
    pub coeffs: Vec<f32>,
    /// Dtype the coefficients are stored in, in this file.
    pub stored_dtype: DType,

    /// Explicit `(rows, cols)` from a packed file; otherwise derived from the seed.
    pub positions: Option<(Vec<u32>, Vec<u32>)>,
}

impl AdapterModule {
    pub fn n(&self) -> usize {
        self.coeffs.len()
    }
}

/// A non-Fourier tensor the adapter replaces in the base (trained bias, classifier, ...).
#[derive(Debug, Clone)]
pub struct ExtraTensor {
    /// The base model's tensor name it replaces, e.g. `classifier.weight`.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A loaded, validated FourierFT adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The folder or file it was read from (or a label for in-memory bytes).
    pub source: PathBuf,
    pub format: AdapterFormat,
    pub config: FourierConfig,
    /// Sorted by name.
    pub modules: Vec<AdapterModule>,
    pub extras: Vec<ExtraTensor>,
    /// Bytes on disk (config + tensors), the figure a user ships.
    pub file_bytes: u64,
}

/// The geometry of one adapted layer in a given model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerFit {
    pub module: String,
    /// d1 = out_features, d2 = in_features (PEFT's orientation of ΔW).
    pub out_features: usize,
    pub in_features: usize,
    /// The base weight is stored `[in, out]` (GPT-2 Conv1D): ΔW is merged transposed.
    pub transposed: bool,
    pub n: usize,
}

/// Largest layer (out·in) we build a ΔW for: 2^33 weights (32 GiB of f32), far above any real
/// projection, low enough that a typo in a shape is an error rather than an endless shuffle.
pub const MAX_LAYER_ELEMENTS: u64 = 1 << 33;
pub const PACKED_FORMAT: &str = "fourierft.adapter";
pub const PACKED_VERSION: &str = "1";
const PEFT_PREFIX: &str = "base_model.model.";
const SPECTRUM_SUFFIX: &str = ".fourierft_spectrum";
const POSITIONS_SUFFIX: &str = ".fourierft_positions";
const EXTRA_PREFIX: &str = "extra.";

impl Adapter {
    /// Load a PEFT folder, a packed file, or a PEFT `adapter_model.safetensors` with its
    /// `adapter_config.json` beside it.
    pub fn load(path: &Path) -> Result<Adapter> {
        if path.is_dir() {
            return Self::load_peft_dir(path);
        }
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or folder (expected a PEFT adapter folder or a packed .safetensors adapter)",
                ),
            ));
        }
        let file = SafeTensorsFile::open(path)?;
        let is_packed = file
            .metadata()
            .and_then(|m| m.get("format"))
            .is_some_and(|f| f == PACKED_FORMAT);
        if is_packed {
            Self::from_packed(file)
        } else if let Some(dir) = path
            .parent()
            .filter(|d| d.join("adapter_config.json").is_file())
        {
            Self::from_peft_parts(dir, path, file)
        } else {
            Err(Error::format(
                path,
                "not a FourierFT adapter: expected a packed file (metadata \"format\": \"fourierft.adapter\") \
                 or a PEFT adapter_model.safetensors with adapter_config.json beside it",
            ))
        }
    }

    /// Load a packed adapter from memory (e.g. bytes an app downloaded). `label` names it in errors.
    pub fn from_packed_bytes(label: &Path, bytes: Vec<u8>) -> Result<Adapter> {
        let file = SafeTensorsFile::from_bytes(label, bytes)?;
        Self::from_packed(file)
    }

    fn load_peft_dir(dir: &Path) -> Result<Adapter> {
        let st = dir.join("adapter_model.safetensors");
        if !st.is_file() {
            if dir.join("adapter_model.bin").is_file() {
                return Err(Error::unsupported(
                    dir.join("adapter_model.bin"),
                    "pickled PyTorch weights; save the adapter with safe_serialization=True (PEFT's default)",
                ));
            }
            return Err(Error::io(
                &st,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "missing: a PEFT adapter folder must hold adapter_model.safetensors",
                ),
            ));
        }
        let file = SafeTensorsFile::open(&st)?;
        Self::from_peft_parts(dir, &st, file)
    }

    fn from_peft_parts(dir: &Path, st_path: &Path, file: SafeTensorsFile) -> Result<Adapter> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config = FourierConfig::from_json_str(&cfg_path, &text)?;
        let mut modules = Vec::new();
        let mut extras = Vec::new();
        for name in file.names() {
            let view = file.tensor(name)?;
            let Some(rest) = name.strip_prefix(PEFT_PREFIX) else {
                return Err(Error::format(
                    st_path,
                    format!("tensor '{name}': expected PEFT keys starting with '{PEFT_PREFIX}'"),
                ));
            };
            if let Some(module) = rest.strip_suffix(SPECTRUM_SUFFIX) {
                let n = config.n_for_module(&cfg_path, module)?;
                modules.push(read_spectrum(&view, module, n)?);
            } else if let Some(e) = read_extra(&view, &config, st_path, name, rest)? {
                push_extra(&mut extras, e, st_path)?;
            }
        }
        let file_bytes = file.file_size() + text.len() as u64;
        Self::finish(
            dir,
            AdapterFormat::Peft,
            config,
            modules,
            extras,
            file_bytes,
            st_path,
        )
    }

    fn from_packed(file: SafeTensorsFile) -> Result<Adapter> {
        let path = file.path().to_path_buf();
        let meta = file.metadata().cloned().unwrap_or_default();
        let version = meta.get("format_version").map(String::as_str).unwrap_or("");
        if version != PACKED_VERSION {
            return Err(Error::unsupported(
                &path,
                format!("packed adapter format_version '{version}' (this build reads version {PACKED_VERSION})"),
            ));
        }
        let cfg_text = meta.get("peft_config").ok_or_else(|| {
            Error::format(&path, "packed adapter metadata has no 'peft_config' entry")
        })?;
        let config = FourierConfig::from_json_str(&path, cfg_text)?;
        let mut modules = Vec::new();
        let mut extras = Vec::new();
        let mut positions: HashMap<String, (Vec<u32>, Vec<u32>)> = HashMap::new();
        for name in file.names() {
            let view = file.tensor(name)?;
            if let Some(module) = name.strip_suffix(SPECTRUM_SUFFIX) {
                let n = config.n_for_module(&path, module)?;
                modules.push(read_spectrum(&view, module, n)?);
            } else if let Some(module) = name.strip_suffix(POSITIONS_SUFFIX) {
                view.expect_dtype(&[DType::U32])?;
                if view.shape.len() != 2 || view.shape[0] != 2 {
                    return Err(Error::tensor(
                        &path,
                        name,
                        "shape [2, n]",
                        format!("{:?}", view.shape),
                    ));
                }
                let v = view.to_u32_vec()?;
                let n = view.shape[1];
                positions.insert(module.to_string(), (v[..n].to_vec(), v[n..].to_vec()));
            } else if let Some(target) = name.strip_prefix(EXTRA_PREFIX) {
                extras.push(ExtraTensor {
                    name: target.to_string(),
                    dtype: view.dtype,
                    shape: view.shape.to_vec(),
                    values: finite_values(&view)?,
                });
            } else {
                return Err(Error::format(
                    &path,
                    format!("tensor '{name}': not a spectrum, positions or extra tensor of a packed adapter"),
                ));
            }
        }
        for m in &mut modules {
            if let Some(p) = positions.remove(&m.name) {
                if p.0.len() != m.n() {
                    return Err(Error::tensor(
                        &path,
                        format!("{}{POSITIONS_SUFFIX}", m.name),
                        format!("[2, {}] (one position per coefficient)", m.n()),
                        format!("[2, {}]", p.0.len()),
                    ));
                }
                m.positions = Some(p);
            }
        }
        if let Some(orphan) = positions.keys().next() {
            return Err(Error::format(
                &path,
                format!("tensor '{orphan}{POSITIONS_SUFFIX}' has no matching spectrum"),
            ));
        }
        let file_bytes = file.file_size();
        Self::finish(
            &path,
            AdapterFormat::Packed,
            config,
            modules,
            extras,
            file_bytes,
            &path,
        )
    }

    fn finish(
        source: &Path,
        format: AdapterFormat,
        config: FourierConfig,
        mut modules: Vec<AdapterModule>,
        mut extras: Vec<ExtraTensor>,
        file_bytes: u64,
        tensors_path: &Path,
    ) -> Result<Adapter> {
        if modules.is_empty() {
            return Err(Error::format(
                tensors_path,
                "no '*.fourierft_spectrum' tensor: the adapter adapts no layer",
            ));
        }
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        extras.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Adapter {
            source: source.to_path_buf(),
            format,
            config,
            modules,
            extras,
            file_bytes,
        })
    }

    pub fn module(&self, name: &str) -> Option<&AdapterModule> {
        self.modules.iter().find(|m| m.name == name)
    }

    /// Look a module up, with an error listing what the adapter does adapt.
    pub fn require_module(&self, name: &str) -> Result<&AdapterModule> {
        self.module(name).ok_or_else(|| {
            let names: Vec<&str> = self.modules.iter().map(|m| m.name.as_str()).collect();
            let shown = if names.len() > 6 {
                format!("{}, … ({} in all)", names[..6].join(", "), names.len())
            } else {
                names.join(", ")
            };
            Error::config(
                &self.source,
                format!("the adapter has no module '{name}'; it adapts: {shown}"),
            )
        })
    }

    /// Spectral positions `(rows over out_features, cols over in_features)` of one module for a
    /// layer of `out_features × in_features`, checked against that shape.
    pub fn positions(
        &self,
        m: &AdapterModule,
        out_features: usize,
        in_features: usize,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let total = (out_features as u128) * (in_features as u128);
        if out_features == 0 || in_features == 0 || total > MAX_LAYER_ELEMENTS as u128 {
            return Err(Error::InvalidArgument(format!(
                "layer shape {out_features}x{in_features} for module '{}': expected 1 to 2^33 weights",
                m.name
            )));
        }
        if m.n() as u128 > total {
            return Err(Error::config(
                &self.source,
                format!(
                    "module '{}': n = {} spectral coefficients but the layer has only {out_features}x{in_features} = {total} entries (PEFT requires n <= out*in)",
                    m.name,
                    m.n()
                ),
            ));
        }
        if let Some((rows, cols)) = &m.positions {
            let mut seen = std::collections::HashSet::with_capacity(rows.len());
            for (&r, &c) in rows.iter().zip(cols) {
                if r as usize >= out_features || c as usize >= in_features {
                    return Err(Error::config(
                        &self.source,
                        format!(
                            "module '{}': explicit position ({r}, {c}) lies outside the {out_features}x{in_features} layer",
                            m.name
                        ),
                    ));
                }
                if !seen.insert((r, c)) {
                    return Err(Error::config(
                        &self.source,
                        format!(
                            "module '{}': explicit position ({r}, {c}) appears twice",
                            m.name
                        ),
                    ));
                }
            }
            return Ok((rows.clone(), cols.clone()));
        }
        if out_features > u32::MAX as usize || in_features > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "layer shape {out_features}x{in_features} exceeds 32-bit dimensions"
            )));
        }
        Ok(spectral_positions(
            self.config.random_loc_seed,
            out_features,
            in_features,
            m.n(),
        ))
    }

    /// Write this adapter as a packed file. `coeff_dtype` is F32 (exact) or F16 (half the
    /// size; coefficients rounded). `explicit` adds each module's positions (from `fits`).
    pub fn write_packed(
        &self,
        out: &Path,
        coeff_dtype: DType,
        explicit: Option<&[LayerFit]>,
    ) -> Result<u64> {
        use crate::weights::writer::{write_safetensors, OutTensor};
        let mut tensors = Vec::new();
        for m in &self.modules {
            let name = format!("{}{SPECTRUM_SUFFIX}", m.name);
            tensors.push(match coeff_dtype {
                DType::F32 => OutTensor::f32(name, vec![m.n()], &m.coeffs),
                DType::F16 => {
                    let h: Vec<half::f16> = m.coeffs.iter().map(|&c| half::f16::from_f32(c)).collect();
                    if let Some(i) = h.iter().position(|x| !x.is_finite()) {
                        return Err(Error::InvalidArgument(format!(
                            "module '{}': coefficient {} = {} does not fit in f16; pack with --dtype f32",
                            m.name, i, m.coeffs[i]
                        )));
                    }
                    OutTensor::f16(name, vec![m.n()], &h)
                }
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "packed coefficients must be f16 or f32, not {other}"
                    )))
                }
            });
            let pos = match explicit {
                Some(fits) => {
                    let fit = fits.iter().find(|f| f.module == m.name).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "no layer shape known for module '{}'",
                            m.name
                        ))
                    })?;
                    Some(self.positions(m, fit.out_features, fit.in_features)?)
                }
                None => m.positions.clone(),
            };
            if let Some((r, c)) = pos {
                let both: Vec<u32> = r.iter().chain(c.iter()).copied().collect();
                tensors.push(OutTensor::u32(
                    format!("{}{POSITIONS_SUFFIX}", m.name),
                    vec![2, m.n()],
                    &both,
                ));
            }
        }
        for e in &self.extras {
            let name = format!("{EXTRA_PREFIX}{}", e.name);
            tensors.push(match e.dtype {
                DType::F16 => OutTensor::f16(
                    name,
                    e.shape.clone(),
                    &e.values
                        .iter()
                        .map(|&v| half::f16::from_f32(v))
                        .collect::<Vec<_>>(),
                ),
                DType::BF16 => OutTensor::bf16(
                    name,
                    e.shape.clone(),
                    &e.values
                        .iter()
                        .map(|&v| half::bf16::from_f32(v))
                        .collect::<Vec<_>>(),
                ),
                _ => OutTensor::f32(name, e.shape.clone(), &e.values),
            });
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), PACKED_FORMAT.to_string());
        meta.insert("format_version".to_string(), PACKED_VERSION.to_string());
        meta.insert("peft_config".to_string(), self.config.to_json_string());

        write_safetensors(out, &tensors, Some(meta))?;
        Ok(std::fs::metadata(out).map_err(|e| Error::io(out, e))?.len())
    }
}

fn finite_values(view: &TensorView<'_>) -> Result<Vec<f32>> {
    view.expect_dtype(&[DType::F32, DType::F16, DType::BF16])?;
    let v = view.to_f32_vec()?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::tensor(
            view.path,
            view.name,
            "finite values",
            format!("{} at index {i}", v[i]),
        ));
    }
    Ok(v)
}

fn read_spectrum(view: &TensorView<'_>, module: &str, n: usize) -> Result<AdapterModule> {
    if view.shape.len() != 1 {
        return Err(Error::tensor(
            view.path,
            view.name,
            format!("a 1-D spectrum [{n}]"),
            format!("shape {:?}", view.shape),
        ));
    }
    if view.shape[0] != n {
        return Err(Error::tensor(
            view.path,
            view.name,
            format!("[{n}] coefficients (n_frequency / n_frequency_pattern of the config)"),
            format!("[{}]", view.shape[0]),
        ));
    }
    Ok(AdapterModule {
        name: module.to_string(),
        coeffs: finite_values(view)?,
        stored_dtype: view.dtype,
        positions: None,
    })
}

/// A non-spectrum PEFT tensor: a trained bias or a `modules_to_save` copy. Returns `None`
/// for tensors that only restate the base (`<m>.original_module.*`, which PEFT writes with
/// `bias = "all"`).
///
/// PEFT 0.21 names them (after `base_model.model.`):
/// - `<m>.base_layer.bias`: the bias of an adapted layer → base `<m>.bias`;
/// - `<m>.<param>` and `<m>.modules_to_save.<param>`: a `modules_to_save` copy (both may be
///   present, with equal values) → base `<m>.<param>`;
/// - `<m>.bias` of any other layer with `bias = "all"` → base `<m>.bias`.
fn read_extra(
    view: &TensorView<'_>,
    config: &FourierConfig,
    st_path: &Path,
    full: &str,
    rest: &str,
) -> Result<Option<ExtraTensor>> {
    if rest.contains(".original_module.") {
        return Ok(None);
    }
    let target = rest
        .replacen(".base_layer.", ".", 1)
        .replacen(".modules_to_save.", ".", 1);
    let is_bias = target.ends_with(".bias") && config.bias != Bias::None;
    let is_saved = config
        .modules_to_save
        .iter()
        .any(|m| target.starts_with(&format!("{m}.")) || target.contains(&format!(".{m}.")));
    if !is_bias && !is_saved {
        return Err(Error::format(
            st_path,
            format!(
                "unexpected tensor '{full}': neither a fourierft_spectrum, a trained bias (bias = {:?}) nor one of modules_to_save {:?}",
                config.bias, config.modules_to_save
            ),
        ));
    }
    Ok(Some(ExtraTensor {
        name: target,
        dtype: view.dtype,
        shape: view.shape.to_vec(),
        values: finite_values(view)?,
    }))
}

/// Merge PEFT's duplicate copies of one tensor (they must agree).
fn push_extra(extras: &mut Vec<ExtraTensor>, e: ExtraTensor, st_path: &Path) -> Result<()> {
    if let Some(prev) = extras.iter().find(|x| x.name == e.name) {
        if prev.shape != e.shape || prev.values != e.values {
            return Err(Error::format(
                st_path,
                format!("two different copies of '{}' in one adapter", e.name),
            ));
        }
        return Ok(());
    }
    extras.push(e);
    Ok(())
}

impl From<&Adapter> for FilePath {
    fn from(a: &Adapter) -> Self {
        FilePath(a.source.clone())
    }
}
