// Rotary position embedding in place, rotate-half convention (LLaMA / transformers):
// for row r at position pos0 + r, head h, i < half = head_dim/2, angle a = pos·inv_freq[i]:
//   x[i]        = x[i]·cos a − x[i+half]·sin a
//   x[i + half] = x[i+half]·cos a + x[i]·sin a
// x `[rows, heads, head_dim]`, inv_freq `[half]`. One invocation per (r, h, i).
// WGSL's own sin/cos are only specified to ~2^-11 absolute, and angles reach max_ctx radians,
// so sin and cos are computed here: Cody–Waite reduction by π/2 (three-part constant, exact
// for |a| < 8192) and the Cephes single-precision polynomials (~1 ulp on [−π/4, π/4]).

struct Params {
    rows: u32,
    heads: u32,
    head_dim: u32,
    pos0: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;

// (sin a, cos a).
fn sincos(a: f32) -> vec2<f32> {
    let j = round(a * 0.63661977236758134); // a / (π/2)
    // π/2 = DP1 + DP2 + DP3 (Cephes sinf's constants, doubled).
    var r = a - j * 1.5703125;
    r = r - j * 4.837512969970703125e-4;
    r = r - j * 7.54978995489188216e-8;
    let z = r * r;
    let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
        - 0.5 * z + 1.0;
    let q = i32(j) & 3;
    if (q == 0) {
        return vec2<f32>(s, c);
    }
    if (q == 1) {
        return vec2<f32>(c, -s);
    }
    if (q == 2) {
        return vec2<f32>(-s, -c);
    }
    return vec2<f32>(-c, s);
}

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = P.head_dim / 2u;
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= P.rows * P.heads * half) {
        return;
    }
    let i = idx % half;
    let rh = idx / half; // r · heads + h
    let r = rh / P.heads;
    let a = f32(P.pos0 + r) * inv_freq[i];
    let sc = sincos(a);
    let base = rh * P.head_dim;
    let x0 = x[base + i];
    let x1 = x[base + i + half];
    x[base + i] = x0 * sc.y - x1 * sc.x;
    x[base + i + half] = x1 * sc.y + x0 * sc.x;
}
