//! GGUF v2/v3 reader (llama.cpp's model file format), memory-mapped, little-endian only.
//!
//! Layout: `"GGUF"`, u32 version, u64 tensor count, u64 metadata count; the metadata
//! key/values (key = u64 length + UTF-8 bytes; u32 value type; value); the tensor infos
//! (name, u32 n_dims ≤ 4, u64 `ne[n_dims]`, u32 ggml type, u64 offset); padding to
//! `general.alignment` (default 32); the data section. Tensor offsets are relative to the
//! data section and must be multiples of the alignment. `ne[0]` is the innermost (fastest)
//! dimension, so a GGUF `[ne0, ne1]` matrix is the row-major `[ne1, ne0]` = `[out, in]` of
//! PyTorch.
//!
//! Every length, count and offset read from the file is checked against the bytes that are
//! actually there before anything is allocated or sliced, so a truncated or lying file gives
//! an [`Error::Format`] naming the file and the byte position, never a panic or a huge
//! allocation. No GPU code lives here.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's maximum number of dimensions.
pub const MAX_DIMS: u32 = 4;
/// Nested arrays deeper than this are refused (real files use depth 1).
const MAX_ARRAY_DEPTH: usize = 8;

/// A ggml tensor type id (`enum ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q5_0: GgmlType = GgmlType(6);
    pub const Q5_1: GgmlType = GgmlType(7);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q8_1: GgmlType = GgmlType(9);
    pub const Q2_K: GgmlType = GgmlType(10);
    pub const Q3_K: GgmlType = GgmlType(11);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q5_K: GgmlType = GgmlType(13);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const Q8_K: GgmlType = GgmlType(15);
    pub const BF16: GgmlType = GgmlType(30);

    /// `(name, elements per block, bytes per block)` for the types whose layout is known.
    fn info(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 36),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            _ => return None,
        })
    }

    /// The ggml name ("Q4_1", ...), or `type <id>` for ids this reader does not know.
    pub fn name(self) -> String {
        match self.info() {
            Some((n, _, _)) => n.to_string(),
            None => format!("type {}", self.0),
        }
    }

    /// Elements per block and bytes per block, for known types.
    pub fn block(self) -> Option<(u64, u64)> {
        self.info().map(|(_, e, b)| (e, b))
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// GGUF metadata value types (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl GgufValueType {
    fn from_u32(v: u32) -> Option<Self> {
        use GgufValueType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Smallest encoded size of one value of this type (strings: the u64 length;
    /// arrays: type + count).
    fn min_size(self) -> usize {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    pub fn name(self) -> &'static str {
        use GgufValueType::*;
        match self {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array {
        elem_type: GgufValueType,
        values: Vec<GgufValue>,
    },
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    pub fn value_type(&self) -> GgufValueType {
        use GgufValue as V;
        use GgufValueType as T;
        match self {
            V::U8(_) => T::U8,
            V::I8(_) => T::I8,
            V::U16(_) => T::U16,
            V::I16(_) => T::I16,
            V::U32(_) => T::U32,
            V::I32(_) => T::I32,
            V::F32(_) => T::F32,
            V::Bool(_) => T::Bool,
            V::String(_) => T::String,
            V::Array { .. } => T::Array,
            V::U64(_) => T::U64,
            V::I64(_) => T::I64,
            V::F64(_) => T::F64,
        }
    }

    /// Any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type that fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::U64(v) => i64::try_from(v).ok(),
            GgufValue::I8(v) => Some(v as i64),
            GgufValue::I16(v) => Some(v as i64),
            GgufValue::I32(v) => Some(v as i64),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().map(|v| v as i64),
        }
    }

    /// F32/F64 (and integers, converted).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array { values, .. } => Some(values),
            _ => None,
        }
    }

    /// A short description for messages: the type, and the value for scalars.
    pub fn describe(&self) -> String {
        match self {
            GgufValue::String(s) => {
                let short: String = s.chars().take(40).collect();
                format!("string \"{short}\"")
            }
            GgufValue::Array { elem_type, values } => {
                format!("array of {} {}", values.len(), elem_type.name())
            }
            GgufValue::Bool(b) => format!("bool {b}"),
            GgufValue::F32(v) => format!("float32 {v}"),
            GgufValue::F64(v) => format!("float64 {v}"),
            v => format!(
                "{} {}",
                v.value_type().name(),
                v.as_i64()
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| format!("{:?}", v.as_u64()))
            ),
        }
    }
}

/// One tensor's entry in the file.
#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml `ne`: `dims[0]` is the innermost (fastest) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset relative to the data section.
    pub offset: u64,
    /// Product of `dims`.
    pub n_elements: u64,
    /// Byte size, for types whose block layout is known.
    pub n_bytes: Option<u64>,
}

impl GgufTensorInfo {
    /// The shape in PyTorch order (outermost first): `dims` reversed.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
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

/// An opened, validated GGUF file.
pub struct GgufFile {
    path: PathBuf,
    backing: Backing,
    pub version: u32,
    /// Metadata in file order.
    metadata: Vec<(String, GgufValue)>,
    meta_index: HashMap<String, usize>,
    /// Tensor infos in file order.
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute byte offset of the data section.
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A bounds-checked little-endian cursor.
struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn err(&self, what: &str) -> Error {
        Error::format(
            self.path,
            format!(
                "GGUF truncated or corrupt: {what} at byte {} runs past the end of the file ({} bytes)",
                self.pos,
                self.buf.len()
            ),
        )
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u64 length that must fit in the remaining bytes when each item takes at least
    /// `min_item` bytes.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let max = (self.remaining() / min_item.max(1)) as u64;
        if n > max {
            return Err(Error::format(
                self.path,
                format!(
                    "GGUF corrupt: {what} at byte {at} is {n}, but only {} bytes follow",
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let n = self.count(what, 1)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::format(
                self.path,
                format!("GGUF corrupt: {what} at byte {at} is not valid UTF-8"),
            )
        })
    }

    fn value(&mut self, t: GgufValueType, key: &str, depth: usize) -> Result<GgufValue> {
        use GgufValueType as T;
        let what = |s: &str| format!("value of '{key}' ({s})");
        Ok(match t {
            T::U8 => GgufValue::U8(self.u8(&what("uint8"))?),
            T::I8 => GgufValue::I8(self.u8(&what("int8"))? as i8),
            T::U16 => GgufValue::U16(self.u16(&what("uint16"))?),
            T::I16 => GgufValue::I16(self.u16(&what("int16"))? as i16),
            T::U32 => GgufValue::U32(self.u32(&what("uint32"))?),
            T::I32 => GgufValue::I32(self.u32(&what("int32"))? as i32),
            T::F32 => GgufValue::F32(f32::from_bits(self.u32(&what("float32"))?)),
            T::U64 => GgufValue::U64(self.u64(&what("uint64"))?),
            T::I64 => GgufValue::I64(self.u64(&what("int64"))? as i64),
            T::F64 => GgufValue::F64(f64::from_bits(self.u64(&what("float64"))?)),
            T::Bool => {
                let at = self.pos;
                match self.u8(&what("bool"))? {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => {
                        return Err(Error::format(
                            self.path,
                            format!("GGUF corrupt: bool value of '{key}' at byte {at} is {b}, expected 0 or 1"),
                        ))
                    }
                }
            }
            T::String => GgufValue::String(self.string(&what("string"))?),
            T::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::format(
                        self.path,
                        format!(
                            "GGUF corrupt: '{key}' nests arrays more than {MAX_ARRAY_DEPTH} deep"
                        ),
                    ));
                }
                let at = self.pos;
                let et = self.u32(&what("array element type"))?;
                let elem_type = GgufValueType::from_u32(et).ok_or_else(|| {
                    Error::format(
                        self.path,
                        format!("GGUF corrupt: array '{key}' at byte {at} has unknown element type {et}"),
                    )
                })?;
                let n = self.count(&what("array length"), elem_type.min_size())?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.value(elem_type, key, depth + 1)?);
                }
                GgufValue::Array { elem_type, values }
            }
        })
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    // a is a power of two.
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

impl GgufFile {
    /// Memory-map and validate `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::format(path, "is a directory, expected a .gguf file"));
        }
        if meta.len() == 0 {
            return Self::build(path, Backing::Empty);
        }
        // SAFETY: read-only map; like every mmap-based loader we rely on the file not being
        // truncated or rewritten while it is open.
        let mmap =
            unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::build(path, Backing::Mmap(mmap))
    }

    /// Validate an in-memory file; `path` is used in messages only.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::build(path, Backing::Owned(bytes))
    }

    fn build(path: &Path, backing: Backing) -> Result<Self> {
        let buf = backing.bytes();
        let mut c = Cursor { path, buf, pos: 0 };
        let magic = c.array::<4>("magic").map_err(|_| {
            Error::format(
                path,
                format!(
                    "not a GGUF file: {} bytes, expected at least the 4-byte magic \"GGUF\"",
                    buf.len()
                ),
            )
        })?;
        if &magic != b"GGUF" {
            return Err(Error::format(
                path,
                format!("not a GGUF file: starts with {magic:02x?}, expected \"GGUF\""),
            ));
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => return Err(Error::unsupported(
                path,
                "GGUF version 1 (32-bit lengths); re-convert the model with a current llama.cpp",
            )),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(Error::unsupported(
                    path,
                    "big-endian GGUF; only little-endian files are supported",
                ))
            }
            v => {
                return Err(Error::unsupported(
                    path,
                    format!("GGUF version {v}; supported: 2, 3"),
                ))
            }
        }
        // A tensor info takes at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
        // a key/value at least 8 (key) + 4 (type) + 1.
        let n_tensors_at = c.pos;
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        let rem = c.remaining() as u64;
        if n_kv > rem / 13 {
            return Err(Error::format(
                path,
                format!("GGUF corrupt: metadata count {n_kv} cannot fit in the {rem} bytes that follow the header"),
            ));
        }
        if n_tensors > rem / 24 {
            return Err(Error::format(
                path,
                format!("GGUF corrupt: tensor count {n_tensors} (at byte {n_tensors_at}) cannot fit in the {rem} bytes that follow the header"),
            ));
        }

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv as usize {
            let key = c.string(&format!("key of metadata entry {i}"))?;
            let at = c.pos;
            let t = c.u32(&format!("type of '{key}'"))?;
            let t = GgufValueType::from_u32(t).ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "GGUF corrupt: metadata '{key}' at byte {at} has unknown value type {t}"
                    ),
                )
            })?;
            let v = c.value(t, &key, 0)?;
            if meta_index.insert(key.clone(), i).is_some() {
                return Err(Error::format(
                    path,
                    format!("GGUF corrupt: duplicate metadata key '{key}'"),
                ));
            }
            metadata.push((key, v));
        }

        let alignment = match meta_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let v = &metadata[i].1;
                match v {
                    GgufValue::U32(a) if *a > 0 && a.is_power_of_two() => *a as u64,
                    _ => {
                        return Err(Error::format(
                            path,
                            format!(
                                "GGUF corrupt: 'general.alignment' must be a uint32 power of two, found {}",
                                v.describe()
                            ),
                        ))
                    }
                }
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors as usize {
            let name = c.string(&format!("name of tensor {i}"))?;
            let at = c.pos;
            let n_dims = c.u32(&format!("n_dims of tensor '{name}'"))?;
            if n_dims > MAX_DIMS {
                return Err(Error::format(
                    path,
                    format!("GGUF corrupt: tensor '{name}' (byte {at}) has {n_dims} dimensions, at most {MAX_DIMS} allowed"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&format!("dimensions of tensor '{name}'"))?);
            }
            let ggml_type = GgmlType(c.u32(&format!("type of tensor '{name}'"))?);
            let offset = c.u64(&format!("offset of tensor '{name}'"))?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!("GGUF corrupt: tensor '{name}' has dimensions {dims:?} whose element count overflows"),
                    )
                })?;
            let n_bytes = match ggml_type.block() {
                None => None,
                Some((blk, bytes)) => {
                    let ne0 = dims.first().copied().unwrap_or(1);
                    if ne0 % blk != 0 {
                        return Err(Error::format(
                            path,
                            format!(
                                "GGUF corrupt: tensor '{name}' ({ggml_type}) has ne[0] = {ne0}, not a multiple of the block size {blk}"
                            ),
                        ));
                    }
                    Some((n_elements / blk).checked_mul(bytes).ok_or_else(|| {
                        Error::format(
                            path,
                            format!("GGUF corrupt: tensor '{name}' byte size overflows"),
                        )
                    })?)
                }
            };
            if offset % alignment != 0 {
                return Err(Error::format(
                    path,
                    format!("GGUF corrupt: tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}"),
                ));
            }
            if tensor_index.insert(name.clone(), i).is_some() {
                return Err(Error::format(
                    path,
                    format!("GGUF corrupt: duplicate tensor name '{name}'"),
                ));
            }
            tensors.push(GgufTensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                n_elements,
                n_bytes,
            });
        }

        let data_offset = align_up(c.pos as u64, alignment)
            .ok_or_else(|| Error::format(path, "GGUF corrupt: data section offset overflows"))?;
        let file_len = buf.len() as u64;
        if !tensors.is_empty() && data_offset > file_len {
            return Err(Error::format(
                path,
                format!(
                    "GGUF truncated: the data section should start at byte {data_offset}, but the file has {file_len} bytes"
                ),
            ));
        }
        // Every tensor of known size must lie inside the file, without overlapping another.
        let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
        for t in &tensors {
            let Some(n) = t.n_bytes else { continue };
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(n));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len => spans.push((s, e, &t.name)),
                _ => {
                    return Err(Error::format(
                        path,
                        format!(
                            "GGUF truncated or corrupt: tensor '{}' ({}, {:?}) needs bytes {}..{} of the data section at byte {data_offset}, but the file has {file_len} bytes",
                            t.name,
                            t.ggml_type,
                            t.shape(),
                            t.offset,
                            t.offset as u128 + n as u128,
                        ),
                    ))
                }
            }
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(Error::format(
                    path,
                    format!(
                        "GGUF corrupt: tensors '{}' and '{}' overlap (bytes {}..{} and {}..{})",
                        w[0].2, w[1].2, w[0].0, w[0].1, w[1].0, w[1].1
                    ),
                ));
            }
        }

        Ok(GgufFile {
            path: path.to_path_buf(),
            backing,
            version,
            metadata,
            meta_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File size in bytes.
    pub fn file_size(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn wrong_type(&self, key: &str, expected: &str, v: &GgufValue) -> Error {
        Error::format(
            &self.path,
            format!(
                "metadata '{key}': expected {expected}, found {}",
                v.describe()
            ),
        )
    }

    /// A non-negative integer value (any integer type), if present.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v)),
        }
    }

    /// A non-negative integer that fits a `usize`, if present.
    pub fn get_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get_u64(key)? {
            None => Ok(None),
            Some(v) => usize::try_from(v).map(Some).map_err(|_| {
                Error::format(&self.path, format!("metadata '{key}': {v} is too large"))
            }),
        }
    }

    /// A float (or integer) value, if present.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a number", v)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a bool", v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a string", v)),
        }
    }

    /// An array of strings, if present.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ GgufValue::Array { values, .. }) => values
                .iter()
                .map(|x| x.as_str())
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "an array of strings", v)),
            Some(v) => Err(self.wrong_type(key, "an array of strings", v)),
        }
    }

    /// An array of integers, if present.
    pub fn get_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ GgufValue::Array { values, .. }) => values
                .iter()
                .map(|x| x.as_i64())
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "an array of integers", v)),
            Some(v) => Err(self.wrong_type(key, "an array of integers", v)),
        }
    }

    /// The raw bytes of a tensor (checked to lie in the file on open).
    pub fn tensor_data(&self, t: &GgufTensorInfo) -> Result<&[u8]> {
        let n = t.n_bytes.ok_or_else(|| {
            Error::unsupported(
                &self.path,
                format!(
                    "tensor '{}' has ggml {}, whose layout this reader does not know",
                    t.name, t.ggml_type
                ),
            )
        })?;
        // Checked in build() for this file's own infos; checked again for any other info.
        let start = self.data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(n));
        start
            .zip(end)
            .and_then(|(s, e)| {
                let (s, e) = (usize::try_from(s).ok()?, usize::try_from(e).ok()?);
                self.backing.bytes().get(s..e)
            })
            .ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!("tensor '{}' lies outside the file", t.name),
                )
            })
    }
}
