//! `fourierft demo` (what `cargo run --release` runs): one base model opened once, several
//! kilobyte FourierFT adapters, the same prompt under each — base output, each adapter's output
//! with its file size, swap time and tokens/s, then a swap back to the first adapter showing
//! the identical output. Defaults to the small model embedded in assets/demo.

use std::path::{Path, PathBuf};

use fourierft::backend::BackendChoice;
use fourierft::model::GenerateOptions;
use fourierft::{AdapterChoice, Engine, EngineConfig, Error, Request, Result};

pub struct DemoArgs {
    pub model: Option<PathBuf>,
    pub adapters: Vec<PathBuf>,
    pub prompt: Option<String>,
    pub max_tokens: usize,
    pub chat: bool,
    pub backend: BackendChoice,
}

fn default_assets() -> Result<(PathBuf, Vec<PathBuf>, String)> {
    let root = crate::repo_root().join("assets/demo");
    let model = root.join("model");
    if !model.join("config.json").is_file() {
        return Err(Error::config(
            &model,
            "the embedded demo model is missing (expected assets/demo/model/config.json)",
        ));
    }
    let mut adapters: Vec<PathBuf> = std::fs::read_dir(root.join("adapters"))
        .map_err(|e| Error::io(root.join("adapters"), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".fft.safetensors"))
        .collect();
    adapters.sort();
    let golden = root.join("golden.json");
    let prompt = std::fs::read_to_string(&golden)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["prompts"][0]["text"].as_str().map(str::to_string))
        .unwrap_or_else(|| "Today I want to tell you about".to_string());
    Ok((model, adapters, prompt))
}

fn show(label: &str, text: &str) {
    outln!("{label}");
    for line in text.trim().lines() {
        outln!("    {line}");
    }
}

pub fn run(a: DemoArgs) -> Result<()> {
    let (model, adapters, prompt) = match a.model {
        Some(m) => (
            m,
            a.adapters,
            a.prompt
                .unwrap_or_else(|| "Tell me a short story.".to_string()),
        ),
        None => {
            let (m, ads, p) = default_assets()?;
            (
                m,
                if a.adapters.is_empty() {
                    ads
                } else {
                    a.adapters
                },
                a.prompt.unwrap_or(p),
            )
        }
    };
    let t = std::time::Instant::now();
    let e = Engine::open(
        &model,
        EngineConfig {
            backend: a.backend,
            max_ctx: 1024,
            overlay_budget_bytes: 512 << 20,
            ..Default::default()
        },
    )?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let st = e.stats();
    outln!(
        "Opened {} on {} in {open_ms:.0} ms ({:.1} MB of weights, mapped once).",
        model.display(),
        st.backend,
        e.model_files().weights.total_bytes() as f64 / 1e6
    );
    outln!("Prompt: {prompt:?}\n");
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        ..Default::default()
    };
    let req = |adapter| Request {
        adapter,
        chat: a.chat,
        system: None,
        options: opts.clone(),
    };
    let base = e.generate(&prompt, &req(AdapterChoice::Base), &mut |_| true)?;
    show(
        &format!(
            "[base model] {:.1} tok/s",
            base.stats.decode_tokens_per_sec()
        ),
        &base.text,
    );
    let mut first: Option<(u64, String, PathBuf)> = None;
    for path in &adapters {
        let id = e.load_adapter(path)?;
        let bytes = file_bytes(path);
        let r = e.generate(&prompt, &req(AdapterChoice::Id(id)), &mut |_| true)?;
        show(
            &format!(
                "\n[{}] {bytes} bytes, swap {:.2} ms, {:.1} tok/s",
                name(path),
                r.swap_secs * 1e3,
                r.stats.decode_tokens_per_sec()
            ),
            &r.text,
        );
        if first.is_none() {
            first = Some((id, r.text.clone(), path.clone()));
        }
    }
    if let Some((id, text, path)) = first {
        // Leave the adapter (its overlays stay cached), then come back to it.
        e.set_adapter(None)?;
        let r = e.generate(&prompt, &req(AdapterChoice::Id(id)), &mut |_| true)?;
        let s = e.stats();
        outln!(
            "\n[{} again] swap {:.3} ms ({}), output {}",
            name(&path),
            r.swap_secs * 1e3,
            if s.last_swap_warm {
                "cached overlays: a pointer switch"
            } else {
                "rebuilt"
            },
            if r.text == text {
                "identical"
            } else {
                "DIFFERENT"
            }
        );
        if r.text != text {
            return Err(Error::InvalidArgument(
                "swapping back did not reproduce the first output".into(),
            ));
        }
    }
    Ok(())
}

/// Bytes a user ships: the packed file, or a PEFT folder's files.
fn file_bytes(p: &Path) -> u64 {
    if p.is_dir() {
        ["adapter_model.safetensors", "adapter_config.json"]
            .iter()
            .filter_map(|f| std::fs::metadata(p.join(f)).ok())
            .map(|m| m.len())
            .sum()
    } else {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(".fft.safetensors")
                .to_string()
        })
        .unwrap_or_default()
}
