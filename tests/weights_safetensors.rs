//! Safetensors reading: every malformed-file case gets its own readable error naming the
//! file; unaligned data, sharded folders and views.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use fourierft::weights::writer::{write_safetensors, OutTensor};
use fourierft::weights::{DType, SafeTensorsFile, WeightStore};
use fourierft::Error;

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "fourierft-wst-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A safetensors file from a literal header and data bytes (no padding).
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn err_of(bytes: Vec<u8>) -> String {
    let p = Path::new("/models/bad.safetensors");
    match SafeTensorsFile::from_bytes(p, bytes) {
        Ok(f) => panic!("expected an error, opened {} tensors", f.len()),
        Err(e) => {
            let s = e.to_string();
            assert!(
                s.contains("/models/bad.safetensors"),
                "message must name the file: {s}"
            );
            s
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn empty_file() {
    let s = err_of(vec![]);
    assert!(s.contains("file is empty"), "{s}");
}

#[test]
fn shorter_than_8_bytes() {
    let s = err_of(vec![1, 2, 3]);
    assert!(s.contains("only 3 bytes"), "{s}");
    assert!(s.contains("8-byte header length"), "{s}");
}

#[test]
fn header_length_beyond_file() {
    let mut b = raw(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    b[..8].copy_from_slice(&1000u64.to_le_bytes());
    let s = err_of(b);
    assert!(
        s.contains("header length 1000 runs past the end of the file"),
        "{s}"
    );
    // A header length near u64::MAX must not overflow.
    let mut b = raw("{}", &[]);
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let s = err_of(b);
    assert!(s.contains("runs past the end of the file"), "{s}");
}

#[test]
fn malformed_header_json() {
    let s = err_of(raw(r#"{"a":{"dtype":"F32","#, &[]));
    assert!(s.contains("malformed safetensors header"), "{s}");
    let s = err_of(raw("[1,2]", &[]));
    assert!(s.contains("must be a JSON object"), "{s}");
    let s = err_of(
        raw("{\"\u{ff}\":1}", &[])
            .into_iter()
            .map(|b| if b == 0xc3 { 0xff } else { b })
            .collect(),
    );
    assert!(s.contains("not UTF-8"), "{s}");
}

#[test]
fn unknown_dtype() {
    let s = err_of(raw(
        r#"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    ));
    assert!(s.contains("tensor 'a': unknown dtype 'Q7'"), "{s}");
    // A real safetensors dtype this runtime does not read is "unsupported", not "unknown".
    let s = err_of(raw(
        r#"{"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}"#,
        &[0; 4],
    ));
    assert!(s.contains("unsupported") && s.contains("F8_E4M3"), "{s}");
}

#[test]
fn dtype_shape_mismatch() {
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#,
        &[0; 12],
    ));
    assert!(s.contains("tensor 'a'"), "{s}");
    assert!(s.contains("expected 16 bytes for F32 [2, 2]"), "{s}");
    assert!(s.contains("found data_offsets [0, 12] (12 bytes)"), "{s}");
}

#[test]
fn huge_lying_shape_does_not_overflow() {
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[18446744073709551615,18446744073709551615],"data_offsets":[0,4]}}"#,
        &[0; 4],
    ));
    assert!(s.contains("size overflows"), "{s}");
}

#[test]
fn offsets_outside_data() {
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 4],
    ));
    assert!(s.contains("outside the data region (4 bytes)"), "{s}");
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#,
        &[0; 4],
    ));
    assert!(s.contains("end before they start"), "{s}");
}

#[test]
fn overlapping_offsets() {
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        &[0; 12],
    ));
    assert!(s.contains("overlap"), "{s}");
    assert!(s.contains("'b'") && s.contains("'a'"), "{s}");
}

#[test]
fn gap_between_tensors() {
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
        &[0; 12],
    ));
    assert!(s.contains("not contiguous"), "{s}");
    assert!(s.contains("before tensor 'b'"), "{s}");
}

#[test]
fn trailing_bytes_rejected() {
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 7],
    ));
    assert!(s.contains("data region not fully covered"), "{s}");
    assert!(s.contains("3 trailing bytes"), "{s}");
}

#[test]
fn bad_metadata_and_entries() {
    let s = err_of(raw(r#"{"__metadata__":{"k":1}}"#, &[]));
    assert!(
        s.contains("__metadata__ value for 'k' must be a string"),
        "{s}"
    );
    let s = err_of(raw(
        r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    ));
    assert!(s.contains("not a non-negative integer"), "{s}");
    let s = err_of(raw(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &[0; 4]));
    assert!(s.contains("no \"data_offsets\""), "{s}");
}

#[test]
fn error_kinds() {
    let p = Path::new("x.safetensors");
    assert!(matches!(
        SafeTensorsFile::from_bytes(p, vec![]),
        Err(Error::Format { .. })
    ));
    assert!(matches!(
        SafeTensorsFile::from_bytes(p, raw("{\"a\"", &[])),
        Err(Error::Json { .. })
    ));
    let e = SafeTensorsFile::from_bytes(
        p,
        raw(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
    );
    assert!(matches!(e, Err(Error::Tensor { .. })));
}

#[test]
fn unaligned_data_reads_correctly() {
    // Header of odd length: tensor data starts at byte 8 + 63 = 71.
    let mut h = r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"y":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},"z":{"dtype":"F16","shape":[1],"data_offsets":[16,18]}}"#.to_string();
    if h.len() % 2 == 0 {
        h.push(' ');
    }
    let mut data = f32_bytes(&[1.5, -2.25, 3.0e-8]);
    data.extend(half::bf16::from_f32(-0.5).to_le_bytes());
    data.extend(half::bf16::from_f32(7.0).to_le_bytes());
    data.extend(half::f16::from_f32(0.333).to_le_bytes());
    let f = SafeTensorsFile::from_bytes(Path::new("u.safetensors"), raw(&h, &data)).unwrap();
    assert_eq!(
        (8 + f.header_len()) % 2,
        1,
        "data must start at an odd offset"
    );
    let x = f.tensor("x").unwrap();
    assert_eq!(x.dtype, DType::F32);
    assert_eq!(x.shape, &[3]);
    assert_eq!(x.to_f32_vec().unwrap(), vec![1.5, -2.25, 3.0e-8]);
    assert_eq!(
        f.tensor("y").unwrap().to_f32_vec().unwrap(),
        vec![-0.5, 7.0]
    );
    assert_eq!(
        f.tensor("z").unwrap().to_f32_vec().unwrap(),
        vec![half::f16::from_f32(0.333).to_f32()]
    );
    assert_eq!(f.names(), vec!["x", "y", "z"]);
    assert_eq!(f.data_bytes(), 18);
    assert_eq!(f.file_size(), 8 + h.len() as u64 + 18);

    // The same through a real mmap.
    let d = temp_dir("unaligned");
    let p = d.join("u.safetensors");
    std::fs::write(&p, raw(&h, &data)).unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    assert_eq!(
        f.tensor("x").unwrap().to_f32_vec().unwrap(),
        vec![1.5, -2.25, 3.0e-8]
    );
    assert_eq!(f.path(), p.as_path());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn padded_header_and_metadata_and_zero_sized() {
    let h = r#"{"__metadata__":{"format":"pt"},"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"i":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}      "#;
    let mut data = 7i64.to_le_bytes().to_vec();
    data.extend((-3i64).to_le_bytes());
    let f = SafeTensorsFile::from_bytes(Path::new("p.safetensors"), raw(h, &data)).unwrap();
    assert_eq!(
        f.metadata().unwrap().get("format").map(String::as_str),
        Some("pt")
    );
    assert_eq!(f.len(), 2);
    assert_eq!(f.tensor("e").unwrap().numel(), 0);
    assert_eq!(f.tensor("i").unwrap().to_i64_vec().unwrap(), vec![7, -3]);
}

#[test]
fn view_conversions_and_expectations() {
    let d = temp_dir("views");
    let p = d.join("m.safetensors");
    write_safetensors(
        &p,
        &[
            OutTensor::f32("a", vec![2, 2], &[1.0, 2.0, 3.0, 4.0]),
            OutTensor::u32("q", vec![1, 2], &[0xdeadbeef, 7]),
            OutTensor::i64("i", vec![1], &[-9]),
        ],
        None,
    )
    .unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    let a = f.tensor("a").unwrap();
    a.expect_shape(&[2, 2]).unwrap();
    a.expect_dtype(&[DType::F16, DType::F32]).unwrap();
    let e = a.expect_shape(&[4]).unwrap_err().to_string();
    assert!(
        e.contains("m.safetensors")
            && e.contains("tensor 'a'")
            && e.contains("expected shape [4], found shape [2, 2]"),
        "{e}"
    );
    let e = a.expect_dtype(&[DType::U32]).unwrap_err().to_string();
    assert!(e.contains("expected dtype U32, found dtype F32"), "{e}");
    assert_eq!(
        f.tensor("q").unwrap().to_u32_vec().unwrap(),
        vec![0xdeadbeef, 7]
    );
    let e = f.tensor("q").unwrap().to_f32_vec().unwrap_err().to_string();
    assert!(
        e.contains("tensor 'q'") && e.contains("float tensor"),
        "{e}"
    );
    let e = a.to_u32_vec().unwrap_err().to_string();
    assert!(e.contains("tensor 'a'"), "{e}");
    assert_eq!(f.tensor("i").unwrap().to_i64_vec().unwrap(), vec![-9]);
    let e = f.tensor("nope").unwrap_err().to_string();
    assert!(
        e.contains("m.safetensors") && e.contains("tensor 'nope' not found"),
        "{e}"
    );
    assert!(f.get("nope").is_none());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn open_errors_name_the_path() {
    let d = temp_dir("openerr");
    let e = SafeTensorsFile::open(&d.join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    let empty = d.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let e = SafeTensorsFile::open(&empty).unwrap_err().to_string();
    assert!(
        e.contains("empty.safetensors") && e.contains("file is empty"),
        "{e}"
    );
    // A folder with no safetensors at all.
    let none = d.join("nothing");
    std::fs::create_dir_all(&none).unwrap();
    std::fs::write(none.join("config.json"), "{}").unwrap();
    let e = WeightStore::open(&none).unwrap_err().to_string();
    assert!(
        e.contains("nothing") && e.contains("holds no model.safetensors"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

fn write_shards(d: &Path) {
    write_safetensors(
        &d.join("model-00001-of-00002.safetensors"),
        &[
            OutTensor::f32("a.weight", vec![2], &[1.0, 2.0]),
            OutTensor::f32("b.weight", vec![1], &[3.0]),
        ],
        None,
    )
    .unwrap();
    write_safetensors(
        &d.join("model-00002-of-00002.safetensors"),
        &[OutTensor::f32("c.weight", vec![3], &[4.0, 5.0, 6.0])],
        None,
    )
    .unwrap();
}

const GOOD_INDEX: &str = r#"{"metadata":{"total_size":24},"weight_map":{
  "a.weight":"model-00001-of-00002.safetensors",
  "b.weight":"model-00001-of-00002.safetensors",
  "c.weight":"model-00002-of-00002.safetensors"}}"#;

#[test]
fn sharded_folder() {
    let d = temp_dir("shards");
    write_shards(&d);
    std::fs::write(d.join("model.safetensors.index.json"), GOOD_INDEX).unwrap();
    let s = WeightStore::open(&d).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s.files().len(), 2);
    assert_eq!(s.names(), vec!["a.weight", "b.weight", "c.weight"]);
    assert_eq!(
        s.tensor("c.weight").unwrap().to_f32_vec().unwrap(),
        vec![4.0, 5.0, 6.0]
    );
    assert_eq!(
        s.tensor("b.weight").unwrap().to_f32_vec().unwrap(),
        vec![3.0]
    );
    assert_eq!(s.total_bytes(), 24);
    assert!(s.index_path().is_some());
    let e = s.tensor("zz").unwrap_err().to_string();
    assert!(e.contains("tensor 'zz' not found"), "{e}");
    // Opening the index file directly works too.
    let s2 = WeightStore::open(&d.join("model.safetensors.index.json")).unwrap();
    assert_eq!(s2.len(), 3);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn sharded_index_disagreements() {
    let d = temp_dir("badshards");
    write_shards(&d);
    let idx = d.join("model.safetensors.index.json");

    // Tensor mapped to a shard that does not hold it.
    std::fs::write(
        &idx,
        GOOD_INDEX.replace(r#""c.weight":"model-00002"#, r#""c.weight":"model-00001"#),
    )
    .unwrap();
    let e = WeightStore::open(&d).unwrap_err().to_string();
    assert!(e.contains("model.safetensors.index.json"), "{e}");
    assert!(e.contains("maps tensor 'c.weight' to shard 'model-00001-of-00002.safetensors', which does not hold it"), "{e}");

    // Missing shard file.
    std::fs::write(&idx, GOOD_INDEX.replace("00002-of-00002", "00003-of-00002")).unwrap();
    let e = WeightStore::open(&d).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors.index.json")
            && e.contains("shard 'model-00003-of-00002.safetensors'")
            && e.contains("is missing"),
        "{e}"
    );

    // A shard holds a tensor the index does not list.
    std::fs::write(
        &idx,
        GOOD_INDEX.replace(r#""b.weight":"model-00001-of-00002.safetensors","#, ""),
    )
    .unwrap();
    let e = WeightStore::open(&d).unwrap_err().to_string();
    assert!(
        e.contains("holds tensor 'b.weight', which weight_map does not list"),
        "{e}"
    );

    // Malformed index.
    std::fs::write(&idx, "{\"weight_map\": [").unwrap();
    let e = WeightStore::open(&d).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors.index.json") && e.contains("invalid JSON"),
        "{e}"
    );
    std::fs::write(&idx, "{\"metadata\": {}}").unwrap();
    let e = WeightStore::open(&d).unwrap_err().to_string();
    assert!(e.contains("weight_map"), "{e}");

    // Path escaping the folder.
    std::fs::write(&idx, r#"{"weight_map":{"a.weight":"../x.safetensors"}}"#).unwrap();
    let e = WeightStore::open(&d).unwrap_err().to_string();
    assert!(e.contains("not a file inside the model folder"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn duplicate_tensor_across_files() {
    let d = temp_dir("dups");
    write_safetensors(
        &d.join("one.safetensors"),
        &[OutTensor::f32("a", vec![1], &[1.0])],
        None,
    )
    .unwrap();
    write_safetensors(
        &d.join("two.safetensors"),
        &[OutTensor::f32("a", vec![1], &[2.0])],
        None,
    )
    .unwrap();
    let e = WeightStore::open(&d).unwrap_err().to_string();
    assert!(e.contains("tensor 'a' is also in"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn single_file_and_model_folder() {
    let d = temp_dir("single");
    let p = d.join("model.safetensors");
    write_safetensors(&p, &[OutTensor::f32("model.w", vec![1], &[1.0])], None).unwrap();
    let s = WeightStore::open(&p).unwrap();
    assert_eq!(s.names(), vec!["model.w"]);
    let s = WeightStore::open(&d).unwrap();
    assert_eq!(s.len(), 1);
    // Hint for a near miss.
    let e = s.tensor("w").unwrap_err().to_string();
    assert!(e.contains("a tensor named 'model.w' exists"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn mlx_fixture_is_unaligned_and_readable() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny_llama_mlx4/model.safetensors");
    let f = SafeTensorsFile::open(&p).unwrap();
    assert_eq!(
        f.metadata().unwrap().get("format").map(String::as_str),
        Some("mlx")
    );
    let w = f.tensor("lm_head.weight").unwrap();
    assert_eq!(w.dtype, DType::U32);
    assert_eq!(w.to_u32_vec().unwrap().len(), w.numel());
}

#[test]
fn null_metadata_as_mlx_writes_it() {
    let h = r#"{"__metadata__":null,"a":{"data_offsets":[0,4],"dtype":"F32","shape":[1]}}"#;
    let f = SafeTensorsFile::from_bytes(Path::new("n.safetensors"), raw(h, &f32_bytes(&[2.5])))
        .unwrap();
    assert!(f.metadata().is_none());
    assert_eq!(f.tensor("a").unwrap().to_f32_vec().unwrap(), vec![2.5]);
}
