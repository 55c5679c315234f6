//! `fourierft`: the desktop harness. Run, inspect, convert, verify and benchmark.
//!
//! Exit codes: 0 success; 1 bad input or runtime error (one line on stderr naming the file
//! and what was expected); 2 usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use fourierft::backend::wgpu::GpuContext;
use fourierft::backend::BackendChoice;
use fourierft::fourier::{Adapter, CpuMethod};
use fourierft::weights::writer::{write_safetensors, OutTensor};
use fourierft::weights::{DType, ModelFiles, QuantSpec};
use fourierft::{Error, Result};

/// `println!` that ignores a closed stdout (e.g. `fourierft inspect … | head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod demo;
mod gpu_backend;
mod inspect;
mod run;

#[derive(Parser)]
#[command(
    name = "fourierft",
    version,
    about = "FourierFT runtime: quantised base models + kilobyte spectral adapters"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// One base model, several adapters, the same prompt: outputs, swap times, tokens/s (the
    /// default command; defaults to the embedded demo model).
    Demo(DemoCli),
    /// Describe a model folder/file or an adapter folder/file.
    Inspect(InspectArgs),
    /// Compute one module's ΔW and write it as safetensors (`delta_w` F32 [out,in], `indices` I64 [2,n]).
    Delta(DeltaArgs),
    /// Pack a PEFT FourierFT adapter folder into one file.
    PackAdapter(PackArgs),
    /// Quantise an F32/F16/BF16 Hugging Face folder to MLX-affine.
    Quantize(QuantizeArgs),
    /// Convert a llama GGUF (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/F16/F32) losslessly into an MLX-affine folder.
    ConvertGguf(ConvertGgufArgs),
    /// Logits F32 [seq, vocab] of every position for given token ids, as safetensors.
    Logits(LogitsArgs),
    /// Generate text, streamed to stdout; prefill and decode tokens/s on stderr.
    Generate(GenerateArgs),
    /// Benchmarks that print figures (JSON with --json).
    Bench(BenchArgs),
}

#[derive(Args, Default)]
struct DemoCli {
    /// Model folder (default: the embedded assets/demo/model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Adapters to show (repeatable; default: assets/demo/adapters/*.fft.safetensors).
    #[arg(long = "adapter")]
    adapters: Vec<PathBuf>,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Default: $FOURIERFT_BACKEND, else auto.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

#[derive(Args)]
struct InspectArgs {
    /// A model folder or .safetensors file, a PEFT adapter folder, or a packed adapter file.
    #[arg(required_unless_present = "gpu")]
    path: Option<PathBuf>,
    /// Describe the GPU: adapter, backend, limits and optional features.
    #[arg(long)]
    gpu: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// With an adapter: check whether it fits this model.
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Backend {
    Cpu,
    Gpu,
    /// The GPU when an adapter is found, else the CPU.
    Auto,
}

#[derive(Clone, Copy, Debug)]
struct Shape(usize, usize);

fn parse_shape(s: &str) -> std::result::Result<Shape, String> {
    let (a, b) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}': expected OUTxIN, e.g. 4096x4096"))?;
    let parse = |t: &str| -> std::result::Result<usize, String> {
        match t.trim().parse::<usize>() {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(format!("'{s}': expected two positive integers OUTxIN")),
        }
    };
    Ok(Shape(parse(a)?, parse(b)?))
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("geometry").required(true).args(["model", "shape"])))]
struct DeltaArgs {
    /// PEFT adapter folder or packed adapter file.
    #[arg(long)]
    adapter: PathBuf,
    /// The base weight's name without `.weight`, e.g. model.layers.0.self_attn.q_proj.
    #[arg(long)]
    module: String,
    /// Base model folder (gives the layer's shape).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Layer shape OUTxIN instead of a model.
    #[arg(long, value_parser = parse_shape)]
    shape: Option<Shape>,
    /// Output .safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// Where to compute ΔW (default: $FOURIERFT_BACKEND, else cpu).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Use the f64 closed form instead of the fast path (slow; for checking).
    #[arg(long)]
    exact: bool,
}

#[derive(Args)]
struct LogitsArgs {
    /// Model folder (LLaMA family).
    #[arg(long)]
    model: PathBuf,
    /// FourierFT adapter (PEFT folder or packed file).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Token ids, e.g. 1,2,3.
    #[arg(long, value_parser = run::parse_tokens)]
    tokens: run::TokenList,
    /// Output .safetensors file (tensor `logits` F32 [seq, vocab]).
    #[arg(long)]
    out: PathBuf,
    /// Default: $FOURIERFT_BACKEND, else cpu.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

#[derive(Args)]
struct GenerateArgs {
    /// Model folder (LLaMA family, with tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// FourierFT adapter (PEFT folder or packed file).
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template (as a user message).
    #[arg(long)]
    chat: bool,
    /// A system message for --chat.
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this string appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Default: $FOURIERFT_BACKEND, else cpu.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum CoeffDtype {
    F16,
    F32,
}

#[derive(Args)]
struct PackArgs {
    /// PEFT adapter folder.
    #[arg(long = "in")]
    input: PathBuf,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Coefficient dtype: f32 keeps PEFT's values exactly, f16 halves the size.
    #[arg(long, value_enum, default_value_t = CoeffDtype::F32)]
    dtype: CoeffDtype,
    /// Store each module's spectral positions explicitly (needs --model for the layer shapes).
    #[arg(long, requires = "model")]
    explicit_positions: bool,
    /// Base model the adapter is for: checked before packing.
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Args)]
struct QuantizeArgs {
    /// Hugging Face model folder (F32/F16/BF16 safetensors).
    #[arg(long = "in")]
    input: PathBuf,
    /// Output folder (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Bits per weight: 4 or 8.
    #[arg(long, default_value_t = 4, value_parser = parse_bits)]
    bits: u32,
    /// Weights per scale/bias group: 32, 64 or 128.
    #[arg(long = "group-size", default_value_t = 64, value_parser = parse_group)]
    group_size: usize,
}

#[derive(Args)]
struct ConvertGgufArgs {
    /// The .gguf file (llama architecture).
    #[arg(long = "in")]
    input: PathBuf,
    /// Output folder (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

fn parse_bits(s: &str) -> std::result::Result<u32, String> {
    match s {
        "4" => Ok(4),
        "8" => Ok(8),
        _ => Err(format!("'{s}': expected 4 or 8")),
    }
}

fn parse_group(s: &str) -> std::result::Result<usize, String> {
    match s {
        "32" => Ok(32),
        "64" => Ok(64),
        "128" => Ok(128),
        _ => Err(format!("'{s}': expected 32, 64 or 128")),
    }
}

#[derive(Args)]
struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Positions + ΔW for a 4096x4096 layer (n = 1000, 5000): fast CPU path vs PEFT's algorithm in Rust.
    Delta {
        #[arg(long)]
        json: bool,
        /// Repetitions of the fast path (median reported).
        #[arg(long, default_value_t = 7)]
        reps: usize,
    },
    /// Prefill and decode speed of a model, bytes of weights per token against a copy kernel
    /// on the same device, the extra cost of an adapter, peak host RSS.
    Decode {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 64)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 32)]
        decode_tokens: usize,
        /// Default: $FOURIERFT_BACKEND, else cpu.
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        /// GPU only: run adapted layers as base + spectral ΔW instead of merged overlays.
        #[arg(long)]
        spectral: bool,
    },
    /// Cold swap (overlays rebuilt), warm swap (cached) and open + upload of the base.
    Swap {
        #[arg(long)]
        model: PathBuf,
        /// Two or more adapters.
        #[arg(long = "adapter", required = true)]
        adapters: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Default: $FOURIERFT_BACKEND, else auto.
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        /// GPU only: adapted layers as base + spectral ΔW (O(n) cold swaps) instead of merged
        /// overlays.
        #[arg(long)]
        spectral: bool,
    },
    /// Apply one adapter to all q,v layers of a synthetic quantised base, GPU vs fast CPU path,
    /// and the time to upload those layers.
    Apply {
        /// smollm2-135m (30 layers of q 576x576 + v 192x576), llama2-7b (32 layers of q, v
        /// 4096x4096) or OUTxIN[,OUTxIN...].
        #[arg(long, default_value = "smollm2-135m")]
        shape: String,
        #[arg(long)]
        json: bool,
        /// Coefficients per layer.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Bits of the synthetic base (4 or 8).
        #[arg(long, default_value_t = 4, value_parser = parse_bits)]
        bits: u32,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
}

fn main() -> ExitCode {
    // Mesa prints a harmless line per device when this is unset; keep stderr to our one line.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help / --version print and exit 0; real usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command.unwrap_or(Command::Demo(DemoCli {
        max_tokens: 32,
        ..Default::default()
    })) {
        Command::Demo(d) => choice(d.backend, BackendChoice::Auto).and_then(|backend| {
            demo::run(demo::DemoArgs {
                model: d.model,
                adapters: d.adapters,
                prompt: d.prompt,
                max_tokens: d.max_tokens,
                chat: d.chat,
                backend,
            })
        }),
        Command::Inspect(a) => match (&a.path, a.gpu) {
            (_, true) => inspect::gpu(a.json),
            (Some(p), false) => inspect::run(p, a.json, a.model.as_deref()),
            (None, false) => Err(Error::InvalidArgument(
                "inspect needs a PATH or --gpu".into(),
            )),
        },
        Command::Delta(a) => delta(a),
        Command::PackAdapter(a) => pack(a),
        Command::Quantize(a) => quantize(a),
        Command::ConvertGguf(a) => convert_gguf(a),
        Command::Generate(a) => resolve_backend(a.backend).and_then(|gpu| {
            let req = run::GenerateRequest {
                model: &a.model,
                adapter: a.adapter.as_deref(),
                prompt: &a.prompt,
                chat: a.chat,
                system: a.system.as_deref(),
                options: fourierft::model::GenerateOptions {
                    max_tokens: a.max_tokens,
                    sampler: fourierft::sampler::SamplerConfig {
                        temperature: a.temperature,
                        top_k: a.top_k,
                        top_p: a.top_p,
                        seed: a.seed,
                    },
                    stop: a.stop.clone(),
                    stop_at_eos: true,
                },
            };
            run::generate(&req, gpu)
        }),
        Command::Logits(a) => resolve_backend(a.backend)
            .and_then(|gpu| run::logits(&a.model, a.adapter.as_deref(), &a.tokens.0, &a.out, gpu)),
        Command::Bench(BenchArgs { what }) => match what {
            BenchWhat::Delta { json, reps } => bench::delta(json, reps),
            BenchWhat::Apply {
                shape,
                json,
                n,
                bits,
                reps,
            } => bench::apply(&shape, n, bits, reps, json),
            BenchWhat::Swap {
                model,
                adapters,
                json,
                backend,
                spectral,
            } => choice(backend, BackendChoice::Auto)
                .and_then(|b| bench::swap(&model, &adapters, b, spectral, json)),
            BenchWhat::Decode {
                model,
                adapter,
                json,
                prompt_tokens,
                decode_tokens,
                backend,
                spectral,
            } => resolve_backend(backend).and_then(|gpu| {
                bench::decode(
                    &model,
                    adapter.as_deref(),
                    gpu,
                    spectral,
                    prompt_tokens,
                    decode_tokens,
                    json,
                )
            }),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

fn one_line(e: &Error) -> String {
    e.to_string().replace('\n', " ")
}

/// The backend choice from `--backend`, else `FOURIERFT_BACKEND`, else `default`.
fn choice(flag: Option<Backend>, default: BackendChoice) -> Result<BackendChoice> {
    match flag {
        Some(Backend::Cpu) => Ok(BackendChoice::Cpu),
        Some(Backend::Gpu) => Ok(BackendChoice::Gpu),
        Some(Backend::Auto) => Ok(BackendChoice::Auto),
        None => BackendChoice::from_env_or(default),
    }
}

/// The backend from `--backend`, else `FOURIERFT_BACKEND`, else the CPU; `auto` becomes the
/// GPU when an adapter is found.
fn resolve_backend(flag: Option<Backend>) -> Result<Option<GpuContext>> {
    let choice = match flag {
        Some(Backend::Cpu) => BackendChoice::Cpu,
        Some(Backend::Gpu) => BackendChoice::Gpu,
        Some(Backend::Auto) => BackendChoice::Auto,
        None => BackendChoice::from_env_or(BackendChoice::Cpu)?,
    };
    match choice {
        BackendChoice::Cpu => Ok(None),
        BackendChoice::Gpu => GpuContext::new().map(Some),
        BackendChoice::Auto => Ok(GpuContext::new().ok()),
    }
}

fn delta(a: DeltaArgs) -> Result<()> {
    let gpu = resolve_backend(a.backend)?;
    let adapter = Adapter::load(&a.adapter)?;
    let m = adapter.require_module(&a.module)?;
    let (out_f, in_f) = match (&a.model, a.shape) {
        (Some(model_dir), _) => {
            let model = ModelFiles::open(model_dir)?;
            let fits = adapter.fit(&model)?;
            let fit = fits.iter().find(|f| f.module == a.module).ok_or_else(|| {
                Error::InvalidArgument(format!("module '{}' not fitted", a.module))
            })?;
            (fit.out_features, fit.in_features)
        }
        (None, Some(Shape(o, i))) => (o, i),
        (None, None) => {
            return Err(Error::InvalidArgument(
                "give --model MODEL or --shape OUTxIN".into(),
            ))
        }
    };
    let (delta, rows, cols, backend) = match (&gpu, a.exact) {
        (Some(ctx), false) => {
            let (d, r, c) =
                fourierft::backend::wgpu::apply::delta(ctx, &adapter, &a.module, out_f, in_f)?;
            (d, r, c, format!("gpu ({})", ctx.info.name))
        }
        _ => {
            let method = if a.exact {
                CpuMethod::Reference
            } else {
                CpuMethod::Fast
            };
            let d = adapter.module_delta(m, out_f, in_f, method)?;
            (d.delta, d.rows, d.cols, "cpu".to_string())
        }
    };
    let indices: Vec<i64> = rows.iter().chain(cols.iter()).map(|&x| x as i64).collect();
    write_safetensors(
        &a.out,
        &[
            OutTensor::f32("delta_w", vec![out_f, in_f], &delta),
            OutTensor::i64("indices", vec![2, rows.len()], &indices),
        ],
        None,
    )?;
    eprintln!(
        "wrote {}: delta_w [{out_f}, {in_f}], indices [2, {}] on {backend}",
        a.out.display(),
        rows.len()
    );
    Ok(())
}

fn pack(a: PackArgs) -> Result<()> {
    if !a.input.is_dir() {
        return Err(Error::config(
            &a.input,
            "expected a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)",
        ));
    }
    let adapter = Adapter::load(&a.input)?;
    let fits = match &a.model {
        Some(m) => Some(adapter.fit(&ModelFiles::open(m)?)?),
        None => None,
    };
    let dtype = match a.dtype {
        CoeffDtype::F16 => DType::F16,
        CoeffDtype::F32 => DType::F32,
    };
    let explicit = if a.explicit_positions {
        fits.as_deref()
    } else {
        None
    };
    let bytes = adapter.write_packed(&a.out, dtype, explicit)?;
    let coeffs: usize = adapter.modules.iter().map(|m| m.n()).sum();
    outln!(
        "packed {} modules, {coeffs} coefficients ({}) into {} ({bytes} bytes; PEFT folder: {} bytes)",
        adapter.modules.len(),
        dtype,
        a.out.display(),
        adapter.file_bytes
    );
    Ok(())
}

fn quantize(a: QuantizeArgs) -> Result<()> {
    let spec = QuantSpec::new(a.bits, a.group_size)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t = Instant::now();
    let report = fourierft::weights::quantize::quantize_model_dir(
        &a.input,
        &a.out,
        spec,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    outln!(
        "quantised {} into {} ({}-bit, group {}) in {:.2} s: {:?}",
        a.input.display(),
        a.out.display(),
        a.bits,
        a.group_size,
        t.elapsed().as_secs_f64(),
        report
    );
    Ok(())
}

fn convert_gguf(a: ConvertGgufArgs) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t = Instant::now();
    let r =
        fourierft::weights::gguf_convert::convert_gguf(&a.input, &a.out, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
    bar.finish_and_clear();
    let types: Vec<String> = r.by_type.iter().map(|(k, v)| format!("{v} {k}")).collect();
    outln!(
        "converted {} ({}: {}) into {} in {:.2} s: {} quantised, {} float; tokenizer: {}",
        a.input.display(),
        r.arch,
        types.join(", "),
        a.out.display(),
        t.elapsed().as_secs_f64(),
        r.quantized,
        r.float,
        r.tokenizer.as_deref().unwrap_or("none")
    );
    if let Some(why) = &r.tokenizer_skipped {
        eprintln!("warning: no tokenizer.json written: {why}");
    }
    Ok(())
}

/// The repository root (fixtures and assets live here).
pub(crate) fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn print_json(v: &serde_json::Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| json!({}).to_string())
    );
}
