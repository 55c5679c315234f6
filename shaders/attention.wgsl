// Causal grouped-query attention over the KV cache (prefill and decode alike).
// q, out `[rows, heads, head_dim]`; k_cache, v_cache `[max_ctx, kv_heads, head_dim]`.
// Row r sits at position pos0 + r and attends to cache positions 0..=pos0 + r; head h reads
// kv head h / (heads / kv_heads). Scores are q·k / sqrt(head_dim), softmax in f32.
//
// One workgroup per (head, row): dispatch (heads, rows). The context can be max_ctx long, so
// the score row is never held whole: positions go in tiles of TILE with an online softmax
// (running max m and sum l; earlier partial outputs are rescaled by exp(m_old − m_new)).
// In a tile, invocation t scores position t0 + t (a head_dim dot product), then invocation d
// accumulates Σ_t p_t·v[t, d] for its output dimensions d = tid, tid + TILE, ...
// head_dim ≤ 4·TILE (kept in registers as 4 accumulators).

const TILE: u32 = 128u;

struct Params {
    rows: u32,
    pos0: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> qs: array<f32, 512>;
var<workgroup> p: array<f32, 128>;
var<workgroup> red: array<f32, 128>;

@compute @workgroup_size(128)
fn attention(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let r = wid.y;
    let hd = P.head_dim;
    let kvh = h / (P.heads / P.kv_heads);
    let kv_dim = P.kv_heads * hd;
    let n_ctx = P.pos0 + r + 1u;
    let qbase = (r * P.heads + h) * hd;
    for (var d = tid; d < hd; d += TILE) {
        qs[d] = q[qbase + d];
    }
    workgroupBarrier();
    var m = -3.0e38; // running max (finite: exp(m - m_new) stays defined)
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    for (var t0 = 0u; t0 < n_ctx; t0 += TILE) {
        let t = t0 + tid;
        var s = -3.0e38;
        if (t < n_ctx) {
            let kb = t * kv_dim + kvh * hd;
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot += qs[d] * k_cache[kb + d];
            }
            s = dot * P.scale;
        }
        red[tid] = s;
        workgroupBarrier();
        for (var stride = TILE / 2u; stride > 0u; stride = stride / 2u) {
            if (tid < stride) {
                red[tid] = max(red[tid], red[tid + stride]);
            }
            workgroupBarrier();
        }
        let m_new = max(m, red[0]);
        workgroupBarrier();
        var e = 0.0;
        if (t < n_ctx) {
            e = exp(s - m_new);
        }
        p[tid] = e;
        red[tid] = e;
        workgroupBarrier();
        for (var stride = TILE / 2u; stride > 0u; stride = stride / 2u) {
            if (tid < stride) {
                red[tid] += red[tid + stride];
            }
            workgroupBarrier();
        }
        let corr = exp(m - m_new);
        l = l * corr + red[0];
        m = m_new;
        acc = acc * corr;
        let n = min(TILE, n_ctx - t0);
        for (var j = 0u; j < 4u; j++) {
            let d = tid + j * TILE;
            if (d < hd) {
                var a = 0.0;
                for (var u = 0u; u < n; u++) {
                    a += p[u] * v_cache[(t0 + u) * kv_dim + kvh * hd + d];
                }
                acc[j] += a;
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let d = tid + j * TILE;
        if (d < hd) {
            out[qbase + d] = acc[j] / l;
        }
    }
}
