//! The LLaMA family (Llama 2/3, Mistral, Qwen2, SmolLM2) over any [`Backend`].
//!
//! Shapes (rows = tokens in this step, ≤ `max_batch`):
//! x `[rows, hidden]` → per layer: RMSNorm → q `[rows, heads·hd]`, k, v `[rows, kv_heads·hd]`
//! (+ Qwen2 biases) → RoPE → KV cache `[max_ctx, kv_heads·hd]` → causal GQA → o_proj → +x →
//! RMSNorm → down(silu(gate)·up) → +x; final RMSNorm → logits `[rows, vocab]` (tied or untied
//! head). Every buffer is allocated in [`Llama::new`]; a forward step allocates nothing on the
//! GPU backend. Adapted layers run from their overlays (`deq(W) + ΔW`), the others from the base.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::fourier::Adapter;
use crate::weights::{Arch, ModelConfig, ModelFiles};

use super::rope;

/// The overlays of one adapter for one model, ready to install (or cached for a quick swap).
pub struct OverlaySet<B: Backend> {
    pub source: std::path::PathBuf,
    pub names: Vec<String>,
    pub mats: Vec<B::Mat>,
    /// Device bytes of each overlay.
    pub sizes: Vec<u64>,
    /// Device bytes the overlays occupy.
    pub bytes: u64,
}

/// Sizes fixed at load time.
#[derive(Debug, Clone, Copy)]
pub struct LlamaOptions {
    /// Longest sequence (prompt + generated tokens).
    pub max_ctx: usize,
    /// Most tokens processed in one forward step (prefill chunk).
    pub max_batch: usize,
}

impl Default for LlamaOptions {
    fn default() -> Self {
        LlamaOptions {
            max_ctx: 2048,
            max_batch: 64,
        }
    }
}

struct Linear<B: Backend> {
    name: String,
    base: B::Mat,
    overlay: Option<B::Mat>,
    /// Bytes of the base weight as stored (read once per token by a matrix-vector product).
    base_bytes: u64,
    overlay_bytes: u64,
    /// Bytes a product with the overlay reads.
    overlay_read: u64,
}

impl<B: Backend> Linear<B> {
    fn mat(&self) -> &B::Mat {
        self.overlay.as_ref().unwrap_or(&self.base)
    }
    fn bytes(&self) -> u64 {
        if self.overlay.is_some() {
            self.overlay_read
        } else {
            self.base_bytes
        }
    }
}

struct Layer<B: Backend> {
    attn_norm: B::Buf,
    mlp_norm: B::Buf,
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    o: Linear<B>,
    gate: Linear<B>,
    up: Linear<B>,
    down: Linear<B>,
    q_bias: Option<B::Buf>,
    k_bias: Option<B::Buf>,
    v_bias: Option<B::Buf>,
    k_cache: B::Buf,
    v_cache: B::Buf,
}

struct Scratch<B: Backend> {
    x: B::Buf,
    xn: B::Buf,
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    att: B::Buf,
    tmp: B::Buf,
    gate: B::Buf,
    up: B::Buf,
    act: B::Buf,
    logits: B::Buf,
}

/// A LLaMA-family model on backend `B`.
pub struct Llama<B: Backend> {
    pub config: ModelConfig,
    pub options: LlamaOptions,
    backend: Arc<B>,
    embed: Linear<B>,
    lm_head: Option<Linear<B>>,
    norm: B::Buf,
    inv_freq: B::Buf,
    layers: Vec<Layer<B>>,
    s: Scratch<B>,
    eps: f32,
    /// Tokens in the KV cache.
    pos: usize,
    /// Source and overlay bytes of the installed adapter (None: the plain base).
    active: Option<(std::path::PathBuf, u64)>,
}

fn vector<B: Backend>(be: &B, model: &ModelFiles, name: &str, len: usize) -> Result<B::Buf> {
    let t = model.weights.tensor(name)?;
    let v = t.to_f32_vec()?;
    if v.len() != len {
        return Err(Error::tensor(
            t.path,
            name,
            format!("{len} values"),
            format!("{}", v.len()),
        ));
    }
    be.vector(&v)
}

impl<B: Backend> Llama<B> {
    /// Load the base model onto `backend` and allocate every buffer.
    pub fn new(backend: Arc<B>, model: &ModelFiles, options: LlamaOptions) -> Result<Self> {
        let c = model.config.clone();
        if !matches!(c.arch, Arch::Llama | Arch::Mistral | Arch::Qwen2) {
            return Err(Error::unsupported(
                &c.path,
                format!(
                    "architecture '{}' is not a LLaMA-family decoder",
                    c.model_type
                ),
            ));
        }
        if c.num_key_value_heads == 0
            || c.num_attention_heads % c.num_key_value_heads != 0
            || c.head_dim % 2 != 0
        {
            return Err(Error::config(
                &c.path,
                format!(
                    "expected num_attention_heads ({}) divisible by num_key_value_heads ({}) and an even head_dim ({})",
                    c.num_attention_heads, c.num_key_value_heads, c.head_dim
                ),
            ));
        }
        if options.max_ctx == 0 || options.max_batch == 0 {
            return Err(Error::InvalidArgument(
                "max_ctx and max_batch must be positive".into(),
            ));
        }
        let be = backend.as_ref();
        let lin = |name: String| -> Result<Linear<B>> {
            let base_bytes = ["weight", "scales", "biases"]
                .iter()
                .filter_map(|p| model.weights.get(&format!("{name}.{p}")))
                .map(|t| t.data.len() as u64)
                .sum();
            Ok(Linear {
                base: be.matrix(model, &name)?,
                name,
                overlay: None,
                base_bytes,
                overlay_bytes: 0,
                overlay_read: 0,
            })
        };
        let (h, hd, nh, nkv) = (
            c.hidden_size,
            c.head_dim,
            c.num_attention_heads,
            c.num_key_value_heads,
        );
        let kv_dim = nkv * hd;
        let embed = lin("model.embed_tokens".into())?;
        let lm_head = if c.tie_word_embeddings && !model.weights.contains("lm_head.weight") {
            None
        } else {
            Some(lin("lm_head".into())?)
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let bias = |m: &str, len: usize| -> Result<Option<B::Buf>> {
                let name = format!("{p}.self_attn.{m}.bias");
                if model.weights.contains(&name) {
                    Ok(Some(vector(be, model, &name, len)?))
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: vector(be, model, &format!("{p}.input_layernorm.weight"), h)?,
                mlp_norm: vector(
                    be,
                    model,
                    &format!("{p}.post_attention_layernorm.weight"),
                    h,
                )?,
                q: lin(format!("{p}.self_attn.q_proj"))?,
                k: lin(format!("{p}.self_attn.k_proj"))?,
                v: lin(format!("{p}.self_attn.v_proj"))?,
                o: lin(format!("{p}.self_attn.o_proj"))?,
                gate: lin(format!("{p}.mlp.gate_proj"))?,
                up: lin(format!("{p}.mlp.up_proj"))?,
                down: lin(format!("{p}.mlp.down_proj"))?,
                q_bias: bias("q_proj", nh * hd)?,
                k_bias: bias("k_proj", kv_dim)?,
                v_bias: bias("v_proj", kv_dim)?,
                k_cache: be.buffer(options.max_ctx * kv_dim)?,
                v_cache: be.buffer(options.max_ctx * kv_dim)?,
            });
        }
        let b = options.max_batch;
        let vocab = c.vocab_size;
        let s = Scratch {
            x: be.buffer(b * h)?,
            xn: be.buffer(b * h)?,
            q: be.buffer(b * nh * hd)?,
            k: be.buffer(b * kv_dim)?,
            v: be.buffer(b * kv_dim)?,
            att: be.buffer(b * nh * hd)?,
            tmp: be.buffer(b * h)?,
            gate: be.buffer(b * c.intermediate_size)?,
            up: be.buffer(b * c.intermediate_size)?,
            act: be.buffer(b * c.intermediate_size)?,
            logits: be.buffer(b * vocab)?,
        };
        let inv_freq = be.vector(&rope::inv_freq(hd, c.rope_theta, c.rope_scaling.as_ref()))?;
        Ok(Llama {
            eps: c.norm_eps() as f32,
            norm: vector(be, model, "model.norm.weight", h)?,
            config: c,
            options,
            backend,
            embed,
            lm_head,
            inv_freq,
            layers,
            s,
            pos: 0,
            active: None,
        })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Tokens currently in the KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes of weights one decode step reads: every matrix (overlays in place of adapted
    /// layers) once, the head (or tied embedding) in full, norms; the embedding lookup reads
    /// one row only and is not counted.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let c = &self.config;
        let norms = (2 * c.num_hidden_layers + 1) as u64 * c.hidden_size as u64 * 4;
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                    .iter()
                    .map(|x| x.bytes())
                    .sum::<u64>()
            })
            .sum();
        let head = self.lm_head.as_ref().unwrap_or(&self.embed).bytes();
        norms + layers + head
    }

    /// Forget the KV cache (the next step starts at position 0).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Install `adapter`'s overlays (or, with `None`, run the plain base). Resets the KV cache:
    /// a cache computed under one adapter is never reused under another.
    pub fn set_adapter(&mut self, model: &ModelFiles, adapter: Option<&Adapter>) -> Result<()> {
        let old = self.install(None);
        let reuse = old.map(|o| o.mats).unwrap_or_default();
        if let Some(a) = adapter {
            let set = self.build_overlays(model, a, reuse)?;
            self.install(Some(set));
        }
        Ok(())
    }

    /// Build the overlays of `adapter` for this model (nothing installed yet). `reuse` may hold
    /// overlays of the same layers from an earlier adapter, rewritten in place.
    pub fn build_overlays(
        &self,
        model: &ModelFiles,
        a: &Adapter,
        reuse: Vec<B::Mat>,
    ) -> Result<OverlaySet<B>> {
        if let Some(e) = a.extras.first() {
            return Err(Error::unsupported(
                &a.source,
                format!("the adapter replaces '{}' (a bias or modules_to_save tensor); LLaMA generation applies FourierFT layers only", e.name),
            ));
        }
        let fits = a.fit(model)?;
        let by_name: std::collections::HashMap<&str, &B::Mat> =
            self.linears().map(|l| (l.name.as_str(), &l.base)).collect();
        if let Some(f) = fits
            .iter()
            .find(|f| !by_name.contains_key(f.module.as_str()))
        {
            return Err(Error::AdapterMismatch {
                adapter: a.source.clone().into(),
                model: model.dir.clone().into(),
                reason: format!(
                    "'{}' is not a projection the LLaMA runtime adapts",
                    f.module
                ),
            });
        }
        let bases = fits
            .iter()
            .map(|f| by_name.get(f.module.as_str()).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::InvalidArgument("an adapted layer has no base".into()))?;
        let mats = self.backend.overlays(model, a, &fits, &bases, reuse)?;
        let sizes: Vec<u64> = fits
            .iter()
            .zip(&mats)
            .map(|(_, m)| self.backend.overlay_bytes(m))
            .collect();
        Ok(OverlaySet {
            source: a.source.clone(),
            names: fits.into_iter().map(|f| f.module).collect(),
            mats,
            bytes: sizes.iter().sum(),
            sizes,
        })
    }

    /// Swap in `set` (or the plain base with `None`) and return the overlays that were
    /// installed, so a caller can cache them: switching back is then a pointer switch. Resets
    /// the KV cache.
    pub fn install(&mut self, set: Option<OverlaySet<B>>) -> Option<OverlaySet<B>> {
        self.pos = 0;
        let mut old_names = Vec::new();
        let mut old_mats = Vec::new();
        let mut old_sizes = Vec::new();
        for lin in self.linears_mut() {
            if let Some(o) = lin.overlay.take() {
                old_names.push(lin.name.clone());
                old_mats.push(o);
                old_sizes.push(lin.overlay_bytes);
                lin.overlay_bytes = 0;
            }
        }
        let old = self.active.take().map(|(source, bytes)| OverlaySet {
            source,
            names: old_names,
            mats: old_mats,
            sizes: old_sizes,
            bytes,
        });
        if let Some(set) = set {
            let mut by_name: HashMap<String, (B::Mat, u64)> = set
                .names
                .into_iter()
                .zip(set.mats.into_iter().zip(set.sizes))
                .collect();
            let backend = self.backend.clone();
            for lin in self.linears_mut() {
                if let Some((o, size)) = by_name.remove(&lin.name) {
                    lin.overlay_read = backend.overlay_read_bytes(&o);
                    lin.overlay = Some(o);
                    lin.overlay_bytes = size;
                }
            }
            self.active = Some((set.source, set.bytes));
        }
        old
    }

    /// Device bytes of the installed overlays.
    pub fn active_overlay_bytes(&self) -> u64 {
        self.active.as_ref().map_or(0, |(_, b)| *b)
    }

    /// The source of the installed adapter, if any.
    pub fn active_adapter(&self) -> Option<&std::path::Path> {
        self.active.as_ref().map(|(p, _)| p.as_path())
    }

    fn linears(&self) -> impl Iterator<Item = &Linear<B>> {
        let head = self.lm_head.iter();
        std::iter::once(&self.embed).chain(head).chain(
            self.layers
                .iter()
                .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].into_iter()),
        )
    }

    fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear<B>> {
        let head = self.lm_head.iter_mut();
        std::iter::once(&mut self.embed)
            .chain(head)
            .chain(self.layers.iter_mut().flat_map(|l| {
                [
                    &mut l.q,
                    &mut l.k,
                    &mut l.v,
                    &mut l.o,
                    &mut l.gate,
                    &mut l.up,
                    &mut l.down,
                ]
                .into_iter()
            }))
    }

    /// Run `tokens` at the current position (appending to the KV cache), in chunks of
    /// `max_batch`. Returns the logits of the last token, or of every token with `all`.
    pub fn forward(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        if self.pos + tokens.len() > self.options.max_ctx {
            return Err(Error::InvalidArgument(format!(
                "context full: {} + {} tokens exceed max_ctx {}",
                self.pos,
                tokens.len(),
                self.options.max_ctx
            )));
        }
        let vocab = self.config.vocab_size;
        let mut out = Vec::with_capacity(if all { tokens.len() * vocab } else { vocab });
        for chunk in tokens.chunks(self.options.max_batch) {
            self.step(chunk)?;
            let rows = chunk.len();
            if all {
                out.extend(self.backend.read(&self.s.logits, 0, rows * vocab)?);
            } else if chunk.as_ptr_range().end == tokens.as_ptr_range().end {
                out = self
                    .backend
                    .read(&self.s.logits, (rows - 1) * vocab, vocab)?;
            }
        }
        Ok(out)
    }

    /// One step of `rows ≤ max_batch` tokens; logits land in the scratch buffer.
    fn step(&mut self, tokens: &[u32]) -> Result<()> {
        let be = self.backend.as_ref();
        let c = &self.config;
        let s = &self.s;
        let rows = tokens.len();
        let (h, hd, nh, nkv) = (
            c.hidden_size,
            c.head_dim,
            c.num_attention_heads,
            c.num_key_value_heads,
        );
        let kv_dim = nkv * hd;
        let inter = c.intermediate_size;
        let pos0 = self.pos;
        be.embed(self.embed.mat(), tokens, &s.x)?;
        for l in &self.layers {
            be.rmsnorm(&s.x, &l.attn_norm, &s.xn, rows, h, self.eps)?;
            be.matmul(&s.xn, l.q.mat(), &s.q, rows)?;
            be.matmul(&s.xn, l.k.mat(), &s.k, rows)?;
            be.matmul(&s.xn, l.v.mat(), &s.v, rows)?;
            if let Some(b) = &l.q_bias {
                be.add_bias(&s.q, b, rows, nh * hd)?;
            }
            if let Some(b) = &l.k_bias {
                be.add_bias(&s.k, b, rows, kv_dim)?;
            }
            if let Some(b) = &l.v_bias {
                be.add_bias(&s.v, b, rows, kv_dim)?;
            }
            be.rope(&s.q, &self.inv_freq, rows, nh, hd, pos0)?;
            be.rope(&s.k, &self.inv_freq, rows, nkv, hd, pos0)?;
            be.kv_store(&s.k, &s.v, &l.k_cache, &l.v_cache, rows, kv_dim, pos0)?;
            be.attention(
                &s.q, &l.k_cache, &l.v_cache, &s.att, rows, pos0, nh, nkv, hd,
            )?;
            be.matmul(&s.att, l.o.mat(), &s.tmp, rows)?;
            be.add(&s.x, &s.tmp, rows * h)?;
            be.rmsnorm(&s.x, &l.mlp_norm, &s.xn, rows, h, self.eps)?;
            be.matmul(&s.xn, l.gate.mat(), &s.gate, rows)?;
            be.matmul(&s.xn, l.up.mat(), &s.up, rows)?;
            be.silu_mul(&s.gate, &s.up, &s.act, rows * inter)?;
            be.matmul(&s.act, l.down.mat(), &s.tmp, rows)?;
            be.add(&s.x, &s.tmp, rows * h)?;
        }
        be.rmsnorm(&s.x, &self.norm, &s.xn, rows, h, self.eps)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        be.matmul(&s.xn, head.mat(), &s.logits, rows)?;
        self.pos += rows;
        Ok(())
    }
}
