// ΔW x for an adapted layer kept in spectral form (the base matmul has already written W x):
//
//   ΔW[p, q] = Σ_k c_k cos(2π(u_k p/d1 + v_k q/d2)), c_k already scaled by scaling/(d1·d2)
//   B[r, v]  = Σ_q x[r, q] e^(2πi v q/d2)          for the distinct v's
//   Z[r, u]  = Σ_{k: u_k = u} c_k B[r, v_k]         for the distinct u's (spectral_z)
//   out[r, p] += Re Σ_u Z[r, u] e^(2πi u p/d1)
//
// B and out are each computed either directly (spectral_b: nv·d2 work per row; spectral_out:
// d1·nu) or, when the side has a useful factor, with one Cooley–Tukey step:
//
//   input, d2 = ia·ib, q = q1 + ia·q2 (q1 < ia, q2 < ib):
//     T[r][q1][w] = Σ_{q2 < ib} x[r, q1 + ia·q2] e^(2πi w q2/ib), w < ib  (spectral_t: d2·ib)
//     B[r, v]     = Σ_{q1 < ia} e^(2πi v q1/d2) T[r][q1][v mod ib]       (spectral_bf: nv·ia)
//   output, d1 = oa·ob, p = p1 + ob·p2 (p1 < ob, p2 < oa):
//     Y[r][w][p1] = Σ_{u ≡ w mod oa} Z[r, u] e^(2πi u p1/d1), w < oa    (spectral_y: nu·ob)
//     out[r, p]  += Re Σ_{w < oa} e^(2πi w p2/oa) Y[r][w][p1]          (spectral_outf: d1·oa)
// (the distinct u's are ordered by u mod oa, so Y's sum runs over one contiguous group).
//
// Phases are reduced with integer arithmetic (stepped by adding, or mulmod) and looked up in
// cos/sin tables computed in f64 on the host: e^(2πi j/ib) = e^(2πi (ia·j)/d2), and likewise
// e^(2πi j/oa) = e^(2πi (ob·j)/d1), so the two tables of the shape serve every stage.
//
// All entry points share one layout: parameters, the layer's tables, the shape's cos/sin
// tables, a read-only source and a read-write destination (4 storage buffers). The scratch
// buffer holds, for the rows of a chunk, B (from 0), Z (from zbase) and T or Y (from wbase;
// T is dead once B is built, so Y reuses its space).
//   spectral_t:    src = x,        dst = scratch
//   spectral_b:    src = x,        dst = scratch
//   spectral_bf:   src = unused,   dst = scratch
//   spectral_z:    src = unused,   dst = scratch
//   spectral_y:    src = unused,   dst = scratch
//   spectral_out:  src = scratch,  dst = out
//   spectral_outf: src = scratch,  dst = out
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
    wbase: u32,    // f32 index of T / Y in the scratch buffer
    ia: u32,       // input split d2 = ia·ib (factorised input only)
    ib: u32,
    oa: u32,       // output split d1 = oa·ob (factorised output only)
    ob: u32,
    off_ws: u32,   // lt[off_ws + w] .. lt[off_ws + w + 1]: distinct u's with u mod oa = w
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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

// Factorised input, stage 1. One invocation per ((q1, w), row), q1 < ia, w < ib:
//   T[r][q1][w] = Σ_{q2 < ib} x[r0 + r, q1 + ia·q2] e^(2πi w q2/ib).
// Neighbouring invocations share q1 (and so read the same x's).
@compute @workgroup_size(64)
fn spectral_t(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y;
    if (i >= P.d2 || r >= P.rows) {
        return;
    }
    let q1 = i / P.ib;
    let w = i % P.ib;
    let xb = (P.r0 + r) * P.d2 + q1;
    var re = 0.0;
    var im = 0.0;
    var idx = 0u; // (w·q2) mod ib
    for (var q2 = 0u; q2 < P.ib; q2 = q2 + 1u) {
        let xv = src[xb + P.ia * q2];
        let t = tw[P.ia * idx];
        re = re + xv * t.x;
        im = im + xv * t.y;
        idx = idx + w;
        if (idx >= P.ib) {
            idx = idx - P.ib;
        }
    }
    let o = P.wbase + 2u * (r * P.d2 + i);
    dst[o] = re;
    dst[o + 1u] = im;
}

// Factorised input, stage 2. One invocation per (distinct v, row):
//   B[r, v] = Σ_{q1 < ia} e^(2πi v q1/d2) T[r][q1][v mod ib].
@compute @workgroup_size(64)
fn spectral_bf(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y;
    if (i >= P.nv || r >= P.rows) {
        return;
    }
    let v = lt[P.off_v + i];
    let tb = P.wbase + 2u * (r * P.d2 + v % P.ib);
    var re = 0.0;
    var im = 0.0;
    var idx = 0u; // (v·q1) mod d2
    for (var q1 = 0u; q1 < P.ia; q1 = q1 + 1u) {
        let o = tb + 2u * P.ib * q1;
        let tr = dst[o];
        let ti = dst[o + 1u];
        let t = tw[idx];
        re = re + t.x * tr - t.y * ti;
        im = im + t.y * tr + t.x * ti;
        idx = idx + v;
        if (idx >= P.d2) {
            idx = idx - P.d2;
        }
    }
    let o = 2u * (r * P.nv + i);
    dst[o] = re;
    dst[o + 1u] = im;
}

// Factorised output, stage 1. One invocation per ((w, p1), row), w < oa, p1 < ob:
//   Y[r][w][p1] = Σ_{u ≡ w mod oa} Z[r, u] e^(2πi u p1/d1).
@compute @workgroup_size(64)
fn spectral_y(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y;
    if (i >= P.d1 || r >= P.rows) {
        return;
    }
    let w = i / P.ob;
    let p1 = i % P.ob;
    let zb = P.zbase + 2u * r * P.nu;
    var re = 0.0;
    var im = 0.0;
    let j_end = lt[P.off_ws + w + 1u];
    for (var j = lt[P.off_ws + w]; j < j_end; j = j + 1u) {
        let t = tw[P.d2 + mulmod(lt[P.off_ul + j], p1, P.d1)];
        let zr = dst[zb + 2u * j];
        let zi = dst[zb + 2u * j + 1u];
        re = re + t.x * zr - t.y * zi;
        im = im + t.y * zr + t.x * zi;
    }
    let o = P.wbase + 2u * (r * P.d1 + i);
    dst[o] = re;
    dst[o + 1u] = im;
}

// Factorised output, stage 2. One invocation per (output p = p1 + ob·p2, row):
//   out[r0 + r, p] += Re Σ_{w < oa} e^(2πi w p2/oa) Y[r][w][p1].
@compute @workgroup_size(64)
fn spectral_outf(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = gid.x;
    let r = gid.y;
    if (p >= P.d1 || r >= P.rows) {
        return;
    }
    let p1 = p % P.ob;
    let p2 = p / P.ob;
    let yb = P.wbase + 2u * (r * P.d1 + p1);
    var acc = 0.0;
    var idx = 0u; // (w·p2) mod oa
    for (var w = 0u; w < P.oa; w = w + 1u) {
        let o = yb + 2u * P.ob * w;
        let t = tw[P.d2 + P.ob * idx];
        acc = acc + src[o] * t.x - src[o + 1u] * t.y;
        idx = idx + p2;
        if (idx >= P.oa) {
            idx = idx - P.oa;
        }
    }
    let o = (P.r0 + r) * P.d1 + p;
    dst[o] = dst[o] + acc;
}
