//! One error type for the whole crate. Every variant that comes from a file names the file;
//! tensor-level variants also name the tensor and what was expected, so a user can act on
//! the one line the CLI prints.

use std::fmt;
use std::path::{Path, PathBuf};

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A file path as shown in messages (the path as the caller gave it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath(pub PathBuf);

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

impl From<&Path> for FilePath {
    fn from(p: &Path) -> Self {
        FilePath(p.to_path_buf())
    }
}

impl From<PathBuf> for FilePath {
    fn from(p: PathBuf) -> Self {
        FilePath(p)
    }
}

impl From<&PathBuf> for FilePath {
    fn from(p: &PathBuf) -> Self {
        FilePath(p.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS refused to open, read, map or write a file.
    #[error("{path}: {source}")]
    Io {
        path: FilePath,
        #[source]
        source: std::io::Error,
    },

    /// A file's structure is wrong: truncated, a header that lies, overlapping tensors, ...
    #[error("{path}: {reason}")]
    Format { path: FilePath, reason: String },

    /// A JSON file (config.json, adapter_config.json, an index, a metadata blob) is malformed
    /// or has a value of the wrong type.
    #[error("{path}: invalid JSON: {reason}")]
    Json { path: FilePath, reason: String },

    /// A configuration value is not acceptable (unknown key, wrong peft_type, bad number).
    #[error("{path}: {reason}")]
    Config { path: FilePath, reason: String },

    /// A tensor is missing.
    #[error("{path}: tensor '{tensor}' not found{hint}")]
    MissingTensor {
        path: FilePath,
        tensor: String,
        hint: String,
    },

    /// A tensor has the wrong dtype, shape or contents.
    #[error("{path}: tensor '{tensor}': expected {expected}, found {found}")]
    Tensor {
        path: FilePath,
        tensor: String,
        expected: String,
        found: String,
    },

    /// An adapter does not fit the model it is applied to.
    #[error("{adapter}: does not fit the model {model}: {reason}")]
    AdapterMismatch {
        adapter: FilePath,
        model: FilePath,
        reason: String,
    },

    /// Something the format allows but this runtime does not (yet) implement.
    #[error("{path}: unsupported: {what}")]
    Unsupported { path: FilePath, what: String },

    /// No usable GPU, or the GPU refused an operation (device lost, out of memory, limits).
    #[error("GPU: {0}")]
    Gpu(String),

    /// A caller passed an argument that cannot work (e.g. a shape of zero).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub fn io(path: impl Into<FilePath>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<FilePath>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn json(path: impl Into<FilePath>, reason: impl fmt::Display) -> Self {
        Error::Json {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
    pub fn config(path: impl Into<FilePath>, reason: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn missing_tensor(path: impl Into<FilePath>, tensor: impl Into<String>) -> Self {
        Error::MissingTensor {
            path: path.into(),
            tensor: tensor.into(),
            hint: String::new(),
        }
    }
    pub fn tensor(
        path: impl Into<FilePath>,
        tensor: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::Tensor {
            path: path.into(),
            tensor: tensor.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
    pub fn unsupported(path: impl Into<FilePath>, what: impl Into<String>) -> Self {
        Error::Unsupported {
            path: path.into(),
            what: what.into(),
        }
    }
}
