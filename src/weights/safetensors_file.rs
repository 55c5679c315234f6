//! Memory-mapped safetensors files and a model's tensors across one or more files.
//!
//! The header is parsed and validated here (not by the `safetensors` crate) so that every
//! defect gets its own message naming the file and the tensor. Accepted files are exactly
//! those the reference `safetensors` implementation accepts, with one extension: the header
//! need not be padded, so tensor data may start at any byte offset (MLX writes such files).
//! Views therefore hand out raw little-endian bytes and convert with `from_le_bytes`.
//!
//! Decisions:
//! - tensors must tile the data region exactly: sorted by offset they start at 0, each
//!   starts where the previous one ended (no overlap, no gap) and the last one ends at the
//!   end of the file. Trailing bytes after the last tensor are rejected, as the
//!   `safetensors` crate and Python `safetensors` reject them.
//! - the header must be a JSON object; `__metadata__` (optional) must map strings to strings.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::dtype::{DType, KNOWN_UNSUPPORTED};

/// Header lengths above this are refused (same limit as the `safetensors` crate).
const MAX_HEADER_SIZE: u64 = 100_000_000;

/// A borrowed view of one tensor: its raw little-endian bytes, possibly unaligned.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub path: &'a Path,
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

fn shape_str(shape: &[usize]) -> String {
    format!("{shape:?}")
}

impl TensorView<'_> {
    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn numel(&self) -> usize {
        // Validated on open: product * size == data.len(), so it cannot overflow.
        self.shape.iter().product()
    }

    fn wrong_dtype(&self, expected: &str) -> Error {
        Error::tensor(
            self.path,
            self.name,
            expected.to_string(),
            format!("dtype {} {}", self.dtype, shape_str(self.shape)),
        )
    }

    /// Convert F32/F16/BF16/F64 data to f32 (F64 is rounded).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.numel()];
        self.read_f32_into(&mut out)?;
        Ok(out)
    }

    /// Like [`to_f32_vec`](Self::to_f32_vec) into a caller buffer of exactly `numel()` values.
    pub fn read_f32_into(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.numel() {
            return Err(Error::InvalidArgument(format!(
                "{}: tensor '{}' has {} elements, buffer holds {}",
                self.path.display(),
                self.name,
                self.numel(),
                out.len()
            )));
        }
        let d = self.data;
        match self.dtype {
            DType::F32 => {
                for (o, c) in out.iter_mut().zip(d.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            DType::F16 => {
                for (o, c) in out.iter_mut().zip(d.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DType::BF16 => {
                for (o, c) in out.iter_mut().zip(d.chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DType::F64 => {
                for (o, c) in out.iter_mut().zip(d.chunks_exact(8)) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    *o = f64::from_le_bytes(b) as f32;
                }
            }
            _ => return Err(self.wrong_dtype("a float tensor (F32, F16, BF16 or F64)")),
        }
        Ok(())
    }

    /// U32 data (U8/U16 are widened).
    pub fn to_u32_vec(&self) -> Result<Vec<u32>> {
        let d = self.data;
        Ok(match self.dtype {
            DType::U32 => d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::U16 => d
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect(),
            DType::U8 => d.iter().map(|&b| b as u32).collect(),
            _ => return Err(self.wrong_dtype("dtype U32")),
        })
    }

    /// I64 data (I32/I16/I8/U8/U16/U32 are widened).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        let d = self.data;
        Ok(match self.dtype {
            DType::I64 => d
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    i64::from_le_bytes(b)
                })
                .collect(),
            DType::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            DType::U32 => d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            DType::I16 => d
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            DType::U16 => d
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            DType::I8 => d.iter().map(|&b| b as i8 as i64).collect(),
            DType::U8 => d.iter().map(|&b| b as i64).collect(),
            _ => return Err(self.wrong_dtype("an integer tensor (I64)")),
        })
    }

    /// Error unless the shape is exactly `shape`.
    pub fn expect_shape(&self, shape: &[usize]) -> Result<()> {
        if self.shape == shape {
            Ok(())
        } else {
            Err(Error::tensor(
                self.path,
                self.name,
                format!("shape {}", shape_str(shape)),
                format!("shape {}", shape_str(self.shape)),
            ))
        }
    }

    /// Error unless the dtype is one of `dtypes`.
    pub fn expect_dtype(&self, dtypes: &[DType]) -> Result<()> {
        if dtypes.contains(&self.dtype) {
            Ok(())
        } else {
            let names: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
            Err(Error::tensor(
                self.path,
                self.name,
                format!("dtype {}", names.join(" or ")),
                format!("dtype {}", self.dtype),
            ))
        }
    }

    /// Error unless the tensor is 2-D; returns (rows, cols).
    pub fn expect_2d(&self) -> Result<(usize, usize)> {
        match self.shape {
            [r, c] => Ok((*r, *c)),
            _ => Err(Error::tensor(
                self.path,
                self.name,
                "a 2-D tensor",
                format!("shape {}", shape_str(self.shape)),
            )),
        }
    }

    /// The data as `&[f32]` without copying when it is F32 and 4-byte aligned.
    pub fn as_f32_slice(&self) -> Option<&[f32]> {
        if self.dtype != DType::F32 || cfg!(target_endian = "big") {
            return None;
        }
        bytemuck::try_cast_slice(self.data).ok()
    }
}

/// One tensor's entry in a parsed header.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

enum Backing {
    Mmap(std::sync::Arc<memmap2::Mmap>),
    Owned(Vec<u8>),
    Empty,
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
            Backing::Empty => &[],
        }
    }
}

/// One safetensors file: a memory map (or owned buffer) plus its validated header.
pub struct SafeTensorsFile {
    path: PathBuf,
    backing: Backing,
    /// Sorted by name.
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    metadata: Option<HashMap<String, String>>,
    header_len: usize,
}

impl std::fmt::Debug for SafeTensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .field("file_size", &self.file_size())
            .finish()
    }
}

impl SafeTensorsFile {
    /// Memory-map and validate `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::format(
                path,
                "is a directory, expected a .safetensors file",
            ));
        }
        if meta.len() == 0 {
            return Self::build(path, Backing::Empty);
        }
        // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not
        // being truncated or rewritten while it is open.
        let mmap =
            unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::build(path, Backing::Mmap(std::sync::Arc::new(mmap)))
    }

    /// The file's memory map (shared; `None` for in-memory files) and the byte offset of
    /// `view`'s data in it, so a backend can read a tensor in place without copying it.
    pub fn mapped(&self, view: &TensorView<'_>) -> Option<(std::sync::Arc<memmap2::Mmap>, usize)> {
        let Backing::Mmap(m) = &self.backing else {
            return None;
        };
        let base = m.as_ptr() as usize;
        let at = view.data.as_ptr() as usize;
        (at >= base && at + view.data.len() <= base + m.len()).then(|| (m.clone(), at - base))
    }

    /// Validate an in-memory file; `path` is used in messages only.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::build(path, Backing::Owned(bytes))
    }

    fn build(path: &Path, backing: Backing) -> Result<Self> {
        let (header_len, entries, metadata) = parse_header(path, backing.bytes())?;
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(SafeTensorsFile {
            path: path.to_path_buf(),
            backing,
            entries,
            index,
            metadata,
            header_len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        let e = &self.entries[*self.index.get(name)?];
        Some(TensorView {
            path: &self.path,
            name: &e.name,
            dtype: e.dtype,
            shape: &e.shape,
            data: &self.backing.bytes()[e.start..e.end],
        })
    }

    /// Like [`get`](Self::get), with an error naming the file when the tensor is absent.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.get(name).ok_or_else(|| {
            missing(
                &self.path,
                name,
                self.entries.iter().map(|e| e.name.as_str()),
            )
        })
    }

    /// Views of all tensors, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.entries.iter().map(move |e| TensorView {
            path: &self.path,
            name: &e.name,
            dtype: e.dtype,
            shape: &e.shape,
            data: &self.backing.bytes()[e.start..e.end],
        })
    }

    /// The `__metadata__` string map, if the header has one.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    /// Size of the tensor data region (file size minus 8 minus the header).
    pub fn data_bytes(&self) -> u64 {
        self.file_size() - 8 - self.header_len as u64
    }

    /// Length in bytes of the JSON header (tensor data starts at `8 + header_len`).
    pub fn header_len(&self) -> usize {
        self.header_len
    }
}

/// A MissingTensor error with a hint when a similarly named tensor exists.
pub(crate) fn missing<'a>(
    path: &Path,
    name: &str,
    names: impl Iterator<Item = &'a str> + Clone,
) -> Error {
    fn stripped(s: &str) -> &str {
        s.strip_prefix("model.")
            .or_else(|| s.strip_prefix("transformer."))
            .unwrap_or(s)
    }
    let want = stripped(name);
    let mut count = 0usize;
    let mut similar = None;
    for n in names {
        count += 1;
        if similar.is_none() && n != name && stripped(n) == want {
            similar = Some(n);
        }
    }
    let hint = match similar {
        Some(s) => format!(" (a tensor named '{s}' exists)"),
        None => format!(" (the file holds {count} tensors)"),
    };
    Error::MissingTensor {
        path: path.into(),
        tensor: name.to_string(),
        hint,
    }
}

type ParsedHeader = (usize, Vec<Entry>, Option<HashMap<String, String>>);

fn parse_header(path: &Path, bytes: &[u8]) -> Result<ParsedHeader> {
    let file_len = bytes.len();
    if file_len == 0 {
        return Err(Error::format(
            path,
            "file is empty (0 bytes), expected a safetensors file",
        ));
    }
    if file_len < 8 {
        return Err(Error::format(
            path,
            format!(
                "file is only {file_len} bytes, shorter than the 8-byte header length of a safetensors file"
            ),
        ));
    }
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(n8);
    let avail = (file_len - 8) as u64;
    if n > avail {
        return Err(Error::format(
            path,
            format!(
                "header length {n} runs past the end of the file ({file_len} bytes, at most {avail} header bytes); the file is truncated or not safetensors"
            ),
        ));
    }
    if n > MAX_HEADER_SIZE {
        return Err(Error::format(
            path,
            format!("header length {n} exceeds the limit of {MAX_HEADER_SIZE} bytes"),
        ));
    }
    let n = n as usize; // <= file_len
    if n < 2 {
        return Err(Error::format(
            path,
            format!("header length {n} is too short for a JSON object"),
        ));
    }
    let header = &bytes[8..8 + n];
    let text = std::str::from_utf8(header)
        .map_err(|e| Error::json(path, format!("safetensors header is not UTF-8: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::json(path, format!("malformed safetensors header: {e}")))?;
    let obj = match value {
        serde_json::Value::Object(o) => o,
        other => {
            return Err(Error::json(
                path,
                format!(
                    "safetensors header must be a JSON object, found {}",
                    json_kind(&other)
                ),
            ))
        }
    };
    let data_start = 8 + n;
    let data_len = file_len - data_start;

    let mut metadata = None;
    let mut entries = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            // MLX writes `"__metadata__": null` when there is none.
            if v.is_null() {
                continue;
            }
            let m = v.as_object().ok_or_else(|| {
                Error::json(
                    path,
                    "safetensors header: __metadata__ must be an object of strings",
                )
            })?;
            let mut out = HashMap::with_capacity(m.len());
            for (k, v) in m {
                let s = v.as_str().ok_or_else(|| {
                    Error::json(
                        path,
                        format!(
                            "safetensors header: __metadata__ value for '{k}' must be a string, found {}",
                            json_kind(v)
                        ),
                    )
                })?;
                out.insert(k.clone(), s.to_string());
            }
            metadata = Some(out);
            continue;
        }
        entries.push(parse_entry(path, &name, &v, data_len)?);
    }

    // Tile check over the data region, in offset order.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].start, entries[i].end));
    let mut pos = 0usize;
    let mut prev: Option<&str> = None;
    for &i in &order {
        let e = &entries[i];
        if e.start < pos {
            return Err(Error::format(
                path,
                format!(
                    "tensor '{}' data_offsets [{}, {}] overlap tensor '{}' (which ends at {})",
                    e.name,
                    e.start,
                    e.end,
                    prev.unwrap_or("?"),
                    pos
                ),
            ));
        }
        if e.start > pos {
            return Err(Error::format(
                path,
                format!(
                    "tensor data is not contiguous: {} unused bytes at data offset {} before tensor '{}'",
                    e.start - pos,
                    pos,
                    e.name
                ),
            ));
        }
        pos = e.end;
        prev = Some(&e.name);
    }
    if pos != data_len {
        return Err(Error::format(
            path,
            format!(
                "data region not fully covered: tensors end at data offset {pos} but the data region has {data_len} bytes ({} trailing bytes)",
                data_len - pos
            ),
        ));
    }
    for e in &mut entries {
        e.start += data_start;
        e.end += data_start;
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((n, entries, metadata))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn parse_entry(path: &Path, name: &str, v: &serde_json::Value, data_len: usize) -> Result<Entry> {
    let bad = |what: String| Error::format(path, format!("tensor '{name}': {what}"));
    let o = v.as_object().ok_or_else(|| {
        bad(format!(
            "header entry must be an object, found {}",
            json_kind(v)
        ))
    })?;
    let dtype_s = o
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| bad("header entry has no string \"dtype\"".into()))?;
    let dtype = match DType::from_name(dtype_s) {
        Some(d) => d,
        None if KNOWN_UNSUPPORTED.contains(&dtype_s) => {
            return Err(Error::unsupported(
                path,
                format!("tensor '{name}' has dtype {dtype_s}, which this runtime does not read"),
            ))
        }
        None => return Err(bad(format!("unknown dtype '{dtype_s}'"))),
    };
    let shape_v = o
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| bad("header entry has no \"shape\" array".into()))?;
    let mut shape = Vec::with_capacity(shape_v.len());
    for d in shape_v {
        let d = d
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| {
                bad(format!(
                    "shape {shape_v:?} has an entry that is not a non-negative integer"
                ))
            })?;
        shape.push(d);
    }
    let offs = o
        .get("data_offsets")
        .and_then(|s| s.as_array())
        .ok_or_else(|| bad("header entry has no \"data_offsets\" array".into()))?;
    let (start, end) = match offs.as_slice() {
        [a, b] => match (
            a.as_u64().and_then(|x| usize::try_from(x).ok()),
            b.as_u64().and_then(|x| usize::try_from(x).ok()),
        ) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err(bad(format!(
                    "data_offsets {offs:?} must be two non-negative integers"
                )))
            }
        },
        _ => return Err(bad(format!("data_offsets {offs:?} must have two entries"))),
    };
    if end < start {
        return Err(bad(format!(
            "data_offsets [{start}, {end}] end before they start"
        )));
    }
    if end > data_len {
        return Err(bad(format!(
            "data_offsets [{start}, {end}] lie outside the data region ({data_len} bytes)"
        )));
    }
    let want = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size_in_bytes()));
    match want {
        Some(w) if w == end - start => {}
        Some(w) => {
            return Err(Error::tensor(
                path,
                name,
                format!("{w} bytes for {dtype} {shape:?}"),
                format!("data_offsets [{start}, {end}] ({} bytes)", end - start),
            ))
        }
        None => {
            return Err(Error::tensor(
                path,
                name,
                "a shape whose byte size fits in memory",
                format!("{dtype} {shape:?} (size overflows)"),
            ))
        }
    }
    Ok(Entry {
        name: name.to_string(),
        dtype,
        shape,
        start,
        end,
    })
}

/// One model's tensors across one or more safetensors files.
#[derive(Debug)]
pub struct WeightStore {
    root: PathBuf,
    files: Vec<SafeTensorsFile>,
    /// tensor name -> index into `files`
    map: HashMap<String, usize>,
    /// The index file, when the model is sharded.
    index_path: Option<PathBuf>,
}

impl WeightStore {
    /// Open a `.safetensors` file, a `model.safetensors.index.json`, or a folder holding
    /// `model.safetensors.index.json` (+ shards), `model.safetensors`, or else any
    /// `*.safetensors` files (all of them, sorted by name).
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            let index = path.join("model.safetensors.index.json");
            if index.is_file() {
                return Self::open_index(path, &index);
            }
            let single = path.join("model.safetensors");
            if single.is_file() {
                return Self::from_files(path, vec![SafeTensorsFile::open(&single)?], None);
            }
            let mut found = Vec::new();
            for ent in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let ent = ent.map_err(|e| Error::io(path, e))?;
                let p = ent.path();
                if p.extension().is_some_and(|x| x == "safetensors") && p.is_file() {
                    found.push(p);
                }
            }
            if found.is_empty() {
                return Err(Error::format(
                    path,
                    "directory holds no model.safetensors, model.safetensors.index.json or other *.safetensors file",
                ));
            }
            found.sort();
            let files = found
                .iter()
                .map(|p| SafeTensorsFile::open(p))
                .collect::<Result<Vec<_>>>()?;
            return Self::from_files(path, files, None);
        }
        if path.extension().is_some_and(|x| x == "json") {
            let dir = path.parent().unwrap_or(Path::new("."));
            return Self::open_index(dir, path);
        }
        Self::from_files(path, vec![SafeTensorsFile::open(path)?], None)
    }

    /// Build a store from already opened files (names must be unique across files).
    pub fn from_files(
        root: &Path,
        files: Vec<SafeTensorsFile>,
        index_path: Option<PathBuf>,
    ) -> Result<Self> {
        let mut map = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for n in f.names() {
                if let Some(&j) = map.get(n) {
                    let other: &SafeTensorsFile = &files[j];
                    return Err(Error::format(
                        f.path(),
                        format!(
                            "tensor '{n}' is also in {}; a tensor may appear in only one file",
                            other.path().display()
                        ),
                    ));
                }
                map.insert(n.to_string(), i);
            }
        }
        Ok(WeightStore {
            root: root.to_path_buf(),
            files,
            map,
            index_path,
        })
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::json(index, e))?;
        let wm = v
            .get("weight_map")
            .and_then(|w| w.as_object())
            .ok_or_else(|| {
                Error::json(
                    index,
                    "expected an object \"weight_map\" mapping tensor names to shard files",
                )
            })?;
        let mut shard_names: Vec<String> = Vec::new();
        let mut wanted: Vec<(&str, usize)> = Vec::with_capacity(wm.len());
        for (tensor, shard) in wm {
            let shard = shard.as_str().ok_or_else(|| {
                Error::json(
                    index,
                    format!("weight_map entry for '{tensor}' must be a file name string"),
                )
            })?;
            let sp = Path::new(shard);
            if sp.is_absolute()
                || sp
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::format(
                    index,
                    format!("weight_map entry for '{tensor}' names '{shard}', which is not a file inside the model folder"),
                ));
            }
            let idx = match shard_names.iter().position(|s| s == shard) {
                Some(i) => i,
                None => {
                    shard_names.push(shard.to_string());
                    shard_names.len() - 1
                }
            };
            wanted.push((tensor.as_str(), idx));
        }
        if shard_names.is_empty() {
            return Err(Error::format(index, "weight_map is empty"));
        }
        let mut files = Vec::with_capacity(shard_names.len());
        for s in &shard_names {
            let p = dir.join(s);
            if !p.is_file() {
                return Err(Error::format(
                    index,
                    format!(
                        "shard '{s}' listed in weight_map is missing (looked for {})",
                        p.display()
                    ),
                ));
            }
            files.push(SafeTensorsFile::open(&p)?);
        }
        for (tensor, i) in &wanted {
            if !files[*i].contains(tensor) {
                return Err(Error::format(
                    index,
                    format!(
                        "weight_map maps tensor '{tensor}' to shard '{}', which does not hold it",
                        shard_names[*i]
                    ),
                ));
            }
        }
        let store = Self::from_files(dir, files, Some(index.to_path_buf()))?;
        if store.map.len() != wanted.len() {
            // Some shard holds a tensor the index does not list.
            for (name, &fi) in &store.map {
                if !wm.contains_key(name) {
                    return Err(Error::format(
                        index,
                        format!(
                            "shard '{}' holds tensor '{name}', which weight_map does not list",
                            shard_names[fi]
                        ),
                    ));
                }
            }
        }
        Ok(store)
    }

    /// The path the store was opened from (a folder or a file).
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The index file, for a sharded model.
    pub fn index_path(&self) -> Option<&Path> {
        self.index_path.as_deref()
    }

    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.files[*self.map.get(name)?].get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Like [`get`](Self::get), with an error naming the model path when absent.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.get(name)
            .ok_or_else(|| missing(&self.root, name, self.map.keys().map(|s| s.as_str())))
    }

    /// The file holding `name`.
    pub fn file_of(&self, name: &str) -> Option<&SafeTensorsFile> {
        self.map.get(name).map(|&i| &self.files[i])
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.map.keys().map(|s| s.as_str()).collect();
        v.sort_unstable();
        v
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sum of the data regions of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.data_bytes()).sum()
    }

    pub fn files(&self) -> &[SafeTensorsFile] {
        &self.files
    }
}
