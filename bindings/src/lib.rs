//! uniffi bindings (Kotlin, Swift) for the fourierft [`Engine`](fourierft::Engine).
//!
//! A thin layer: it converts types and maps errors, nothing else. The contract (names, fields,
//! defaults) is in `bindings/README.md`; every method blocks, so apps call it from a
//! background thread, and `cancel()` may be called from any thread.

use std::path::Path;
use std::sync::Arc;

use fourierft::backend::BackendChoice;
use fourierft::model::{GenerateOptions as CoreOptions, StopReason as CoreStop};
use fourierft::sampler::SamplerConfig;
use fourierft::{AdapterChoice, Request};

uniffi::setup_scaffolding!();

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum BackendKind {
    /// The GPU when one is found, else the CPU.
    Auto,
    Cpu,
    Gpu,
}

/// How to open an [`Engine`].
#[derive(Debug, Clone, uniffi::Record)]
pub struct EngineConfig {
    /// Folder with config.json, the safetensors weights and tokenizer.json.
    pub model_dir: String,
    /// `None` = `Auto` (uniffi 0.32 proc-macros cannot default a field to an enum variant).
    #[uniffi(default = None)]
    pub backend: Option<BackendKind>,
    /// Longest prompt + generation, in tokens.
    #[uniffi(default = 2048)]
    pub max_context: u32,
    /// MiB of cached (inactive) adapter overlays kept for quick swaps.
    #[uniffi(default = 256)]
    pub overlay_budget_mb: u32,
    /// GPU only: adapted layers as base + spectral ΔW (O(n) swaps, kilobytes per adapter,
    /// some compute per token) instead of merged overlays. The CPU always works this way.
    #[uniffi(default = false)]
    pub spectral_gpu_layers: bool,
}

/// One generation request.
#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerateOptions {
    #[uniffi(default = 128)]
    pub max_tokens: u32,
    /// 0 = greedy (deterministic).
    #[uniffi(default = 0.0)]
    pub temperature: f32,
    /// 0 = off.
    #[uniffi(default = 0)]
    pub top_k: u32,
    /// 1.0 = off.
    #[uniffi(default = 1.0)]
    pub top_p: f32,
    #[uniffi(default = 0)]
    pub seed: u64,
    /// Wrap the prompt in the model's chat template as a user message.
    #[uniffi(default = false)]
    pub chat: bool,
    /// With `chat`: a system message before the prompt.
    #[uniffi(default = None)]
    pub system_prompt: Option<String>,
    /// Stop when one of these strings appears (it is not emitted).
    #[uniffi(default = [])]
    pub stop: Vec<String>,
    /// This request only; `None` = the Engine's current adapter (see `set_adapter`).
    #[uniffi(default = None)]
    pub adapter_id: Option<u64>,
    /// This request runs the plain base; an error if `adapter_id` is also set.
    #[uniffi(default = false)]
    pub plain_base: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerationStats {
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub prefill_tokens_per_sec: f64,
    pub decode_tokens_per_sec: f64,
    /// Time spent installing the request's adapter (0 when it was already active).
    pub swap_ms: f64,
    pub stop_reason: StopReason,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerationResult {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub stats: GenerationStats,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct EngineStats {
    pub backend: String,
    pub adapters_loaded: u32,
    pub active_adapter: Option<u64>,
    pub cached_overlays: u32,
    /// Bytes of the active and cached overlays.
    pub overlay_bytes: u64,
    pub last_swap_ms: f64,
    /// Whether the last swap found its overlays cached (a pointer switch).
    pub last_swap_warm: bool,
    pub last_prefill_tokens_per_sec: f64,
    pub last_decode_tokens_per_sec: f64,
}

/// Receives a generation's text as it is produced, on the generating thread.
#[uniffi::export(foreign)]
pub trait TokenListener: Send + Sync {
    /// A complete piece of text (the pieces concatenate to the result's text).
    fn on_token(&self, piece: String);
    /// Called once when the generation ends (also when cancelled), not when it fails.
    fn on_done(&self, stats: GenerationStats);
}

/// Errors; each carries the readable message of the Rust error (it names the file and what
/// was expected).
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum FourierftError {
    /// The OS refused to open, read or map a file.
    #[error("{0}")]
    Io(String),
    /// The model folder is malformed (config.json, weights, tokenizer).
    #[error("{0}")]
    InvalidModel(String),
    /// The adapter file or folder is malformed.
    #[error("{0}")]
    InvalidAdapter(String),
    /// The adapter was made for another model (shapes, layers).
    #[error("{0}")]
    AdapterMismatch(String),
    /// Allowed by the format but not implemented by this runtime.
    #[error("{0}")]
    Unsupported(String),
    /// No usable GPU, or the GPU failed.
    #[error("{0}")]
    Gpu(String),
    /// An argument that cannot work (unknown adapter id, empty prompt, ...).
    #[error("{0}")]
    InvalidArgument(String),
}

/// Whose file a structural error is about, to tell `InvalidModel` from `InvalidAdapter`.
#[derive(Clone, Copy)]
enum Subject {
    Model,
    Adapter,
}

fn map_err(subject: Subject) -> impl Fn(fourierft::Error) -> FourierftError {
    move |e| {
        use fourierft::Error as E;
        let msg = e.to_string();
        match e {
            E::Io { .. } => FourierftError::Io(msg),
            E::Format { .. }
            | E::Json { .. }
            | E::Config { .. }
            | E::MissingTensor { .. }
            | E::Tensor { .. } => match subject {
                Subject::Model => FourierftError::InvalidModel(msg),
                Subject::Adapter => FourierftError::InvalidAdapter(msg),
            },
            E::AdapterMismatch { .. } => FourierftError::AdapterMismatch(msg),
            E::Unsupported { .. } => FourierftError::Unsupported(msg),
            E::Gpu(_) => FourierftError::Gpu(msg),
            E::InvalidArgument(_) => FourierftError::InvalidArgument(msg),
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<CoreStop> for StopReason {
    fn from(s: CoreStop) -> Self {
        match s {
            CoreStop::Eos => StopReason::Eos,
            CoreStop::StopString => StopReason::StopString,
            CoreStop::MaxTokens => StopReason::MaxTokens,
            CoreStop::ContextFull => StopReason::ContextFull,
            CoreStop::Cancelled => StopReason::Cancelled,
        }
    }
}

/// One base model, opened once, into which adapters are loaded and between which requests
/// switch. Thread-safe; every method blocks.
#[derive(uniffi::Object)]
pub struct Engine {
    inner: fourierft::Engine,
}

#[uniffi::export]
impl Engine {
    /// Open a model folder.
    #[uniffi::constructor]
    pub fn new(config: EngineConfig) -> Result<Arc<Engine>, FourierftError> {
        let backend = match config.backend.unwrap_or(BackendKind::Auto) {
            BackendKind::Auto => BackendChoice::Auto,
            BackendKind::Cpu => BackendChoice::Cpu,
            BackendKind::Gpu => BackendChoice::Gpu,
        };
        let core = fourierft::EngineConfig {
            backend,
            max_ctx: config.max_context as usize,
            overlay_budget_bytes: u64::from(config.overlay_budget_mb) << 20,
            spectral_gpu_layers: config.spectral_gpu_layers,
        };
        let inner = fourierft::Engine::open(Path::new(&config.model_dir), core)
            .map_err(map_err(Subject::Model))?;
        Ok(Arc::new(Engine { inner }))
    }

    /// Load a PEFT adapter folder or a packed `.fft.safetensors` file; it is checked against
    /// the model. Returns its id.
    pub fn load_adapter(&self, path: String) -> Result<u64, FourierftError> {
        self.inner
            .load_adapter(Path::new(&path))
            .map_err(map_err(Subject::Adapter))
    }

    /// Load a packed adapter from memory (the contents of a `.fft.safetensors` file).
    pub fn load_adapter_bytes(&self, bytes: Vec<u8>) -> Result<u64, FourierftError> {
        self.inner
            .load_adapter_bytes("<adapter bytes>", bytes)
            .map_err(map_err(Subject::Adapter))
    }

    /// Forget an adapter and its cached overlays.
    pub fn unload_adapter(&self, id: u64) -> Result<(), FourierftError> {
        self.inner
            .unload_adapter(id)
            .map_err(map_err(Subject::Model))
    }

    /// The adapter requests use by default; `None` = the plain base.
    pub fn set_adapter(&self, id: Option<u64>) -> Result<(), FourierftError> {
        self.inner.set_adapter(id).map_err(map_err(Subject::Model))
    }

    /// Generate text for `prompt` (blocking). `listener` receives each piece, then
    /// `on_done` once.
    pub fn generate(
        &self,
        prompt: String,
        options: GenerateOptions,
        listener: Option<Arc<dyn TokenListener>>,
    ) -> Result<GenerationResult, FourierftError> {
        let adapter = match (options.adapter_id, options.plain_base) {
            (Some(_), true) => {
                return Err(FourierftError::InvalidArgument(
                    "invalid argument: adapter_id and plain_base are both set; choose one".into(),
                ))
            }
            (Some(id), false) => AdapterChoice::Id(id),
            (None, true) => AdapterChoice::Base,
            (None, false) => AdapterChoice::Current,
        };
        let req = Request {
            adapter,
            chat: options.chat,
            system: options.system_prompt,
            options: CoreOptions {
                max_tokens: options.max_tokens as usize,
                sampler: SamplerConfig {
                    temperature: options.temperature,
                    top_k: options.top_k as usize,
                    top_p: options.top_p,
                    seed: options.seed,
                },
                stop: options.stop,
                ..Default::default()
            },
        };
        let g = self
            .inner
            .generate(&prompt, &req, &mut |piece| {
                if let Some(l) = &listener {
                    l.on_token(piece.to_string());
                }
                true
            })
            .map_err(map_err(Subject::Model))?;
        let stats = GenerationStats {
            prompt_tokens: to_u32(g.stats.prompt_tokens),
            generated_tokens: to_u32(g.stats.generated_tokens),
            prefill_tokens_per_sec: g.stats.prefill_tokens_per_sec(),
            decode_tokens_per_sec: g.stats.decode_tokens_per_sec(),
            swap_ms: g.swap_secs * 1e3,
            stop_reason: g.stats.stop_reason.into(),
        };
        if let Some(l) = &listener {
            l.on_done(stats.clone());
        }
        Ok(GenerationResult {
            text: g.text,
            token_ids: g.tokens,
            stats,
        })
    }

    /// Stop the running generation within one token (from any thread); it returns with
    /// `StopReason::Cancelled` and the Engine stays usable.
    pub fn cancel(&self) {
        self.inner.cancel()
    }

    pub fn stats(&self) -> EngineStats {
        let s = self.inner.stats();
        EngineStats {
            backend: s.backend,
            adapters_loaded: to_u32(s.adapters_loaded),
            active_adapter: s.active_adapter,
            cached_overlays: to_u32(s.cached_overlays),
            overlay_bytes: s.overlay_bytes,
            last_swap_ms: s.last_swap_secs * 1e3,
            last_swap_warm: s.last_swap_warm,
            last_prefill_tokens_per_sec: s.last_prefill_tokens_per_sec,
            last_decode_tokens_per_sec: s.last_decode_tokens_per_sec,
        }
    }
}

/// The version of this library.
#[uniffi::export]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
