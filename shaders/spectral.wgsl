// ΔW x for an adapted layer kept in spectral form (the base matmul has already written W x):
//
//   ΔW[p, q] = Σ_k c_k cos(2π(u_k p/d1 + v_k q/d2)), c_k already scaled by scaling/(d1·d2)
//   B[r, v]  = Σ_q x[r, q] e^(2πi v q/d2)          for the distinct v's (spectral_b)
//   Z[r, u]  = Σ_{k: u_k = u} c_k B[r, v_k]         for the distinct u's (spectral_z)
//   out[r, p] += Re Σ_u Z[r, u] e^(2πi u p/d1)                         (spectral_out)
//
// Phases are reduced with integer arithmetic ((v·q) mod d2 stepped by adding v, (u·p) mod d1
// by mulmod) and looked up in cos/sin tables computed in f64 on the host.
//
// All three entry points share one layout: parameters, the layer's tables, the shape's
// cos/sin tables, a read-only source and a read-write destination (4 storage buffers).
//   spectral_b:   src = x,        dst = scratch (B at 0, Z from zbase)
//   spectral_z:   src = unused,   dst = scratch
//   spectral_out: src = scratch,  dst = out
// The host splits tall inputs into row chunks [r0, r0 + rows) that fit the scratch buffer.

const WG: u32 = 64u;

struct Params {
    d1: u32,
    d2: u32,
    nv: u32,       // distinct v's
    nu: u32,       // distinct u's
    off_v: u32,    // lt[off_v + i]: the i-th distinct v
    off_us: u32,   // lt[off_us + j] .. lt[off_us + j + 1]: terms of the j-th distinct u
    off_ul: u32,   // lt[off_ul + j]: the j-th distinct u
    off_t: u32,    // lt[off_t + 2t], lt[off_t + 2t + 1]: term t's v index and bits of c_t
    r0: u32,       // first input row of this chunk
    rows: u32,     // rows in this chunk
    zbase: u32,    // f32 index of Z in the scratch buffer
    _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> lt: array<u32>;
// (cos, sin)(2π j/d2) for j < d2, then (cos, sin)(2π j/d1) for j < d1.
@group(0) @binding(2) var<storage, read> tw: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// (a·b) mod m for a < m < 2^31 without 64-bit integers.
fn mulmod(a: u32, b: u32, m: u32) -> u32 {
    if (m <= 65536u && b < m) {
        return (a * b) % m;
    }
    var r = 0u;
    var x = a % m;
    var y = b;
    loop {
        if (y == 0u) {
            break;
        }
        if ((y & 1u) == 1u) {
            r = r + x;
            if (r >= m) {
                r = r - m;
            }
        }
        x = x + x;
        if (x >= m) {
            x = x - m;
        }
        y = y >> 1u;
    }
    return r;
}

// One invocation per (VB distinct v's, row): B[r, v] = Σ_q x[r0 + r, q] e^(2πi v q/d2).
// Each phase index steps by adding v (mod d2); x is read once for the VB v's.
const VB: u32 = 4u;

@compute @workgroup_size(64)
fn spectral_b(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.x * VB;
    let r = gid.y;
    if (i0 >= P.nv || r >= P.rows) {
        return;
    }
    var v = array<u32, 4>(0u, 0u, 0u, 0u);
    for (var k = 0u; k < VB; k = k + 1u) {
        // Past the last v: v = 0 (computed, never stored).
        if (i0 + k < P.nv) {
            v[k] = lt[P.off_v + i0 + k];
        }
    }
    let xb = (P.r0 + r) * P.d2;
    var re = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var im = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var idx = array<u32, 4>(0u, 0u, 0u, 0u);
    for (var q = 0u; q < P.d2; q = q + 1u) {
        let xv = src[xb + q];
        for (var k = 0u; k < VB; k = k + 1u) {
            let t = tw[idx[k]];
            re[k] = re[k] + xv * t.x;
            im[k] = im[k] + xv * t.y;
            var n = idx[k] + v[k];
            if (n >= P.d2) {
                n = n - P.d2;
            }
            idx[k] = n;
        }
    }
    for (var k = 0u; k < VB; k = k + 1u) {
        if (i0 + k < P.nv) {
            let o = 2u * (r * P.nv + i0 + k);
            dst[o] = re[k];
            dst[o + 1u] = im[k];
        }
    }
}

// One invocation per (distinct u, row): Z[r, u] = Σ_{k: u_k = u} c_k B[r, v_k].
@compute @workgroup_size(64)
fn spectral_z(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    if (j >= P.nu || r >= P.rows) {
        return;
    }
    var re = 0.0;
    var im = 0.0;
    let t_end = lt[P.off_us + j + 1u];
    for (var t = lt[P.off_us + j]; t < t_end; t = t + 1u) {
        let vi = lt[P.off_t + 2u * t];
        let c = bitcast<f32>(lt[P.off_t + 2u * t + 1u]);
        let b = 2u * (r * P.nv + vi);
        re = re + c * dst[b];
        im = im + c * dst[b + 1u];
    }
    let o = P.zbase + 2u * (r * P.nu + j);
    dst[o] = re;
    dst[o + 1u] = im;
}

// One invocation per (PO consecutive outputs p, row):
//   out[r0 + r, p] += Re Σ_u Z[r, u] e^(2πi u p/d1).
// The phase index of the first output is one mulmod per u; the next ones step by adding u.
const PO: u32 = 4u;

@compute @workgroup_size(64)
fn spectral_out(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p0 = gid.x * PO;
    let r = gid.y;
    if (p0 >= P.d1 || r >= P.rows) {
        return;
    }
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    let zb = P.zbase + 2u * r * P.nu;
    for (var j = 0u; j < P.nu; j = j + 1u) {
        let u = lt[P.off_ul + j];
        let zr = src[zb + 2u * j];
        let zi = src[zb + 2u * j + 1u];
        var idx = mulmod(u, p0, P.d1);
        for (var k = 0u; k < PO; k = k + 1u) {
            let t = tw[P.d2 + idx];
            acc[k] = acc[k] + zr * t.x - zi * t.y;
            idx = idx + u;
            if (idx >= P.d1) {
                idx = idx - P.d1;
            }
        }
    }
    let o = (P.r0 + r) * P.d1;
    for (var k = 0u; k < PO; k = k + 1u) {
        let p = p0 + k;
        if (p < P.d1) {
            dst[o + p] = dst[o + p] + acc[k];
        }
    }
}
