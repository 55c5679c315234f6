//! The only place that asks for a wgpu instance, adapter and device.
//!
//! Headless. The instance honours wgpu's environment variables (`WGPU_BACKEND`,
//! `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`); an app that already owns a device hands it in with
//! [`GpuContext::from_device`]. We request only what the kernels need, scaled to the adapter:
//! phones often stop at 128 MiB per storage binding and 16 KiB of workgroup memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Storage bytes per binding we design for (ARCHITECTURE.md §5); larger adapters may offer more.
pub const DESIGN_MAX_BINDING: u64 = 128 << 20;

/// How a kernel binds one resource (all kernels use bind group 0, bindings 0..n in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    Uniform,
    StorageRead,
    StorageReadWrite,
}

/// A compute pipeline and its bind group layout.
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// A compiled pipeline is identified by its kernel (shader file + entry point) and overrides.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    overrides: Vec<(&'static str, u64)>,
}

/// A WGSL source file from `shaders/`, embedded at build time.
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    pub name: &'static str,
    pub code: &'static str,
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Limits the device was created with (what kernels may rely on).
    pub limits: wgpu::Limits,
    /// Features the adapter offers (we request none of the optional ones yet).
    pub adapter_features: wgpu::Features,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Kernel>>>,
    /// The first error wgpu reported outside an error scope (wgpu's default is to panic).
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Build f16 overlays for F16/BF16/quantised bases (half the memory) instead of f32 (what
    /// PEFT computes: greedy outputs equal transformers'). Off by default.
    f16_overlays: std::sync::atomic::AtomicBool,
    /// Keep adapted layers as base + spectral ΔW (O(n) swaps) instead of merged overlays.
    /// Off by default; `FOURIERFT_GPU_SPECTRAL=1` turns it on for contexts created afterwards.
    spectral_layers: std::sync::atomic::AtomicBool,
}

/// What `fourierft inspect --gpu` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuSummary {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub shader_f16_available: bool,
    pub subgroups_available: bool,
    /// Optional features the kernels use (none yet: the portable path runs everywhere).
    pub features_in_use: Vec<String>,
}

impl GpuContext {
    /// Find an adapter and create a device (headless). Fails with [`Error::Gpu`] when the
    /// machine has no usable adapter.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    pub async fn new_async() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        };
        let adapter = instance.request_adapter(&options).await.map_err(|e| {
            Error::Gpu(format!(
                "no GPU adapter found ({e}); on Linux without a GPU install Mesa's lavapipe \
                 (apt-get install mesa-vulkan-drivers libvulkan1), or use --backend cpu"
            ))
        })?;
        let info = adapter.get_info();
        let a = adapter.limits();
        if !adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(Error::Gpu(format!(
                "adapter '{}' has no compute shaders",
                info.name
            )));
        }
        // Start from the portable baseline and raise only what our kernels use, to what the
        // adapter offers.
        let mut limits = wgpu::Limits::downlevel_defaults();
        limits.max_storage_buffer_binding_size = a.max_storage_buffer_binding_size;
        limits.max_buffer_size = a.max_buffer_size;
        limits.max_storage_buffers_per_shader_stage = a.max_storage_buffers_per_shader_stage.min(8);
        limits.max_compute_workgroup_storage_size =
            a.max_compute_workgroup_storage_size.min(32 << 10);
        limits.max_compute_workgroups_per_dimension = a.max_compute_workgroups_per_dimension;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("fourierft"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("adapter '{}' refused a device: {e}", info.name)))?;
        Ok(Self::assemble(
            device,
            queue,
            info,
            limits,
            adapter.features(),
        ))
    }

    /// Use a device the app already owns. `info` and `adapter_features` describe its adapter.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        adapter_features: wgpu::Features,
    ) -> Self {
        let limits = device.limits();
        Self::assemble(device, queue, info, limits, adapter_features)
    }

    fn assemble(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
        adapter_features: wgpu::Features,
    ) -> Self {
        let uncaptured: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        GpuContext {
            device,
            queue,
            info,
            limits,
            adapter_features,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            f16_overlays: std::sync::atomic::AtomicBool::new(false),
            spectral_layers: std::sync::atomic::AtomicBool::new(
                std::env::var("FOURIERFT_GPU_SPECTRAL").is_ok_and(|v| v == "1"),
            ),
        }
    }

    /// Choose f16 overlays (half the memory; ΔW merged with f16 rounding) or f32 (the default).
    pub fn set_f16_overlays(&self, on: bool) {
        self.f16_overlays
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn f16_overlays(&self) -> bool {
        self.f16_overlays.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keep adapted `[out, in]` layers in spectral form: the base matrix plus O(n) tables, with
    /// `ΔW x` computed by inverse DFTs after the base matmul, so building (swapping) an
    /// adapter uploads O(n) bytes per layer instead of writing an out×in overlay. Off by
    /// default (merged overlays); read when overlays are built.
    pub fn set_spectral_layers(&self, on: bool) {
        self.spectral_layers
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn spectral_layers(&self) -> bool {
        self.spectral_layers
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Live GPU buffers on this device and their bytes (wgpu's internal counters), to check
    /// that steady-state work allocates nothing.
    pub fn live_buffers(&self) -> (i64, i64) {
        let c = self.device.get_internal_counters();
        (
            c.hal.buffers.read() as i64,
            c.hal.buffer_memory.read() as i64,
        )
    }

    /// Largest byte range one storage binding may cover on this device.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    pub fn summary(&self) -> GpuSummary {
        let l = &self.limits;
        GpuSummary {
            adapter: self.info.name.clone(),
            backend: format!("{:?}", self.info.backend),
            device_type: format!("{:?}", self.info.device_type),
            driver: self.info.driver.clone(),
            driver_info: self.info.driver_info.clone(),
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            shader_f16_available: self.adapter_features.contains(wgpu::Features::SHADER_F16),
            subgroups_available: self.adapter_features.contains(wgpu::Features::SUBGROUP),
            features_in_use: Vec::new(),
        }
    }

    /// The compute pipeline for `entry` of `shader` with these override constants, compiled
    /// once and cached (keyed by kernel and overrides). The layout is explicit (`bindings` in
    /// order) so a binding that an override disables still has a slot.
    pub fn kernel(
        &self,
        shader: ShaderSource,
        entry: &'static str,
        bindings: &[Binding],
        overrides: &[(&'static str, u32)],
    ) -> Result<Arc<Kernel>> {
        let key = PipelineKey {
            shader: shader.name,
            entry,
            overrides: overrides.iter().map(|&(k, v)| (k, v as u64)).collect(),
        };
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let scopes = [
            self.device.push_error_scope(wgpu::ErrorFilter::Validation),
            self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
        ];
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let module = modules.entry(shader.name).or_insert_with(|| {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.code.into()),
                })
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b {
                        Binding::Uniform => wgpu::BufferBindingType::Uniform,
                        Binding::StorageRead => {
                            wgpu::BufferBindingType::Storage { read_only: true }
                        }
                        Binding::StorageReadWrite => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(entry),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let constants: Vec<(&str, f64)> = overrides.iter().map(|&(k, v)| (k, v as f64)).collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        for scope in scopes.into_iter().rev() {
            if let Some(e) = pollster::block_on(scope.pop()) {
                modules.remove(shader.name);
                return Err(Error::Gpu(format!(
                    "{} (entry '{entry}', overrides {overrides:?}) does not compile on '{}': {e}",
                    shader.name, self.info.name
                )));
            }
        }
        let k = Arc::new(Kernel { pipeline, layout });
        cache.insert(key, k.clone());
        Ok(k)
    }

    /// Bind `buffers` (whole buffers or ranges) in binding order and record one dispatch.
    pub fn dispatch(
        &self,
        enc: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        resources: &[wgpu::BindingResource<'_>],
        groups: (u32, u32, u32),
    ) {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// Number of distinct pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Submit and wait for all work (used by tests, benchmarks and read-back).
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.take_error()
    }

    /// The first error wgpu reported outside an error scope since the last call, as an Err.
    pub fn take_error(&self) -> Result<()> {
        match self
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }
}
