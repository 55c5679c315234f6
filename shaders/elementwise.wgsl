// Element-wise kernels of the transformer graph, one invocation per value (workgroups of 256;
// dispatch (x, y) with index x + y·nwg.x·256 so long buffers stay under the per-dimension
// workgroup limit). Bindings a, b are read; c, d written; an entry leaves unused ones alone
// (the Rust side binds a small dummy there).
//   silu_mul:  c[i] = silu(a[i])·b[i]                         (i < n)
//   add:       c[i] += a[i]                                    (i < n)
//   add_bias:  c[i] += a[i % dim]                              (i < n = rows·dim)
//   copy:      c[dst_off + i] = a[src_off + i]                 (i < n)
//   copy_self: c[dst_off + i] = c[src_off + i]                 (i < n; ranges must not overlap)
//   kv_store:  c[dst_off + i] = a[i], d[dst_off + i] = b[i]    (k, v → caches at pos0·kv_dim)

struct Params {
    n: u32,
    dim: u32,
    src_off: u32,
    dst_off: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> d: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < P.n) {
        let x = a[i];
        c[i] = x / (1.0 + exp(-x)) * b[i];
    }
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < P.n) {
        c[i] += a[i];
    }
}

@compute @workgroup_size(256)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < P.n) {
        c[i] += a[i % P.dim];
    }
}

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < P.n) {
        c[P.dst_off + i] = a[P.src_off + i];
    }
}

@compute @workgroup_size(256)
fn copy_self(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < P.n) {
        c[P.dst_off + i] = c[P.src_off + i];
    }
}

@compute @workgroup_size(256)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < P.n) {
        c[P.dst_off + i] = a[i];
        d[P.dst_off + i] = b[i];
    }
}
