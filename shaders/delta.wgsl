// ΔW of one FourierFT layer, written straight into its destination (a plain f32 ΔW, or added
// onto an overlay that already holds deq(W)).
//
// ΔW[p, q] = Re Σ_k c_k ω1^(u_k p) ω2^(v_k q), ω1 = e^(2πi/d1), ω2 = e^(2πi/d2), with c_k already
// scaled by scaling/(d1·d2) on the host. d1 = n1·n2 and p = p1·n2 + p2, so
//   ω1^(u p) = ω_{n1}^((u mod n1) p1) · ω1^(u p2)
// and grouping the coefficients by r = u_k mod n1 (host-sorted, CSR in `groups`):
//   stage 1  S[r, q] = Σ_{k: u_k ≡ r} c_k ω1^(u_k p2) ω2^(v_k q)      (n·TQ terms per workgroup)
//   stage 2  ΔW[p1 n2 + p2, q] = Re Σ_r ω_{n1}^(r p1) S[r, q]          (n1²·TQ terms)
// i.e. d1·d2·(n/n1 complex + n1 real) multiply-adds instead of the GEMM form's 2n·d1·d2.
// Phases are reduced with integer arithmetic, (u·p mod d1), and looked up in cos/sin tables
// computed in f64 on the host: never an f32 angle of size 2π·d.
//
// One workgroup = one p2 (workgroup_id.y) × TQ consecutive columns (workgroup_id.x). It
// writes rows p1·n2 + p2 for p1 in [p1_lo, p1_hi) (the host splits tall outputs into row
// chunks that fit one storage binding; `row_base` is the chunk's first row).

const TQ: u32 = 16u;          // columns per workgroup
const WG: u32 = 256u;         // threads per workgroup
const N1_MAX: u32 = 64u;      // the host never picks n1 > 64
// Workgroup memory: S 2·64·16 f32 (8 KiB) + coefficient cache 768 vec2 (6 KiB) + 64 vec2 = 14.5 KiB.

// 0: out[i] = ΔW (f32); 1: out[i] += ΔW (f32 overlay); 2: f16 overlay, two halves per u32, += ΔW.
override OUT_MODE: u32 = 0u;

struct Params {
    d1: u32,
    d2: u32,
    n1: u32,
    n2: u32,
    p1_lo: u32,
    p1_hi: u32,
    row_base: u32,
    n: u32,          // number of coefficients
}

@group(0) @binding(0) var<uniform> P: Params;
// (u_k, v_k, bits of c_k, 0), sorted by u_k mod n1.
@group(0) @binding(1) var<storage, read> entries: array<vec4<u32>>;
// groups[r]..groups[r+1] are group r's entries; n1 + 1 values.
@group(0) @binding(2) var<storage, read> groups: array<u32>;
// (cos, sin)(2π j/d1) for j < d1, then (cos, sin)(2π j/d2) for j < d2.
@group(0) @binding(3) var<storage, read> tw: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

const CW_MAX: u32 = 768u;     // entries per pass of the per-workgroup coefficient cache

var<workgroup> s_re: array<f32, 1024>;  // [N1_MAX][TQ]
var<workgroup> s_im: array<f32, 1024>;
var<workgroup> s_cw: array<vec2<f32>, 768>;  // c_k·ω1^(u_k p2) for one pass of entries
var<workgroup> s_tw: array<vec2<f32>, 64>;   // ω_{n1}^j

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

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

fn store(i: u32, v: f32) {
    if (OUT_MODE == 0u) {
        out[i] = bitcast<u32>(v);
    } else {
        out[i] = bitcast<u32>(bitcast<f32>(out[i]) + v);
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let q0 = wg.x * TQ;
    let p2 = wg.y;
    let d1 = P.d1;
    let d2 = P.d2;

    // Stage 1: thread t owns group r = t/4 and columns q0 + 4(t%4) .. +4. The factor
    // c_k·ω1^(u_k p2) is the same for every column: it is computed once per workgroup into
    // workgroup memory, CW_MAX entries at a time.
    let r = li >> 2u;
    let c0 = (li & 3u) * 4u;
    let qs = min(q0 + c0, d2 - 1u);
    let in_group = r < P.n1;
    var g0 = 0u;
    var g1 = 0u;
    if (in_group) {
        g0 = groups[r];
        g1 = groups[r + 1u];
    }
    var a0 = vec2<f32>(0.0);
    var a1 = vec2<f32>(0.0);
    var a2 = vec2<f32>(0.0);
    var a3 = vec2<f32>(0.0);
    let n = P.n;
    for (var base = 0u; base < n; base = base + CW_MAX) {
        let lim = min(n - base, CW_MAX);
        for (var i = li; i < lim; i = i + WG) {
            let e = entries[base + i];
            s_cw[i] = bitcast<f32>(e.z) * tw[mulmod(e.x, p2, d1)];
        }
        workgroupBarrier();
        let k_hi = min(g1, base + lim);
        for (var k = max(g0, base); k < k_hi; k = k + 1u) {
            let v = entries[k].y;
            let cw = s_cw[k - base];
            var j = mulmod(v, qs, d2);
            a0 = a0 + cmul(cw, tw[d1 + j]);
            j = j + v;
            if (j >= d2) { j = j - d2; }
            a1 = a1 + cmul(cw, tw[d1 + j]);
            j = j + v;
            if (j >= d2) { j = j - d2; }
            a2 = a2 + cmul(cw, tw[d1 + j]);
            j = j + v;
            if (j >= d2) { j = j - d2; }
            a3 = a3 + cmul(cw, tw[d1 + j]);
        }
        workgroupBarrier();
    }
    if (in_group) {
        let s = r * TQ + c0;
        s_re[s] = a0.x;
        s_im[s] = a0.y;
        s_re[s + 1u] = a1.x;
        s_im[s + 1u] = a1.y;
        s_re[s + 2u] = a2.x;
        s_im[s + 2u] = a2.y;
        s_re[s + 3u] = a3.x;
        s_im[s + 3u] = a3.y;
    }
    // Stage-2 twiddles ω_{n1}^j = ω1^(j n2), j < n1.
    if (li < P.n1) {
        s_tw[li] = tw[li * P.n2];
    }
    workgroupBarrier();

    // Stage 2: thread t owns row p1 = p1_lo + t/8 and columns ql, ql+1 (ql = 2(t%8)).
    let np1 = P.p1_hi - P.p1_lo;
    for (var t = li; t < np1 * (TQ / 2u); t = t + WG) {
        let p1 = P.p1_lo + t / (TQ / 2u);
        let ql = (t % (TQ / 2u)) * 2u;
        let q = q0 + ql;
        if (q >= d2) {
            continue;
        }
        var v0 = 0.0;
        var v1 = 0.0;
        let step = p1 % P.n1;
        var idx = 0u;
        for (var r = 0u; r < P.n1; r = r + 1u) {
            let w = s_tw[idx];
            let s = r * TQ + ql;
            v0 = v0 + w.x * s_re[s] - w.y * s_im[s];
            v1 = v1 + w.x * s_re[s + 1u] - w.y * s_im[s + 1u];
            idx = idx + step;
            if (idx >= P.n1) { idx = idx - P.n1; }
        }
        let i = (p1 * P.n2 + p2 - P.row_base) * d2 + q;
        if (OUT_MODE == 2u) {
            // d2 is even and q is even: the pair (q, q+1) is one u32.
            let old = unpack2x16float(out[i / 2u]);
            out[i / 2u] = pack2x16float(old + vec2<f32>(v0, v1));
        } else {
            store(i, v0);
            if (q + 1u < d2) {
                store(i + 1u, v1);
            }
        }
    }
}
