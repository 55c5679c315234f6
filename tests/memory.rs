//! Memory discipline: after opening a 4-bit model (SmolLM2-135M, the real weights .ci/run
//! fetches) on the CPU backend and generating, host RSS stays below the weight file size +
//! 64 MiB: quantised weights are read in place from the mmap, never copied into the heap.
//! (Own test binary: RSS is per process.)

mod common;

use std::path::{Path, PathBuf};

use fourierft::backend::BackendChoice;
use fourierft::model::GenerateOptions;
use fourierft::{Engine, EngineConfig, Request};

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn smollm2_gguf() -> Option<PathBuf> {
    match std::env::var_os("FOURIERFT_SMOLLM2_GGUF") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
                || std::env::var("FOURIERFT_REQUIRE_WEIGHTS").is_ok_and(|v| v == "1")
            {
                panic!("real weights required: FOURIERFT_SMOLLM2_GGUF is not a file");
            }
            eprintln!("SKIPPED (no SmolLM2 GGUF; .ci/run fetches it)");
            None
        }
    }
}

#[test]
fn rss_after_open_and_generate_stays_below_file_size_plus_64_mib() {
    let Some(gguf) = smollm2_gguf() else { return };
    let dir = common::scratch("memory").join("m");
    // Convert in a child process so the converter's buffers are not in this process.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fourierft"))
        .args([
            "convert-gguf",
            "--in",
            gguf.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    let e = Engine::open(
        &dir,
        EngineConfig {
            backend: BackendChoice::Cpu,
            max_ctx: 256,
            overlay_budget_bytes: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let r = e
        .generate(
            "The capital of France is",
            &Request {
                options: GenerateOptions {
                    max_tokens: 4,
                    ..Default::default()
                },
                ..Default::default()
            },
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(r.tokens.len(), 4);
    let rss = rss_bytes();
    eprintln!(
        "RSS {:.1} MiB, weights file {:.1} MiB",
        rss as f64 / 1048576.0,
        file as f64 / 1048576.0
    );
    assert!(
        rss < file + (64 << 20),
        "RSS {rss} bytes ≥ file {file} + 64 MiB"
    );
}
