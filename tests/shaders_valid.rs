//! Every WGSL kernel in `shaders/` parses and validates with naga (no optional features),
//! is the one the crate embeds, and stays within the binding and workgroup budgets we design
//! for (phones, `wgpu::Limits::downlevel_defaults()`-like).

use std::collections::BTreeMap;
use std::path::Path;

use fourierft::backend::wgpu::kernels::ALL_SHADERS;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ShaderStage};

/// What wgpu grants a device with no optional features and WebGPU-compliant downlevel flags
/// (`wgpu_naga_bridge::features_to_naga_capabilities(Features::empty(), compliant())`): only
/// `SHADER_FLOAT16_IN_FLOAT32`, i.e. the core WGSL builtins `pack2x16float`, `unpack2x16float`
/// and `quantizeToF16` (wgpu sets `DownlevelFlags::SHADER_F16_IN_F32` on Vulkan, Metal, DX12
/// and GLES; only llvmpipe without `SHADER_F16` lacks it). No f16, no subgroups.
const BASELINE_CAPS: Capabilities = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
const MAX_INVOCATIONS: u32 = 256;
const MAX_WORKGROUP_DIMS: [u32; 3] = [256, 256, 64];
const MAX_WORKGROUP_BYTES: u32 = 16384;
const MAX_STORAGE_BUFFERS: usize = 4;
const MAX_UNIFORM_BUFFERS: usize = 12;

/// Parses, validates and budget-checks one shader; `Err` lists every problem, naming `name`.
fn check_shader(name: &str, source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}: WGSL parse error:\n{}", e.emit_to_string(source)))?;
    let info = Validator::new(ValidationFlags::all(), BASELINE_CAPS)
        .validate(&module)
        .map_err(|e| {
            format!(
                "{name}: naga validation failed with only the baseline capabilities (a kernel \
                 must not need optional features such as f16 or subgroups):\n{}",
                e.emit_to_string(source)
            )
        })?;
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("{name}: cannot lay out types: {e}"))?;

    let mut problems = Vec::new();

    // Bindings of the whole module: group 0, indices unique and contiguous from 0.
    let mut bindings = BTreeMap::new();
    for (_, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        let var_name = var.name.as_deref().unwrap_or("?");
        if rb.group != 0 {
            problems.push(format!("`{var_name}` is in @group({}), not 0", rb.group));
        }
        if let Some(other) = bindings.insert((rb.group, rb.binding), var_name) {
            problems.push(format!(
                "`{var_name}` and `{other}` share @group({}) @binding({})",
                rb.group, rb.binding
            ));
        }
    }
    let indices: Vec<u32> = bindings.keys().filter(|k| k.0 == 0).map(|k| k.1).collect();
    if indices.iter().copied().ne(0..indices.len() as u32) {
        problems.push(format!(
            "group 0 bindings {indices:?} are not 0..{}",
            indices.len()
        ));
    }

    // Per compute entry point: workgroup size, workgroup memory, buffers it uses.
    for (i, ep) in module.entry_points.iter().enumerate() {
        if ep.stage != ShaderStage::Compute {
            continue;
        }
        let ep_name = &ep.name;
        if ep.workgroup_size_overrides.is_some() {
            problems.push(format!(
                "entry `{ep_name}`: override-sized workgroup, budget unchecked"
            ));
        }
        let [x, y, z] = ep.workgroup_size;
        if x * y * z > MAX_INVOCATIONS
            || x > MAX_WORKGROUP_DIMS[0]
            || y > MAX_WORKGROUP_DIMS[1]
            || z > MAX_WORKGROUP_DIMS[2]
        {
            problems.push(format!(
                "entry `{ep_name}`: workgroup size ({x}, {y}, {z}) exceeds {MAX_INVOCATIONS} \
                 invocations or {MAX_WORKGROUP_DIMS:?}"
            ));
        }
        let fn_info = info.get_entry_point(i);
        let (mut wg_bytes, mut storage, mut uniform) = (0u32, 0, 0);
        for (handle, var) in module.global_variables.iter() {
            if fn_info[handle].is_empty() {
                continue;
            }
            match var.space {
                // WGSL counts each workgroup variable rounded up to 16 bytes.
                AddressSpace::WorkGroup => wg_bytes += layouter[var.ty].size.next_multiple_of(16),
                AddressSpace::Storage { .. } => storage += 1,
                AddressSpace::Uniform => uniform += 1,
                _ => {}
            }
        }
        if wg_bytes > MAX_WORKGROUP_BYTES {
            problems.push(format!(
                "entry `{ep_name}`: {wg_bytes} bytes of workgroup memory > {MAX_WORKGROUP_BYTES}"
            ));
        }
        if storage > MAX_STORAGE_BUFFERS {
            problems.push(format!(
                "entry `{ep_name}`: {storage} storage buffers > {MAX_STORAGE_BUFFERS}"
            ));
        }
        if uniform > MAX_UNIFORM_BUFFERS {
            problems.push(format!(
                "entry `{ep_name}`: {uniform} uniform buffers > {MAX_UNIFORM_BUFFERS}"
            ));
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", problems.join(&format!("\n{name}: "))))
    }
}

#[test]
fn every_shader_is_embedded_valid_and_within_budget() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read shaders/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            files.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(!files.is_empty(), "no *.wgsl files in {}", dir.display());

    let embedded: BTreeMap<&str, &str> = ALL_SHADERS.iter().map(|s| (s.name, s.code)).collect();
    assert_eq!(
        embedded.len(),
        ALL_SHADERS.len(),
        "ALL_SHADERS lists a shader twice"
    );
    for name in files.keys() {
        assert!(
            embedded.contains_key(name.as_str()),
            "shaders/{name} is not in ALL_SHADERS"
        );
    }
    for (name, code) in &embedded {
        let file = files.get(*name);
        assert!(
            file.is_some(),
            "ALL_SHADERS has `{name}` but shaders/{name} does not exist"
        );
        assert!(
            file.unwrap() == code,
            "ALL_SHADERS `{name}` differs from shaders/{name}"
        );
    }

    let errors: Vec<String> = files
        .iter()
        .filter_map(|(name, source)| check_shader(name, source).err())
        .collect();
    assert!(errors.is_empty(), "\n{}", errors.join("\n\n"));
}

#[test]
fn budget_checks_catch_violations() {
    let expect_err = |wgsl: &str, needle: &str| {
        let err = check_shader("bad.wgsl", wgsl).expect_err("bad shader passed");
        assert!(
            err.contains("bad.wgsl") && err.contains(needle),
            "{needle:?} not in:\n{err}"
        );
    };
    let good = "@group(0) @binding(0) var<storage, read_write> a: array<u32>;
        @compute @workgroup_size(64) fn main() { a[0] = 1u; }";
    check_shader("good.wgsl", good).unwrap();

    expect_err(
        "@group(0) @binding(0) var<storage, read> a: array<u32>;
        @group(0) @binding(1) var<storage, read> b: array<u32>;
        @group(0) @binding(2) var<storage, read> c: array<u32>;
        @group(0) @binding(3) var<storage, read> d: array<u32>;
        @group(0) @binding(4) var<storage, read_write> e: array<u32>;
        @compute @workgroup_size(64) fn main() { e[0] = a[0] + b[0] + c[0] + d[0]; }",
        "5 storage buffers > 4",
    );
    expect_err(
        "var<workgroup> big: array<f32, 5120>;
        @group(0) @binding(0) var<storage, read_write> a: array<f32>;
        @compute @workgroup_size(64) fn main() { big[0] = 1.0; a[0] = big[1]; }",
        "20480 bytes of workgroup memory > 16384",
    );
    expect_err(
        "@group(0) @binding(0) var<storage, read_write> a: array<u32>;
        @compute @workgroup_size(32, 16) fn main() { a[0] = 1u; }",
        "workgroup size (32, 16, 1)",
    );
    expect_err(
        "@group(1) @binding(0) var<storage, read_write> a: array<u32>;
        @compute @workgroup_size(64) fn main() { a[0] = 1u; }",
        "in @group(1), not 0",
    );
    expect_err(
        "@group(0) @binding(0) var<uniform> u: vec4<u32>;
        @group(0) @binding(2) var<storage, read_write> a: array<u32>;
        @compute @workgroup_size(64) fn main() { a[0] = u.x; }",
        "bindings [0, 2] are not 0..2",
    );
    expect_err(
        "enable f16;
        @group(0) @binding(0) var<storage, read_write> a: array<f16>;
        @compute @workgroup_size(64) fn main() { a[0] = 1.0h; }",
        "Capabilities::FLOAT16",
    );
}
