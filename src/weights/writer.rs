//! Writing safetensors files (golden outputs, packed adapters, quantised models).
//!
//! Files are written to `<path>.tmp` and renamed, so a reader never sees half a file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, View};

use crate::error::{Error, Result};

/// One tensor to write: name, dtype, shape and its little-endian bytes.
pub struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl OutTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        OutTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    pub fn f16(name: impl Into<String>, shape: Vec<usize>, values: &[half::f16]) -> Self {
        OutTensor {
            name: name.into(),
            dtype: Dtype::F16,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    pub fn bf16(name: impl Into<String>, shape: Vec<usize>, values: &[half::bf16]) -> Self {
        OutTensor {
            name: name.into(),
            dtype: Dtype::BF16,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    pub fn i64(name: impl Into<String>, shape: Vec<usize>, values: &[i64]) -> Self {
        OutTensor {
            name: name.into(),
            dtype: Dtype::I64,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    pub fn u32(name: impl Into<String>, shape: Vec<usize>, values: &[u32]) -> Self {
        OutTensor {
            name: name.into(),
            dtype: Dtype::U32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl OutTensor {
    /// f32 values stored as `dtype` (F32, F16, BF16 or F64; others are stored as F32).
    pub fn floats(
        name: impl Into<String>,
        shape: Vec<usize>,
        dtype: crate::weights::DType,
        values: &[f32],
    ) -> Self {
        use crate::weights::DType;
        let dtype = if dtype.is_float() { dtype } else { DType::F32 };
        OutTensor {
            name: name.into(),
            dtype: dtype.to_safetensors(),
            shape,
            data: dtype.encode_f32(values).unwrap_or_default(),
        }
    }

    /// A byte-for-byte copy of a tensor read from another file.
    pub fn copy_of(view: &crate::weights::TensorView<'_>) -> Self {
        OutTensor {
            name: view.name.to_string(),
            dtype: view.dtype.to_safetensors(),
            shape: view.shape.to_vec(),
            data: view.data.to_vec(),
        }
    }
}

impl View for &OutTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Serialise `tensors` (+ optional string metadata) to `path` atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[OutTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    for t in tensors {
        let elems: usize = t.shape.iter().product();
        let want = elems * t.dtype.bitsize() / 8;
        if want != t.data.len() {
            return Err(Error::tensor(
                path,
                &t.name,
                format!("{} bytes for {:?} {:?}", want, t.dtype, t.shape),
                format!("{} bytes", t.data.len()),
            ));
        }
    }
    let bytes =
        safetensors::tensor::serialize(tensors.iter().map(|t| (t.name.clone(), t)), metadata)
            .map_err(|e| Error::format(path, format!("cannot serialise safetensors: {e}")))?;
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// A fresh, empty sibling of `output` to stage a folder in before renaming it into place, so a
/// reader never sees half a model (`.<name>.tmp-<pid>` next to `output`).
pub fn staging_dir(output: &Path) -> Result<std::path::PathBuf> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let base = output
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    Ok(tmp)
}

/// Finish a folder staged with [`staging_dir`]: when `built` succeeded, move it to `output`
/// (replacing an empty folder there); otherwise remove the staging folder and return the error.
pub fn publish_staged(tmp: &Path, output: &Path, built: Result<()>) -> Result<()> {
    let result = built.and_then(|()| {
        if output.exists() {
            // Callers refuse a non-empty output before staging.
            std::fs::remove_dir(output).map_err(|e| Error::io(output, e))?;
        }
        std::fs::rename(tmp, output).map_err(|e| Error::io(output, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(tmp);
    }
    result
}
