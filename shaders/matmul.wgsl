// Weight-reading kernels: out[r, o] = Σ_i x[r, i]·W[o, i] (`main`) and the embedding gather
// out[r, :] = W[tokens[r], :] (`embed`). They share one file because both decode the same
// stored weight formats (WGSL has no includes; the decoding mirrors shaders/dequant.wgsl).
//
// W `[n_out, k]`, chosen by overrides:
//   FMT 0 F32, 1 F16, 2 BF16 (two halves per u32; a row may start mid-word when k is odd),
//   3 MLX affine: each row one little-endian bit stream of u32 words, code c at bits
//   [c·BITS, c·BITS + BITS); w = scale·q + bias in f32 (what the CPU reference computes), with
//   scale/bias per GROUP columns in SB_FMT (0 F32, 1 F16, 2 BF16).
// Scales and biases travel in ONE buffer `sb` (scales `[n_out, k/GROUP]`, then biases from
// element `sb_bias`): x, W, sb and out are the four storage bindings a phone allows.
// Big weights are bound in row chunks (`W` starts at the chunk's first row; `sb` is bound
// whole and the chunk's first row is `sb_row0`); `o0` is where the chunk's outputs go.
//
// `main`: one workgroup = OPW output rows × LANES lanes; lane l reduces the units (affine:
// u32 words of codes; float: elements) l, l+LANES, ... of its row (coalesced across lanes),
// for RB input rows at once, so each weight word is decoded once per RB rows (RB = 1: the
// decode matrix-vector path; RB = 8: the prefill path). Partial sums meet in a tree
// reduction in workgroup memory. Affine words hold whole codes of one group when
// 32 % BITS == 0: Σ_c (s·q_c + b)·x_c = s·Σ q_c x_c + b·Σ x_c.
// Dispatch (ceil(n_out/OPW), ceil(rows/RB)).
//
// `embed`: one invocation per output element (r, c) of the rows whose token falls in this
// chunk [o0, o0 + n_out); tokens arrive in binding 1 (u32) from `tok0`.

override FMT: u32 = 0u;
override BITS: u32 = 4u;
override GROUP: u32 = 64u;
override SB_FMT: u32 = 0u;
override RB: u32 = 1u; // ≤ MAX_RB
// Lanes per output row (a power of two ≤ 256): 32 on GPUs (coalesced 128-byte reads of a
// row); CPU-emulated adapters (lavapipe) are faster with few lanes and no reduction.
override LANES: u32 = 32u;
override OPW: u32 = WG / LANES;

const WG: u32 = 256u;
const MAX_RB: u32 = 8u;

struct Params {
    rows: u32,       // input rows (matmul) / tokens (embed)
    k: u32,          // columns of W (the input dimension)
    n_out: u32,      // W rows in this chunk
    out_stride: u32, // values per output row (matmul: all outputs; embed: k)
    o0: u32,         // first W row of this chunk (global index)
    row_words: u32,  // affine: u32 words per W row
    gpr: u32,        // affine: groups per row
    sb_bias: u32,    // affine: sb element index where the biases start
    sb_row0: u32,    // affine: the chunk's first row within `sb`
    tok0: u32,       // embed: first token in binding 1
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
// matmul: x `[rows, k]` as f32 bits; embed: token ids. Read as vec4 (buffers are allocated
// in multiples of 16 bytes) so an affine word's codes meet their inputs in vec4 dot products.
@group(0) @binding(1) var<storage, read> xin: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> sb: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 2048>; // WG · MAX_RB

fn half_at(word: u32, i: u32) -> u32 {
    return (word >> ((i & 1u) * 16u)) & 0xffffu;
}

fn half_to_f32(h: u32, fmt: u32) -> f32 {
    if (fmt == 1u) {
        return unpack2x16float(h).x;
    }
    return bitcast<f32>(h << 16u);
}

// Element i of the scales (bias = false) or biases (bias = true).
fn sb_value(i: u32, bias: bool) -> f32 {
    var j = i;
    if (bias) {
        j = i + P.sb_bias;
    }
    if (SB_FMT == 0u) {
        return bitcast<f32>(sb[j]);
    }
    return half_to_f32(half_at(sb[j / 2u], j), SB_FMT);
}

// Element (row, col) of W (row local to the chunk), as f32.
fn w_at(row: u32, col: u32) -> f32 {
    if (FMT == 0u) {
        return bitcast<f32>(w[row * P.k + col]);
    }
    if (FMT == 1u || FMT == 2u) {
        let flat = row * P.k + col;
        return half_to_f32(half_at(w[flat / 2u], flat), FMT);
    }
    let bit = col * BITS;
    let wi = row * P.row_words + bit / 32u;
    let sh = bit % 32u;
    var q = w[wi] >> sh;
    if (sh + BITS > 32u) {
        q = q | (w[wi + 1u] << (32u - sh));
    }
    q = q & ((1u << BITS) - 1u);
    let g = (P.sb_row0 + row) * P.gpr + col / GROUP;
    return sb_value(g, false) * f32(q) + sb_value(g, true);
}

fn xat(i: u32) -> u32 {
    return xin[i / 4u][i % 4u];
}

fn xv(r: u32, c: u32) -> f32 {
    return bitcast<f32>(xat(r * P.k + c));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = tid % LANES;
    let slot = tid / LANES;
    let o = wid.x * OPW + slot; // W row within the chunk
    let r0 = wid.y * RB;
    let live = o < P.n_out;
    var nr = 0u; // input rows this workgroup handles
    if (r0 < P.rows) {
        nr = min(RB, P.rows - r0);
    }
    var acc: array<f32, 8>;
    for (var r = 0u; r < MAX_RB; r++) {
        acc[r] = 0.0;
    }
    if (live) {
        if (FMT == 3u && (32u % BITS) == 0u && BITS <= 8u) {
            // Whole words: CPW codes of one group each, NV vec4s of codes per word; k is a
            // multiple of GROUP ≥ 32, so every x row starts on a vec4.
            let cpw = 32u / BITS;
            let nv = cpw / 4u;
            let wpg = GROUP / cpw;
            let mask = vec4<u32>((1u << BITS) - 1u);
            let sbrow = (P.sb_row0 + o) * P.gpr;
            let k4 = P.k / 4u;
            let last = max(P.rows, 1u) - 1u;
            var gcur = 0xffffffffu;
            var s = 0.0;
            var b = 0.0;
            for (var j = lane; j < P.row_words; j += LANES) {
                let word = vec4<u32>(w[o * P.row_words + j]);
                let g = sbrow + j / wpg;
                if (g != gcur) {
                    // Few lanes walk consecutive words: load a group's scale and bias once.
                    gcur = g;
                    s = sb_value(g, false);
                    b = sb_value(g, true);
                }
                // RB is a pipeline constant: this loop unrolls; rows past the end repeat the
                // last row and are never written.
                for (var r = 0u; r < RB; r++) {
                    let xb = min(r0 + r, last) * k4 + j * nv;
                    var qx = 0.0;
                    var xs = 0.0;
                    for (var v = 0u; v < nv; v++) {
                        let sh = vec4<u32>(4u * v, 4u * v + 1u, 4u * v + 2u, 4u * v + 3u) * BITS;
                        let q = vec4<f32>((word >> sh) & mask);
                        let x = bitcast<vec4<f32>>(xin[xb + v]);
                        qx += dot(q, x);
                        xs += dot(x, vec4<f32>(1.0));
                    }
                    acc[r] += s * qx + b * xs;
                }
            }
        } else if (FMT == 3u) {
            // 3/5/6-bit codes may straddle words: element by element.
            for (var c = lane; c < P.k; c += LANES) {
                let wv = w_at(o, c);
                for (var r = 0u; r < nr; r++) {
                    acc[r] += wv * xv(r0 + r, c);
                }
            }
        } else if (FMT == 0u) {
            let base = o * P.k;
            for (var c = lane; c < P.k; c += LANES) {
                let wv = bitcast<f32>(w[base + c]);
                for (var r = 0u; r < nr; r++) {
                    acc[r] += wv * xv(r0 + r, c);
                }
            }
        } else if ((P.k & 1u) == 0u) {
            // Half pairs, each row starting on a word.
            let half_k = P.k / 2u;
            for (var j = lane; j < half_k; j += LANES) {
                let word = w[o * half_k + j];
                let w0 = half_to_f32(word & 0xffffu, FMT);
                let w1 = half_to_f32(word >> 16u, FMT);
                for (var r = 0u; r < nr; r++) {
                    let i = (r0 + r) * P.k + 2u * j;
                    acc[r] += w0 * bitcast<f32>(xat(i)) + w1 * bitcast<f32>(xat(i + 1u));
                }
            }
        } else {
            for (var c = lane; c < P.k; c += LANES) {
                let wv = w_at(o, c);
                for (var r = 0u; r < nr; r++) {
                    acc[r] += wv * xv(r0 + r, c);
                }
            }
        }
    }
    for (var r = 0u; r < RB; r++) {
        red[r * WG + tid] = acc[r];
    }
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            for (var r = 0u; r < RB; r++) {
                red[r * WG + tid] += red[r * WG + tid + stride];
            }
        }
        workgroupBarrier();
    }
    if (live && lane == 0u) {
        for (var r = 0u; r < nr; r++) {
            out[(r0 + r) * P.out_stride + P.o0 + o] = red[r * WG + tid];
        }
    }
}

@compute @workgroup_size(256)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= P.rows * P.k) {
        return;
    }
    let r = i / P.k;
    let c = i % P.k;
    let t = xat(P.tok0 + r);
    if (t < P.o0 || t >= P.o0 + P.n_out) {
        return;
    }
    out[r * P.out_stride + c] = w_at(t - P.o0, c);
}
