//! The committed bindings/kotlin and bindings/swift equal what bindings/generate.sh writes
//! from the current Rust code.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.expect("read_dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under dir").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read a generated file"));
            }
        }
    }
    out
}

#[test]
fn committed_bindings_match_the_generator() {
    let root = common::root();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bindings-current");
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new("bash")
        .arg(root.join("bindings/generate.sh"))
        .arg(&tmp)
        .env("CARGO", common::cargo())
        .env("CARGO_PROFILE", "test")
        .status()
        .expect("run bash bindings/generate.sh");
    assert!(status.success(), "bindings/generate.sh failed");
    let mut problems = Vec::new();
    for lang in ["kotlin", "swift"] {
        let fresh = files(&tmp.join(lang));
        let committed = files(&root.join("bindings").join(lang));
        assert!(!fresh.is_empty(), "the generator wrote no {lang} files");
        for (rel, data) in &fresh {
            match committed.get(rel) {
                None => problems.push(format!("bindings/{lang}/{} is missing", rel.display())),
                Some(c) if c != data => {
                    problems.push(format!("bindings/{lang}/{} is stale", rel.display()))
                }
                Some(_) => {}
            }
        }
        for rel in committed.keys().filter(|r| !fresh.contains_key(*r)) {
            problems.push(format!(
                "bindings/{lang}/{} is no longer generated",
                rel.display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the committed bindings differ from the generator's output:\n  {}\nrun bindings/generate.sh and commit bindings/kotlin and bindings/swift",
        problems.join("\n  ")
    );
}
