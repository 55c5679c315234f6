//! The Engine: one base model, opened and uploaded once, into which any number of kilobyte
//! FourierFT adapters are loaded and between which requests switch.
//!
//! Semantics (tested in tests/engine.rs):
//! - The base is mapped and uploaded once. Applying an adapter builds only the adapted layers'
//!   overlays (`deq(W) + ΔW`); `None` runs the plain base.
//! - `Engine` is `Send + Sync`. A request holds the model for its whole duration, so a swap
//!   requested while a generation runs waits for it: one forward pass never mixes layers of
//!   two adapters, and the running request keeps the adapter it started with.
//! - Every request starts with an empty KV cache, so a cache computed under one adapter is
//!   never reused under another.
//! - `cancel()` stops the running generation within one token; the Engine stays usable.
//! - Overlays of recently used adapters are kept, least recently used evicted first, within
//!   `overlay_budget_bytes`; switching back to a cached adapter is a pointer switch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::backend::cpu::CpuBackend;
use crate::backend::wgpu::{GpuBackend, GpuContext};
use crate::backend::{Backend, BackendChoice};
use crate::error::{Error, Result};
use crate::fourier::Adapter;
use crate::model::{generate, GenerateOptions, GenerateStats, Llama, LlamaOptions, OverlaySet};
use crate::tokenizer::{ChatMessage, Tokenizer};
use crate::weights::ModelFiles;

/// How to open an Engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub backend: BackendChoice,
    /// Longest prompt + generation.
    pub max_ctx: usize,
    /// Device bytes of cached (not active) overlays to keep for quick swaps.
    pub overlay_budget_bytes: u64,
    /// GPU only: keep adapted layers as the base plus the adapter's spectrum (`ΔW x` computed
    /// by inverse DFTs after the base product) instead of merged `deq(W) + ΔW` overlays. Swaps
    /// then upload O(n) bytes per layer and adapters hold kilobytes of device memory, at some
    /// compute per token. The CPU backend always works this way.
    pub spectral_gpu_layers: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            backend: BackendChoice::Auto,
            max_ctx: 2048,
            overlay_budget_bytes: 256 << 20,
            spectral_gpu_layers: false,
        }
    }
}

/// An adapter loaded into an Engine.
pub type AdapterId = u64;

/// Which adapter a request runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterChoice {
    /// The Engine's current adapter (see [`Engine::set_adapter`]).
    #[default]
    Current,
    /// The plain base model.
    Base,
    Id(AdapterId),
}

/// One generation request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub adapter: AdapterChoice,
    /// Wrap the prompt in the model's chat template as a user message.
    pub chat: bool,
    pub system: Option<String>,
    pub options: GenerateOptions,
}

/// What a finished request reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stats: GenerateStats,
    pub adapter: Option<AdapterId>,
    /// Time spent installing the request's adapter (0 when it was already active).
    pub swap_secs: f64,
}

/// Engine-wide figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    pub backend: String,
    pub adapters_loaded: usize,
    pub active_adapter: Option<AdapterId>,
    pub cached_overlays: usize,
    /// Bytes of the active and cached overlays.
    pub overlay_bytes: u64,
    pub last_swap_secs: f64,
    /// Whether the last swap found its overlays cached (a pointer switch).
    pub last_swap_warm: bool,
    pub last_prefill_tokens_per_sec: f64,
    pub last_decode_tokens_per_sec: f64,
}

enum AnyModel {
    Cpu(Llama<CpuBackend>, Lru<CpuBackend>),
    Gpu(Llama<GpuBackend>, Lru<GpuBackend>),
}

/// Cached overlay sets, most recently used last.
struct Lru<B: Backend> {
    sets: Vec<(AdapterId, OverlaySet<B>)>,
}

impl<B: Backend> Lru<B> {
    fn take(&mut self, id: AdapterId) -> Option<OverlaySet<B>> {
        let i = self.sets.iter().position(|(k, _)| *k == id)?;
        Some(self.sets.remove(i).1)
    }
    fn put(&mut self, id: AdapterId, set: OverlaySet<B>, budget: u64) -> Vec<B::Mat> {
        self.sets.push((id, set));
        let mut freed = Vec::new();
        while self.bytes() > budget && !self.sets.is_empty() {
            freed.extend(self.sets.remove(0).1.mats);
        }
        freed
    }
    fn remove(&mut self, id: AdapterId) {
        self.sets.retain(|(k, _)| *k != id);
    }
    fn bytes(&self) -> u64 {
        self.sets.iter().map(|(_, s)| s.bytes).sum()
    }
}

struct State {
    model: AnyModel,
    active: Option<AdapterId>,
    /// The adapter requests with `AdapterChoice::Current` use.
    current: Option<AdapterId>,
    stats: EngineStats,
}

pub struct Engine {
    files: ModelFiles,
    tokenizer: Tokenizer,
    config: EngineConfig,
    adapters: Mutex<HashMap<AdapterId, Arc<Adapter>>>,
    next_id: AtomicU64,
    state: Mutex<State>,
    cancel: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Open a model folder (config.json, safetensors, tokenizer.json) on the chosen backend.
    pub fn open(model_dir: &Path, config: EngineConfig) -> Result<Engine> {
        let files = ModelFiles::open(model_dir)?;
        let tokenizer = Tokenizer::from_dir(model_dir)?;
        let opts = LlamaOptions {
            max_ctx: config.max_ctx,
            max_batch: 64.min(config.max_ctx),
        };
        let gpu = match config.backend {
            BackendChoice::Cpu => None,
            BackendChoice::Gpu => Some(GpuContext::new()?),
            BackendChoice::Auto => GpuContext::new().ok(),
        };
        if let (Some(ctx), true) = (&gpu, config.spectral_gpu_layers) {
            ctx.set_spectral_layers(true);
        }
        let model = match gpu {
            Some(ctx) => AnyModel::Gpu(
                Llama::new(Arc::new(GpuBackend::new(ctx)?), &files, opts)?,
                Lru { sets: Vec::new() },
            ),
            None => AnyModel::Cpu(
                Llama::new(Arc::new(CpuBackend::new()), &files, opts)?,
                Lru { sets: Vec::new() },
            ),
        };
        let backend = match &model {
            AnyModel::Cpu(m, _) => m.backend().name(),
            AnyModel::Gpu(m, _) => m.backend().name(),
        };
        Ok(Engine {
            files,
            tokenizer,
            config,
            adapters: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                model,
                active: None,
                current: None,
                stats: EngineStats {
                    backend,
                    ..Default::default()
                },
            }),
            cancel: AtomicBool::new(false),
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn model_files(&self) -> &ModelFiles {
        &self.files
    }

    fn register(&self, a: Adapter) -> Result<AdapterId> {
        // Validate against the model before any GPU work.
        a.fit(&self.files)?;
        if let Some(e) = a.extras.first() {
            return Err(Error::unsupported(
                &a.source,
                format!("the adapter replaces '{}' (a bias or modules_to_save tensor); LLaMA generation applies FourierFT layers only", e.name),
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.adapters).insert(id, Arc::new(a));
        Ok(id)
    }

    /// Load a PEFT folder or a packed adapter file; it is checked against the model.
    pub fn load_adapter(&self, path: &Path) -> Result<AdapterId> {
        self.register(Adapter::load(path)?)
    }

    /// Load a packed adapter from memory; `name` labels it in errors.
    pub fn load_adapter_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<AdapterId> {
        self.register(Adapter::from_packed_bytes(Path::new(name), bytes)?)
    }

    /// Forget an adapter (and its cached overlays). Waits for a running request.
    pub fn unload_adapter(&self, id: AdapterId) -> Result<()> {
        if lock(&self.adapters).remove(&id).is_none() {
            return Err(Error::InvalidArgument(format!("no adapter with id {id}")));
        }
        let mut st = lock(&self.state);
        if st.current == Some(id) {
            st.current = None;
        }
        if st.active == Some(id) {
            st.active = None;
            match &mut st.model {
                AnyModel::Cpu(m, _) => drop(m.install(None)),
                AnyModel::Gpu(m, _) => drop(m.install(None)),
            }
        }
        match &mut st.model {
            AnyModel::Cpu(_, lru) => lru.remove(id),
            AnyModel::Gpu(_, lru) => lru.remove(id),
        }
        Ok(())
    }

    /// The adapter that requests use by default (`None`: the plain base). Applied now, so the
    /// next request starts without a rebuild. Waits for a running request.
    pub fn set_adapter(&self, id: Option<AdapterId>) -> Result<()> {
        let mut st = lock(&self.state);
        self.activate(&mut st, id)?;
        st.current = id;
        Ok(())
    }

    /// Install `id`'s overlays if they are not installed already.
    fn activate(&self, st: &mut State, id: Option<AdapterId>) -> Result<f64> {
        if st.active == id {
            return Ok(0.0);
        }
        let adapter = match id {
            Some(i) => Some(
                lock(&self.adapters)
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| Error::InvalidArgument(format!("no adapter with id {i}")))?,
            ),
            None => None,
        };
        let t = Instant::now();
        let budget = self.config.overlay_budget_bytes;
        let prev = st.active;
        let (warm, bytes) = match &mut st.model {
            AnyModel::Cpu(m, lru) => {
                swap(m, lru, &self.files, prev, id, adapter.as_deref(), budget)?
            }
            AnyModel::Gpu(m, lru) => {
                swap(m, lru, &self.files, prev, id, adapter.as_deref(), budget)?
            }
        };
        if let AnyModel::Gpu(m, _) = &st.model {
            m.backend().sync()?;
        }
        let secs = t.elapsed().as_secs_f64();
        st.active = id;
        st.stats.last_swap_secs = secs;
        st.stats.last_swap_warm = warm;
        st.stats.overlay_bytes = bytes;
        Ok(secs)
    }

    /// Generate text for `prompt`. `on_text` receives each piece as soon as it is complete and
    /// may return `false` to stop. Blocks; run it off an app's main thread.
    pub fn generate(
        &self,
        prompt: &str,
        req: &Request,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let text = if req.chat {
            let mut msgs = Vec::new();
            if let Some(s) = &req.system {
                msgs.push(ChatMessage::system(s.clone()));
            }
            msgs.push(ChatMessage::user(prompt));
            self.tokenizer.apply_chat(&msgs, true)?
        } else {
            prompt.to_string()
        };
        let ids = self.tokenizer.encode(&text, !req.chat)?;
        if ids.is_empty() {
            return Err(Error::InvalidArgument(
                "the prompt encodes to no tokens".into(),
            ));
        }
        if ids.len() + 1 > self.config.max_ctx {
            return Err(Error::InvalidArgument(format!(
                "the prompt has {} tokens; the context holds {}",
                ids.len(),
                self.config.max_ctx
            )));
        }
        let mut st = lock(&self.state);
        // A cancel issued before this request started does not stop it.
        self.cancel.store(false, Ordering::SeqCst);
        let want = match req.adapter {
            AdapterChoice::Current => st.current,
            AdapterChoice::Base => None,
            AdapterChoice::Id(i) => Some(i),
        };
        let swap_secs = self.activate(&mut st, want)?;
        let mut out = String::new();
        let cancel = &self.cancel;
        let mut sink = |piece: &str| {
            out.push_str(piece);
            on_text(piece) && !cancel.load(Ordering::SeqCst)
        };
        let (tokens, stats) = match &mut st.model {
            AnyModel::Cpu(m, _) => generate(m, &self.tokenizer, &ids, &req.options, &mut sink)?,
            AnyModel::Gpu(m, _) => generate(m, &self.tokenizer, &ids, &req.options, &mut sink)?,
        };
        st.stats.last_prefill_tokens_per_sec = stats.prefill_tokens_per_sec();
        st.stats.last_decode_tokens_per_sec = stats.decode_tokens_per_sec();
        Ok(Generation {
            text: out,
            tokens,
            stats,
            adapter: want,
            swap_secs,
        })
    }

    /// Logits F32 [tokens.len(), vocab] under the current adapter.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut st = lock(&self.state);
        let cur = st.current;
        self.activate(&mut st, cur)?;
        match &mut st.model {
            AnyModel::Cpu(m, _) => {
                m.reset();
                m.forward(tokens, true)
            }
            AnyModel::Gpu(m, _) => {
                m.reset();
                m.forward(tokens, true)
            }
        }
    }

    /// Live GPU buffers and their bytes (None on the CPU backend).
    pub fn gpu_buffers(&self) -> Option<(i64, i64)> {
        match &lock(&self.state).model {
            AnyModel::Gpu(m, _) => Some(m.backend().context().live_buffers()),
            AnyModel::Cpu(..) => None,
        }
    }

    /// Stop the running generation within one token.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn stats(&self) -> EngineStats {
        let st = lock(&self.state);
        let mut s = st.stats.clone();
        s.adapters_loaded = lock(&self.adapters).len();
        s.active_adapter = st.active;
        s.cached_overlays = match &st.model {
            AnyModel::Cpu(_, l) => l.sets.len(),
            AnyModel::Gpu(_, l) => l.sets.len(),
        };
        s
    }
}

/// Replace the installed overlays by `to`'s: from the cache when present (warm), else built,
/// reusing buffers the cache evicts. Returns (warm, active + cached overlay bytes).
fn swap<B: Backend>(
    m: &mut Llama<B>,
    lru: &mut Lru<B>,
    files: &ModelFiles,
    from: Option<AdapterId>,
    to: Option<AdapterId>,
    adapter: Option<&Adapter>,
    budget: u64,
) -> Result<(bool, u64)> {
    // Take the target from the cache before the outgoing set goes in, so making room for the
    // outgoing set never evicts the one being switched to.
    let cached = to.and_then(|id| lru.take(id));
    let mut spare = Vec::new();
    if let (Some(old), Some(f)) = (m.install(None), from) {
        spare = lru.put(f, old, budget);
    }
    let mut warm = true;
    if let (Some(_), Some(a)) = (to, adapter) {
        let set = match cached {
            Some(s) => s,
            None => {
                warm = false;
                m.build_overlays(files, a, spare)?
            }
        };
        m.install(Some(set));
    }
    let bytes = lru.bytes() + m.active_overlay_bytes();
    Ok((warm, bytes))
}
