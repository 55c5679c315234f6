//! [`GpuBackend`]: the [`Backend`] trait on wgpu, so the model graphs run on the GPU.
//!
//! Recording. Ops are not encoded at once: each becomes a pending (pipeline, bind group,
//! workgroups) triple in a list held under a mutex, and [`Backend::read`] / [`Backend::sync`]
//! (or a full parameter ring) replay the list into ONE command encoder and ONE compute pass,
//! followed by the read-back copy, in one submission. wgpu inserts the barriers between
//! dispatches of a pass.
//!
//! Parameters. Every op's small parameter block goes into the next 256-byte slot of a uniform
//! "ring" buffer created once ([`PARAM_SLOTS`] slots). The host keeps a shadow of the used
//! slots and writes it with one `queue.write_buffer` just before the submission (writes land
//! before the submission's commands). When the ring is full the pending ops are submitted and
//! the ring starts again at slot 0 (queue order keeps earlier submissions' reads intact).
//! Token ids for `embed` travel the same way through a preallocated u32 storage ring.
//!
//! Bind groups are cached per (pipeline, bound buffer ranges); a decode step records the same
//! ops into the same slots each time (the ring restarts at every read), so after the first
//! token every lookup hits and the loop creates no GPU objects: no buffers (the read-back
//! staging buffer grows once to the largest read), no pipelines (cached by the context), no
//! bind groups. The cache is dropped when overlays change (old overlay buffers must be freed)
//! and when it grows past [`BIND_GROUP_CACHE_MAX`]; [`GpuBackend::clear_cache`] drops it too.
//!
//! Weights. [`Backend::matrix`] uploads a module's tensors from the mmap with one copy each.
//! An MLX-affine module keeps its codes in one buffer and its scales and biases together in a
//! second (scales from byte 0, biases from a 16-byte aligned offset), so the matmul kernel binds
//! x, W, scales+biases and out: the four storage buffers a phone allows. Weights larger than
//! one storage binding are bound in row chunks at aligned offsets, one dispatch per chunk.
//!
//! Overlays. [`Backend::overlays`] runs [`apply::apply`] on the base buffers uploaded by
//! `matrix` (found through a registry of weak references; re-uploaded from the mmap if the
//! matrix is gone), rewriting `reuse`d overlays in place. Overlays are f16 for F16, BF16 and
//! quantised bases and f32 for F32 bases (odd rows: f32); the matmul kernel reads both.
//!
//! Spectral layers. With [`GpuContext::set_spectral_layers`] (off by default) an adapted
//! `[out, in]` layer is instead its base matrix (shared) plus O(n) tables
//! ([`spectral::SpectralPlan`]): `matmul` records the base matmul, then three to five dispatches
//! that add `ΔW x` (B = DFT of x at the distinct v's, Z = coefficients scattered by u, inverse
//! DFT at every output; B and the inverse DFT each direct or split by one Cooley–Tukey step,
//! see [`spectral::Layout`]). Building or swapping an adapter then uploads only the tables. The
//! cos/sin tables (per shape) and the scratch buffer (shared, rows beyond it run in chunks) are
//! created when the layers are built, never while decoding.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::error::{Error, Result};
use crate::fourier::{Adapter, LayerFit};
use crate::weights::{DType, ModelFiles};

use super::apply::{self, GpuLayer, Overlay};
use super::buffers::{pad4, GpuTensor};
use super::context::{GpuContext, Kernel};
use super::kernels::dequant::WeightFormat;
use super::kernels::matmul::MatFormat;
use super::kernels::spectral::{self, SpectralPlan};
use super::kernels::{attention, chunk_rows, elementwise, matmul, norm, rope};
use crate::backend::Backend;

/// Uniform slots in the parameter ring (ops recorded before a submission is forced).
pub const PARAM_SLOTS: usize = 2048;
/// Tokens the embed ring holds before a submission is forced (grown if one call needs more).
pub const TOKEN_RING: usize = 4096;
/// Cached bind groups before the cache is dropped and rebuilt.
pub const BIND_GROUP_CACHE_MAX: usize = 16384;

/// An f32 buffer of `len` values.
pub struct GpuBuf {
    pub buffer: wgpu::Buffer,
    pub len: usize,
}

/// A weight matrix `[rows = out, cols = in]` on the GPU (cheap to clone).
#[derive(Clone)]
pub struct GpuMat(Arc<MatInner>);

#[derive(Clone)]
struct MatInner {
    module: String,
    rows: usize,
    cols: usize,
    format: MatFormat,
    /// F32/F16/BF16 values or affine codes, `[rows, ...]`.
    weight: wgpu::Buffer,
    weight_bytes: u64,
    /// Affine: scales then biases (from `bias_offset` bytes).
    sb: Option<SbBuffer>,
    /// Rows per binding chunk.
    chunk: usize,
    /// An adapter overlay (not a base weight).
    overlay: bool,
    /// An adapted layer in spectral form: the fields above are its base, shared.
    spectral: Option<SpectralMat>,
}

/// The GPU side of [`SpectralPlan`]: the layer's tables and its shape's cos/sin tables.
#[derive(Clone)]
struct SpectralMat {
    table: wgpu::Buffer,
    table_bytes: u64,
    tw: wgpu::Buffer,
    layout: spectral::Layout,
}

#[derive(Clone)]
struct SbBuffer {
    buffer: wgpu::Buffer,
    dtype: DType,
    /// Bytes of scales (= bytes of biases).
    bytes: u64,
    bias_offset: u64,
}

impl GpuMat {
    pub fn shape(&self) -> (usize, usize) {
        (self.0.rows, self.0.cols)
    }
    pub fn format(&self) -> MatFormat {
        self.0.format
    }
    /// Rows per storage binding (fewer than `shape().0` when the weight is split).
    pub fn chunk_rows(&self) -> usize {
        self.0.chunk
    }
    pub fn is_overlay(&self) -> bool {
        self.0.overlay
    }
    /// An adapted layer kept as base + spectral ΔW ([`GpuContext::set_spectral_layers`]).
    pub fn is_spectral(&self) -> bool {
        self.0.spectral.is_some()
    }
    /// GPU bytes this matrix holds (for a spectral layer: its base, shared with the model).
    pub fn bytes(&self) -> u64 {
        self.0.weight_bytes + self.0.sb.as_ref().map_or(0, |s| s.bias_offset + s.bytes)
    }
    /// Bytes of a spectral layer's own tables (0 otherwise).
    pub fn spectral_bytes(&self) -> u64 {
        self.0.spectral.as_ref().map_or(0, |s| s.table_bytes)
    }
}

struct PendingOp {
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32, u32),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct BgKey {
    kernel: usize,
    resources: Vec<(wgpu::Buffer, u64, u64)>,
}

struct State {
    ops: Vec<PendingOp>,
    /// Host shadow of the used parameter slots.
    params: Vec<u8>,
    /// Host shadow of the used token ring.
    tokens: Vec<u32>,
    token_ring: wgpu::Buffer,
    token_cap: usize,
    bind_groups: HashMap<BgKey, wgpu::BindGroup>,
    staging: Option<(wgpu::Buffer, u64)>,
}

/// The wgpu backend (see the module notes for how work is recorded and submitted).
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    param_ring: wgpu::Buffer,
    slot: u64,
    /// Lanes per output row of the matmul kernel ([`matmul::lanes`] unless set).
    lanes: usize,
    dummy_ro: wgpu::Buffer,
    dummy_rw: wgpu::Buffer,
    state: Mutex<State>,
    /// Base matrices by (model dir, module), for overlays.
    registry: Mutex<HashMap<(PathBuf, String), Weak<MatInner>>>,
    /// Spectral layers: cos/sin tables per (out, in), and the scratch buffer shared by all
    /// layers (grown when overlays are built, never inside a decode loop).
    spectral: Mutex<SpectralShared>,
}

#[derive(Default)]
struct SpectralShared {
    tw: HashMap<(usize, usize), wgpu::Buffer>,
    scratch: Option<wgpu::Buffer>,
}

/// Seeded spectral positions `(rows, cols)` shared by layers of one shape and n.
type Positions = Arc<(Vec<u32>, Vec<u32>)>;

/// A bound resource: buffer, byte offset, byte size.
type Res<'a> = (&'a wgpu::Buffer, u64, u64);

fn whole(b: &wgpu::Buffer) -> Res<'_> {
    (b, 0, b.size())
}

fn check_len(what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(Error::InvalidArgument(format!(
            "{what}: buffer of {have} values, {need} needed"
        )));
    }
    Ok(())
}

impl GpuBackend {
    pub fn new(ctx: impl Into<Arc<GpuContext>>) -> Result<Self> {
        let ctx: Arc<GpuContext> = ctx.into();
        let align = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(256);
        let param_ring = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("op parameters"),
            size: align * PARAM_SLOTS as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let token_ring = Self::token_buffer(&ctx, TOKEN_RING)?;
        let dummy_ro = ctx.storage("dummy (read)", 16)?;
        let dummy_rw = ctx.storage("dummy (write)", 16)?;
        Ok(GpuBackend {
            param_ring,
            slot: align,
            lanes: matmul::lanes(&ctx),
            dummy_ro,
            dummy_rw,
            state: Mutex::new(State {
                ops: Vec::new(),
                params: Vec::new(),
                tokens: Vec::new(),
                token_ring,
                token_cap: TOKEN_RING,
                bind_groups: HashMap::new(),
                staging: None,
            }),
            registry: Mutex::new(HashMap::new()),
            spectral: Mutex::new(SpectralShared::default()),
            ctx,
        })
    }

    /// Use `lanes` (a power of two ≤ 256) invocations per matmul output row instead of the
    /// adapter's default (tests run the GPU layout on lavapipe this way).
    pub fn set_matmul_lanes(&mut self, lanes: usize) -> Result<()> {
        if !lanes.is_power_of_two() || lanes > matmul::WORKGROUP {
            return Err(Error::InvalidArgument(format!(
                "matmul lanes {lanes}: expected a power of two ≤ {}",
                matmul::WORKGROUP
            )));
        }
        self.lanes = lanes;
        Ok(())
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    fn token_buffer(ctx: &GpuContext, cap: usize) -> Result<wgpu::Buffer> {
        let b = ctx.storage("embed tokens", (cap as u64 * 4).next_multiple_of(16))?;
        Ok(b)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop every cached bind group (they are rebuilt on the next use).
    pub fn clear_cache(&self) {
        self.lock().bind_groups.clear();
    }

    /// Bind groups currently cached (tests check the decode loop adds none).
    pub fn cached_bind_groups(&self) -> usize {
        self.lock().bind_groups.len()
    }

    /// Replay the pending ops (and an optional copy into the staging buffer) in one submission.
    fn flush(&self, st: &mut State, copy: Option<(&wgpu::Buffer, u64, u64)>) {
        if st.ops.is_empty() && copy.is_none() {
            return;
        }
        let q = &self.ctx.queue;
        if !st.params.is_empty() {
            q.write_buffer(&self.param_ring, 0, &st.params);
        }
        if !st.tokens.is_empty() {
            q.write_buffer(&st.token_ring, 0, bytemuck::cast_slice(&st.tokens));
        }
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("fourierft step"),
            });
        if !st.ops.is_empty() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("fourierft ops"),
                timestamp_writes: None,
            });
            for op in &st.ops {
                pass.set_pipeline(&op.kernel.pipeline);
                pass.set_bind_group(0, &op.bind_group, &[]);
                pass.dispatch_workgroups(op.groups.0, op.groups.1, op.groups.2);
            }
        }
        if let (Some((src, off, bytes)), Some((staging, _))) = (copy, st.staging.as_ref()) {
            enc.copy_buffer_to_buffer(src, off, staging, 0, bytes);
        }
        q.submit([enc.finish()]);
        st.ops.clear();
        st.params.clear();
        st.tokens.clear();
    }

    /// Record one dispatch of `kernel` with `params` in the next uniform slot and `res` bound
    /// after it (binding 0 is the parameters).
    fn record(
        &self,
        st: &mut State,
        kernel: &Arc<Kernel>,
        params: &[u32],
        res: &[Res<'_>],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 {
            return Ok(());
        }
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::Gpu(format!(
                "{groups:?} workgroups exceed this device's {max} per dimension"
            )));
        }
        if st.params.len() as u64 >= self.slot * PARAM_SLOTS as u64 {
            self.flush(st, None);
        }
        let off = st.params.len() as u64;
        st.params.extend_from_slice(bytemuck::cast_slice(params));
        st.params.resize((off + self.slot) as usize, 0);
        let usize_bytes = (params.len() as u64 * 4).next_multiple_of(16);
        let mut resources = Vec::with_capacity(res.len() + 1);
        resources.push((self.param_ring.clone(), off, usize_bytes));
        for &(b, o, s) in res {
            resources.push((b.clone(), o, s));
        }
        let key = BgKey {
            kernel: Arc::as_ptr(kernel) as usize,
            resources,
        };
        if st.bind_groups.len() >= BIND_GROUP_CACHE_MAX {
            st.bind_groups.clear();
        }
        let bind_group = match st.bind_groups.get(&key) {
            Some(bg) => bg.clone(),
            None => {
                let entries: Vec<wgpu::BindGroupEntry> = key
                    .resources
                    .iter()
                    .enumerate()
                    .map(|(i, (b, o, s))| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: b,
                            offset: *o,
                            size: std::num::NonZeroU64::new(*s),
                        }),
                    })
                    .collect();
                let bg = self
                    .ctx
                    .device
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &kernel.layout,
                        entries: &entries,
                    });
                st.bind_groups.insert(key, bg.clone());
                bg
            }
        };
        st.ops.push(PendingOp {
            kernel: kernel.clone(),
            bind_group,
            groups,
        });
        Ok(())
    }

    fn elementwise(
        &self,
        op: elementwise::Op,
        params: [u32; 4],
        n: usize,
        bufs: [Option<&wgpu::Buffer>; 4],
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let kernel = elementwise::kernel(&self.ctx, op)?;
        let [a, b, c, d] = bufs;
        let res = [
            whole(a.unwrap_or(&self.dummy_ro)),
            whole(b.unwrap_or(&self.dummy_ro)),
            whole(c.unwrap_or(&self.dummy_rw)),
            whole(d.unwrap_or(&self.dummy_rw)),
        ];
        let groups = elementwise::groups(&self.ctx, n, 256);
        let mut st = self.lock();
        self.record(&mut st, &kernel, &params, &res, groups)
    }

    /// Upload `module` (one copy per tensor from the mmap).
    fn upload(&self, model: &ModelFiles, module: &str) -> Result<MatInner> {
        let (rows, cols) = model.linear_dims(module)?;
        if model.is_quantized(module) {
            let q = model.quantized(module)?;
            if q.scales.data.len() != q.biases.data.len() {
                return Err(Error::tensor(
                    q.biases.path,
                    q.biases.name,
                    format!("{} bytes like the scales", q.scales.data.len()),
                    format!("{} bytes", q.biases.data.len()),
                ));
            }
            let format = MatFormat::Affine {
                spec: q.spec,
                sb: q.dtype(),
            };
            self.make(
                module,
                rows,
                cols,
                format,
                q.weight.data,
                Some((q.scales.data, q.biases.data)),
            )
        } else {
            let w = model.weights.tensor(&format!("{module}.weight"))?;
            let format = match w.dtype {
                DType::F32 => MatFormat::F32,
                DType::F16 => MatFormat::F16,
                DType::BF16 => MatFormat::BF16,
                other => {
                    return Err(Error::tensor(
                        w.path,
                        w.name,
                        "F32, F16, BF16 or MLX-quantised U32",
                        other.to_string(),
                    ))
                }
            };
            self.make(module, rows, cols, format, w.data, None)
        }
    }

    /// A matrix from raw little-endian bytes in `format`'s layout (tests, benchmarks,
    /// synthetic weights): for affine, `sb` holds the scales and biases `[rows, cols/group]`
    /// in the format's scale dtype. The registry does not see it (overlays re-upload).
    #[allow(clippy::too_many_arguments)]
    pub fn matrix_from_bytes(
        &self,
        module: &str,
        rows: usize,
        cols: usize,
        format: MatFormat,
        weight: &[u8],
        scales: Option<&[u8]>,
        biases: Option<&[u8]>,
    ) -> Result<GpuMat> {
        let sb = match (format, scales, biases) {
            (MatFormat::Affine { spec, sb }, Some(s), Some(b)) => {
                let need = rows * (cols / spec.group_size) * sb.size_in_bytes();
                if s.len() != need || b.len() != need {
                    return Err(Error::InvalidArgument(format!(
                        "{module}: scales/biases of {} and {} bytes, {need} expected",
                        s.len(),
                        b.len()
                    )));
                }
                Some((s, b))
            }
            (MatFormat::Affine { .. }, _, _) => {
                return Err(Error::InvalidArgument(format!(
                    "{module}: an affine matrix needs scales and biases"
                )))
            }
            _ => None,
        };
        Ok(GpuMat(Arc::new(
            self.make(module, rows, cols, format, weight, sb)?,
        )))
    }

    /// One copy of each tensor into GPU buffers; scales and biases share one buffer.
    fn make(
        &self,
        module: &str,
        rows: usize,
        cols: usize,
        format: MatFormat,
        weight: &[u8],
        sb: Option<(&[u8], &[u8])>,
    ) -> Result<MatInner> {
        let ctx = &self.ctx;
        if let MatFormat::Affine { spec, .. } = format {
            if cols % spec.group_size != 0 || sb.is_none() {
                return Err(Error::InvalidArgument(format!(
                    "{module}: {cols} columns with group {} (and scales/biases needed)",
                    spec.group_size
                )));
            }
        }
        let expect = format.row_bytes(cols) * rows as u64;
        if weight.len() as u64 != expect {
            return Err(Error::InvalidArgument(format!(
                "{module}: {} weight bytes, {expect} expected for {rows}x{cols}",
                weight.len()
            )));
        }
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let buffer = ctx.upload_bytes(module, weight, usage)?;
        let sb = match (sb, format) {
            (Some((s, b)), MatFormat::Affine { sb: dtype, .. }) => {
                let bias_offset = (s.len() as u64).next_multiple_of(16);
                let total = pad4(bias_offset + b.len() as u64).max(4);
                let sbuf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(module),
                    size: total,
                    usage,
                    mapped_at_creation: true,
                });
                {
                    let mut view = sbuf
                        .slice(..)
                        .get_mapped_range_mut()
                        .map_err(|e| Error::Gpu(format!("{module}: cannot map for upload: {e}")))?;
                    view.slice(..s.len()).copy_from_slice(s);
                    view.slice(bias_offset as usize..bias_offset as usize + b.len())
                        .copy_from_slice(b);
                }
                sbuf.unmap();
                Some(SbBuffer {
                    buffer: sbuf,
                    dtype,
                    bytes: s.len() as u64,
                    bias_offset,
                })
            }
            _ => None,
        };
        self.finish(module, rows, cols, format, buffer, expect, sb, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        module: &str,
        rows: usize,
        cols: usize,
        format: MatFormat,
        weight: wgpu::Buffer,
        weight_bytes: u64,
        sb: Option<SbBuffer>,
        overlay: bool,
    ) -> Result<MatInner> {
        let max = self.ctx.max_binding();
        if let Some(s) = &sb {
            if s.bias_offset + s.bytes > max {
                return Err(Error::Gpu(format!(
                    "{module}: scales and biases ({} bytes) exceed one storage binding ({max} bytes)",
                    s.bias_offset + s.bytes
                )));
            }
        }
        let chunk = chunk_rows(
            rows,
            &[format.row_bytes(cols)],
            max,
            self.ctx.limits.min_storage_buffer_offset_alignment as u64,
            1,
        )
        .ok_or_else(|| {
            Error::Gpu(format!(
                "{module}: one row of {cols} values does not fit a storage binding"
            ))
        })?;
        Ok(MatInner {
            module: module.to_string(),
            rows,
            cols,
            format,
            weight,
            weight_bytes,
            sb,
            chunk: chunk.max(1),
            overlay,
            spectral: None,
        })
    }

    /// The base layer `module` as [`apply`] wants it. Affine biases get a temporary buffer of
    /// their own (copied on the GPU from the shared scales+biases buffer) for the duration of
    /// the apply; scales are read from the start of the shared buffer in place.
    fn layer_for_apply(
        &self,
        model: &ModelFiles,
        module: &str,
        enc: &mut wgpu::CommandEncoder,
    ) -> Result<GpuLayer> {
        let key = (model.dir.clone(), module.to_string());
        let found = self
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .and_then(|w| w.upgrade());
        let Some(m) = found else {
            return GpuLayer::upload(&self.ctx, model, module);
        };
        let tensor =
            |buffer: &wgpu::Buffer, dtype: DType, shape: Vec<usize>, bytes: u64| GpuTensor {
                buffer: buffer.clone(),
                dtype,
                shape,
                bytes,
            };
        let (format, wdtype) = match m.format {
            MatFormat::F32 => (WeightFormat::F32, DType::F32),
            MatFormat::F16 => (WeightFormat::F16, DType::F16),
            MatFormat::BF16 => (WeightFormat::BF16, DType::BF16),
            MatFormat::Affine { spec, sb } => (WeightFormat::Affine { spec, sb }, DType::U32),
        };
        let (scales, biases) = match &m.sb {
            Some(s) => {
                let shape = match m.format {
                    MatFormat::Affine { spec, .. } => vec![m.rows, m.cols / spec.group_size],
                    _ => Vec::new(),
                };
                let tmp = self.ctx.storage("biases (apply)", s.bytes)?;
                enc.copy_buffer_to_buffer(&s.buffer, s.bias_offset, &tmp, 0, pad4(s.bytes));
                (
                    Some(tensor(&s.buffer, s.dtype, shape.clone(), s.bytes)),
                    Some(tensor(&tmp, s.dtype, shape, s.bytes)),
                )
            }
            None => (None, None),
        };
        Ok(GpuLayer {
            module: module.to_string(),
            rows: m.rows,
            cols: m.cols,
            format,
            weight: tensor(&m.weight, wdtype, vec![m.rows, m.cols], m.weight_bytes),
            scales,
            biases,
        })
    }

    /// Merged overlays `deq(W) + ΔW` built by [`apply::apply`] (the default), rewriting
    /// `reuse`d overlays in place.
    fn merged_overlays(
        &self,
        model: &ModelFiles,
        adapter: &Adapter,
        fits: &[LayerFit],
        reuse: Vec<GpuMat>,
    ) -> Result<Vec<GpuMat>> {
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("overlay bases"),
            });
        let layers = fits
            .iter()
            .map(|f| self.layer_for_apply(model, &f.module, &mut enc))
            .collect::<Result<Vec<_>>>()?;
        self.ctx.queue.submit([enc.finish()]);
        let reuse: Vec<Overlay> = reuse
            .into_iter()
            .filter(|m| m.0.overlay && m.0.spectral.is_none())
            .map(|m| Overlay {
                module: m.0.module.clone(),
                buffer: m.0.weight.clone(),
                f16: m.0.format == MatFormat::F16,
                rows: m.0.rows,
                cols: m.0.cols,
            })
            .collect();
        let overlays = apply::apply(&self.ctx, &layers, adapter, fits, reuse)?;
        overlays
            .into_iter()
            .map(|o| {
                let format = if o.f16 {
                    MatFormat::F16
                } else {
                    MatFormat::F32
                };
                let bytes = o.bytes();
                Ok(GpuMat(Arc::new(self.finish(
                    &o.module, o.rows, o.cols, format, o.buffer, bytes, None, true,
                )?)))
            })
            .collect()
    }

    /// One adapted layer in spectral form: `base` (shared) plus the layer's tables; creates the
    /// shape's cos/sin tables and grows the shared scratch buffer when needed.
    fn spectral_layer(
        &self,
        adapter: &Adapter,
        fit: &LayerFit,
        base: &GpuMat,
        seeded: &mut HashMap<(usize, usize, usize), Positions>,
    ) -> Result<GpuMat> {
        let m = adapter.require_module(&fit.module)?;
        let (d1, d2) = (fit.out_features, fit.in_features);
        let pos = match (&m.positions, seeded.get(&(d1, d2, m.n()))) {
            (None, Some(p)) => p.clone(),
            _ => {
                let p = Arc::new(adapter.positions(m, d1, d2)?);
                if m.positions.is_none() {
                    seeded.insert((d1, d2, m.n()), p.clone());
                }
                p
            }
        };
        let plan = SpectralPlan::new(d1, d2, &pos.0, &pos.1, &m.coeffs, adapter.config.scaling)?;
        let table_bytes = plan.table.len() as u64 * 4;
        let max = self.ctx.max_binding();
        let tw_bytes = 8 * (d1 + d2) as u64;
        if table_bytes > max || tw_bytes > max {
            return Err(Error::Gpu(format!(
                "{}: spectral tables of {table_bytes} and {tw_bytes} bytes exceed one storage \
                 binding ({max} bytes)",
                fit.module
            )));
        }
        let table = self.ctx.upload_bytes(
            "spectral layer tables",
            bytemuck::cast_slice(&plan.table),
            wgpu::BufferUsages::STORAGE,
        )?;
        let mut sh = self.spectral.lock().unwrap_or_else(|p| p.into_inner());
        let tw = match sh.tw.get(&(d1, d2)) {
            Some(t) => t.clone(),
            None => {
                let t = self.ctx.upload_bytes(
                    "spectral cos/sin tables",
                    bytemuck::cast_slice(&spectral::shape_tables(d1, d2)),
                    wgpu::BufferUsages::STORAGE,
                )?;
                sh.tw.insert((d1, d2), t.clone());
                t
            }
        };
        let per_row = plan.layout.scratch_per_row() as u64 * 4;
        let need = (spectral::SCRATCH_ROWS as u64 * per_row)
            .min(max / 16 * 16)
            .max(per_row);
        if need > max {
            return Err(Error::Gpu(format!(
                "{}: one row of spectral scratch ({need} bytes) exceeds one storage binding",
                fit.module
            )));
        }
        if sh.scratch.as_ref().is_none_or(|b| b.size() < need) {
            sh.scratch = Some(self.ctx.storage("spectral scratch", need)?);
        }
        let mut inner = base.0.as_ref().clone();
        inner.module = fit.module.clone();
        inner.overlay = false;
        inner.spectral = Some(SpectralMat {
            table,
            table_bytes,
            tw,
            layout: plan.layout,
        });
        Ok(GpuMat(Arc::new(inner)))
    }

    /// `out += ΔW x` for a spectral layer, after its base matmul was recorded.
    fn record_spectral(
        &self,
        st: &mut State,
        m: &MatInner,
        sp: &SpectralMat,
        x: &GpuBuf,
        out: &GpuBuf,
        rows: usize,
    ) -> Result<()> {
        let scratch = self
            .spectral
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .scratch
            .clone()
            .ok_or_else(|| Error::Gpu("spectral layer without a scratch buffer".into()))?;
        let per_row = sp.layout.scratch_per_row();
        let chunk = ((scratch.size() / 4) as usize / per_row)
            .min(self.ctx.limits.max_compute_workgroups_per_dimension as usize);
        if chunk == 0 {
            return Err(Error::Gpu(format!(
                "{}: the spectral scratch buffer holds no row",
                m.module
            )));
        }
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk.min(rows - r0);
            let p = sp.layout.params(r0, n);
            for d in sp.layout.dispatches(n) {
                let k = spectral::kernel(&self.ctx, d.stage)?;
                let src = match d.src {
                    spectral::Src::X => &x.buffer,
                    spectral::Src::Unused => &self.dummy_ro,
                    spectral::Src::Scratch => &scratch,
                };
                let dst = if d.to_out { &out.buffer } else { &scratch };
                self.record(
                    st,
                    &k,
                    &p,
                    &[whole(&sp.table), whole(&sp.tw), whole(src), whole(dst)],
                    d.groups,
                )?;
            }
            r0 += n;
        }
        Ok(())
    }

    /// Bindings and params of W rows `[r0, r0 + n)`.
    fn weight_range(m: &MatInner, r0: usize, n: usize) -> (u64, u64) {
        let rb = m.format.row_bytes(m.cols);
        let size = pad4(n as u64 * rb).min(m.weight.size() - r0 as u64 * rb);
        (r0 as u64 * rb, size)
    }

    fn base_params(m: &MatInner) -> matmul::Params {
        let (row_words, gpr, sb_bias) = match (m.format, &m.sb) {
            (MatFormat::Affine { spec, sb }, Some(s)) => (
                (m.cols * spec.bits as usize / 32) as u32,
                (m.cols / spec.group_size) as u32,
                (s.bias_offset / sb.size_in_bytes() as u64) as u32,
            ),
            _ => (0, 0, 0),
        };
        matmul::Params {
            k: m.cols as u32,
            row_words,
            gpr,
            sb_bias,
            ..Default::default()
        }
    }
}

impl Backend for GpuBackend {
    type Buf = GpuBuf;
    type Mat = GpuMat;

    fn name(&self) -> String {
        format!("wgpu ({}, {:?})", self.ctx.info.name, self.ctx.info.backend)
    }

    fn buffer(&self, len: usize) -> Result<GpuBuf> {
        // wgpu zero-initialises new buffers. Sizes are multiples of 16 bytes: kernels read
        // activations as vec4.
        Ok(GpuBuf {
            buffer: self
                .ctx
                .storage("activations", (len as u64 * 4).next_multiple_of(16))?,
            len,
        })
    }

    fn vector(&self, data: &[f32]) -> Result<GpuBuf> {
        let mut padded = data.to_vec();
        padded.resize(data.len().next_multiple_of(4), 0.0);
        Ok(GpuBuf {
            buffer: self.ctx.upload_bytes(
                "vector",
                bytemuck::cast_slice(&padded),
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            )?,
            len: data.len(),
        })
    }

    fn matrix(&self, model: &ModelFiles, module: &str) -> Result<GpuMat> {
        let m = Arc::new(self.upload(model, module)?);
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert((model.dir.clone(), module.to_string()), Arc::downgrade(&m));
        Ok(GpuMat(m))
    }

    fn overlays(
        &self,
        model: &ModelFiles,
        adapter: &Adapter,
        fits: &[LayerFit],
        bases: &[&GpuMat],
        reuse: Vec<GpuMat>,
    ) -> Result<Vec<GpuMat>> {
        {
            // Work recorded so far reads the overlays about to be rewritten: submit it first.
            let mut st = self.lock();
            self.flush(&mut st, None);
            st.bind_groups.clear();
        }
        if !self.ctx.spectral_layers() {
            return self.merged_overlays(model, adapter, fits, reuse);
        }
        if bases.len() != fits.len() {
            return Err(Error::InvalidArgument(format!(
                "overlays: {} layers but {} base matrices",
                fits.len(),
                bases.len()
            )));
        }
        // Layers stored [out, in] keep their base and ΔW in spectral form; Conv1D layers
        // stored [in, out] get a merged overlay.
        let is_spectral = |fit: &LayerFit, base: &GpuMat| {
            !fit.transposed && base.shape() == (fit.out_features, fit.in_features)
        };
        let merged_fits: Vec<LayerFit> = fits
            .iter()
            .zip(bases)
            .filter(|(f, b)| !is_spectral(f, b))
            .map(|(f, _)| f.clone())
            .collect();
        let mut merged = if merged_fits.is_empty() {
            Vec::new()
        } else {
            self.merged_overlays(model, adapter, &merged_fits, reuse)?
        }
        .into_iter();
        let mut seeded = HashMap::new();
        let mut out = Vec::with_capacity(fits.len());
        for (fit, &base) in fits.iter().zip(bases) {
            if is_spectral(fit, base) {
                out.push(self.spectral_layer(adapter, fit, base, &mut seeded)?);
            } else {
                out.push(merged.next().ok_or_else(|| {
                    Error::InvalidArgument("overlays: a merged overlay is missing".into())
                })?);
            }
        }
        Ok(out)
    }

    fn overlay_bytes(&self, overlay: &GpuMat) -> u64 {
        if overlay.is_spectral() {
            overlay.spectral_bytes()
        } else {
            overlay.bytes()
        }
    }

    fn overlay_read_bytes(&self, overlay: &GpuMat) -> u64 {
        overlay.bytes() + overlay.spectral_bytes()
    }

    fn read(&self, buf: &GpuBuf, offset: usize, len: usize) -> Result<Vec<f32>> {
        check_len("read", buf.len, offset + len)?;
        let mut st = self.lock();
        if len == 0 {
            self.flush(&mut st, None);
            return Ok(Vec::new());
        }
        let bytes = len as u64 * 4;
        if st.staging.as_ref().is_none_or(|(_, cap)| *cap < bytes) {
            let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            st.staging = Some((staging, bytes));
        }
        self.flush(&mut st, Some((&buf.buffer, offset as u64 * 4, bytes)));
        let Some((staging, _)) = st.staging.as_ref() else {
            return Err(Error::Gpu("read-back buffer missing".into()));
        };
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("read-back: the map callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    fn sync(&self) -> Result<()> {
        {
            let mut st = self.lock();
            self.flush(&mut st, None);
        }
        self.ctx.wait()
    }

    fn embed(&self, table: &GpuMat, tokens: &[u32], out: &GpuBuf) -> Result<()> {
        let m = &table.0;
        let (vocab, dim) = (m.rows, m.cols);
        check_len("embed", out.len, tokens.len() * dim)?;
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {t} is outside the vocabulary of {vocab}"
            )));
        }
        if tokens.is_empty() {
            return Ok(());
        }
        let kernel = matmul::embed_kernel(&self.ctx, m.format)?;
        let mut st = self.lock();
        if st.tokens.len() + tokens.len() > st.token_cap {
            self.flush(&mut st, None);
            if tokens.len() > st.token_cap {
                let cap = tokens.len().next_power_of_two();
                st.token_ring = Self::token_buffer(&self.ctx, cap)?;
                st.token_cap = cap;
                st.bind_groups.clear();
            }
        }
        let tok0 = st.tokens.len();
        st.tokens.extend_from_slice(tokens);
        let ring = st.token_ring.clone();
        let mut p = Self::base_params(m);
        p.rows = tokens.len() as u32;
        p.out_stride = dim as u32;
        p.tok0 = tok0 as u32;
        let groups = elementwise::groups(&self.ctx, tokens.len() * dim, 256);
        let sb = m.sb.as_ref().map_or(&self.dummy_ro, |s| &s.buffer);
        let mut r0 = 0;
        while r0 < vocab {
            let n = m.chunk.min(vocab - r0);
            // Skip chunks no token falls in.
            if tokens
                .iter()
                .any(|&t| (t as usize) >= r0 && (t as usize) < r0 + n)
            {
                p.o0 = r0 as u32;
                p.n_out = n as u32;
                p.sb_row0 = r0 as u32;
                let (wo, ws) = Self::weight_range(m, r0, n);
                self.record(
                    &mut st,
                    &kernel,
                    &p.words(),
                    &[
                        whole(&ring),
                        (&m.weight, wo, ws),
                        whole(sb),
                        whole(&out.buffer),
                    ],
                    groups,
                )?;
            }
            r0 += n;
        }
        Ok(())
    }

    fn matmul(&self, x: &GpuBuf, w: &GpuMat, out: &GpuBuf, rows: usize) -> Result<()> {
        let m = &w.0;
        let (n_out, n_in) = (m.rows, m.cols);
        check_len("matmul input", x.len, rows * n_in)?;
        check_len("matmul output", out.len, rows * n_out)?;
        if rows == 0 {
            return Ok(());
        }
        let kernel = matmul::kernel(&self.ctx, m.format, rows, self.lanes)?;
        let mut p = Self::base_params(m);
        p.rows = rows as u32;
        p.out_stride = n_out as u32;
        let sb = m.sb.as_ref().map_or(&self.dummy_ro, |s| &s.buffer);
        let mut st = self.lock();
        let mut r0 = 0;
        while r0 < n_out {
            let n = m.chunk.min(n_out - r0);
            p.o0 = r0 as u32;
            p.n_out = n as u32;
            p.sb_row0 = r0 as u32;
            let (wo, ws) = Self::weight_range(m, r0, n);
            self.record(
                &mut st,
                &kernel,
                &p.words(),
                &[
                    whole(&x.buffer),
                    (&m.weight, wo, ws),
                    whole(sb),
                    whole(&out.buffer),
                ],
                matmul::groups(n, rows, self.lanes),
            )?;
            r0 += n;
        }
        if let Some(sp) = &m.spectral {
            self.record_spectral(&mut st, m, sp, x, out, rows)?;
        }
        Ok(())
    }

    fn add_bias(&self, x: &GpuBuf, bias: &GpuBuf, rows: usize, dim: usize) -> Result<()> {
        check_len("bias", bias.len, dim)?;
        check_len("add_bias", x.len, rows * dim)?;
        self.elementwise(
            elementwise::Op::AddBias,
            elementwise::params(rows * dim, dim, 0, 0),
            rows * dim,
            [Some(&bias.buffer), None, Some(&x.buffer), None],
        )
    }

    fn rmsnorm(
        &self,
        x: &GpuBuf,
        weight: &GpuBuf,
        out: &GpuBuf,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()> {
        check_len("rmsnorm input", x.len, rows * dim)?;
        check_len("rmsnorm weight", weight.len, dim)?;
        check_len("rmsnorm", out.len, rows * dim)?;
        let kernel = norm::kernel(&self.ctx)?;
        let mut st = self.lock();
        self.record(
            &mut st,
            &kernel,
            &norm::params(rows, dim, eps),
            &[whole(&x.buffer), whole(&weight.buffer), whole(&out.buffer)],
            (rows as u32, 1, 1),
        )
    }

    fn rope(
        &self,
        x: &GpuBuf,
        inv_freq: &GpuBuf,
        rows: usize,
        heads: usize,
        head_dim: usize,
        pos0: usize,
    ) -> Result<()> {
        check_len("rope", x.len, rows * heads * head_dim)?;
        check_len("rope inv_freq", inv_freq.len, head_dim / 2)?;
        let kernel = rope::kernel(&self.ctx)?;
        let groups = elementwise::groups(&self.ctx, rows * heads * (head_dim / 2), rope::GROUP);
        let mut st = self.lock();
        self.record(
            &mut st,
            &kernel,
            &rope::params(rows, heads, head_dim, pos0),
            &[whole(&x.buffer), whole(&inv_freq.buffer)],
            groups,
        )
    }

    fn kv_store(
        &self,
        k: &GpuBuf,
        v: &GpuBuf,
        k_cache: &GpuBuf,
        v_cache: &GpuBuf,
        rows: usize,
        kv_dim: usize,
        pos0: usize,
    ) -> Result<()> {
        check_len("kv cache", k_cache.len, (pos0 + rows) * kv_dim)?;
        check_len("kv cache", v_cache.len, (pos0 + rows) * kv_dim)?;
        check_len("kv_store k", k.len, rows * kv_dim)?;
        check_len("kv_store v", v.len, rows * kv_dim)?;
        self.elementwise(
            elementwise::Op::KvStore,
            elementwise::params(rows * kv_dim, kv_dim, 0, pos0 * kv_dim),
            rows * kv_dim,
            [
                Some(&k.buffer),
                Some(&v.buffer),
                Some(&k_cache.buffer),
                Some(&v_cache.buffer),
            ],
        )
    }

    fn attention(
        &self,
        q: &GpuBuf,
        k_cache: &GpuBuf,
        v_cache: &GpuBuf,
        out: &GpuBuf,
        rows: usize,
        pos0: usize,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        if kv_heads == 0 || heads % kv_heads != 0 || head_dim > attention::MAX_HEAD_DIM {
            return Err(Error::InvalidArgument(format!(
                "attention: {heads} heads over {kv_heads} kv heads of dim {head_dim} \
                 (need heads divisible by kv_heads, head_dim ≤ {})",
                attention::MAX_HEAD_DIM
            )));
        }
        let kv_dim = kv_heads * head_dim;
        check_len("attention q", q.len, rows * heads * head_dim)?;
        check_len("attention out", out.len, rows * heads * head_dim)?;
        check_len("attention k cache", k_cache.len, (pos0 + rows) * kv_dim)?;
        check_len("attention v cache", v_cache.len, (pos0 + rows) * kv_dim)?;
        let kernel = attention::kernel(&self.ctx)?;
        let mut st = self.lock();
        self.record(
            &mut st,
            &kernel,
            &attention::params(rows, pos0, heads, kv_heads, head_dim),
            &[
                whole(&q.buffer),
                whole(&k_cache.buffer),
                whole(&v_cache.buffer),
                whole(&out.buffer),
            ],
            (heads as u32, rows as u32, 1),
        )
    }

    fn silu_mul(&self, gate: &GpuBuf, up: &GpuBuf, out: &GpuBuf, len: usize) -> Result<()> {
        check_len("silu_mul gate", gate.len, len)?;
        check_len("silu_mul up", up.len, len)?;
        check_len("silu_mul", out.len, len)?;
        self.elementwise(
            elementwise::Op::SiluMul,
            elementwise::params(len, 0, 0, 0),
            len,
            [
                Some(&gate.buffer),
                Some(&up.buffer),
                Some(&out.buffer),
                None,
            ],
        )
    }

    fn add(&self, x: &GpuBuf, y: &GpuBuf, len: usize) -> Result<()> {
        check_len("add", x.len, len)?;
        check_len("add", y.len, len)?;
        if x.buffer == y.buffer {
            return Err(Error::InvalidArgument(
                "add: x and y are the same buffer".into(),
            ));
        }
        self.elementwise(
            elementwise::Op::Add,
            elementwise::params(len, 0, 0, 0),
            len,
            [Some(&y.buffer), None, Some(&x.buffer), None],
        )
    }

    fn copy(
        &self,
        src: &GpuBuf,
        src_off: usize,
        dst: &GpuBuf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        check_len("copy source", src.len, src_off + len)?;
        check_len("copy", dst.len, dst_off + len)?;
        let params = elementwise::params(len, 0, src_off, dst_off);
        if src.buffer == dst.buffer {
            if src_off < dst_off + len && dst_off < src_off + len && src_off != dst_off {
                return Err(Error::InvalidArgument(
                    "copy: overlapping ranges of one buffer".into(),
                ));
            }
            if src_off == dst_off {
                return Ok(());
            }
            return self.elementwise(
                elementwise::Op::CopySelf,
                params,
                len,
                [None, None, Some(&dst.buffer), None],
            );
        }
        self.elementwise(
            elementwise::Op::Copy,
            params,
            len,
            [Some(&src.buffer), None, Some(&dst.buffer), None],
        )
    }
}
