// Dequantise (or convert) a base weight into an overlay buffer: overlay = deq(W), the first
// half of an adapted layer's merge (delta.wgsl then adds ΔW in place).
//
// Sources, chosen by overrides:
//   FMT 0 F32, 1 F16, 2 BF16 (2 per u32), 3 MLX affine: each row of `src` is one little-endian
//   bit stream of u32 words, code k at bits [k·BITS, k·BITS + BITS) (3/5/6-bit codes may straddle
//   two words); w = scale·q + bias with scale/bias per GROUP columns, in SB_FMT (0 F32, 1 F16,
//   2 BF16). For an f16 destination an F16/BF16 model dequantises like MLX, in its own dtype
//   (rounding after the multiply and after the add); for an f32 destination in f32.
// Destination: OUT_F16 = 0 → f32, 1 → f16 (two per u32).
// Each invocation writes one u32 of the destination (one f32, or a pair of f16). Rows are
// processed in chunks that fit a storage binding; `row0` is the chunk's first row.

override FMT: u32 = 0u;
override BITS: u32 = 4u;
override GROUP: u32 = 64u;
override SB_FMT: u32 = 0u;
override OUT_F16: u32 = 1u;

struct Params {
    rows: u32,          // rows in this chunk
    cols: u32,
    src_row_words: u32, // u32 words per source row (affine; F16/BF16: unused)
    groups_per_row: u32,
    row0: u32,          // unused by the kernel: bindings already start at the chunk
    out_words: u32,     // u32 words of output in this chunk
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> biases: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst: array<u32>;

fn half_at(buf_word: u32, i: u32) -> u32 {
    return (buf_word >> ((i & 1u) * 16u)) & 0xffffu;
}

fn f16_bits_to_f32(h: u32) -> f32 {
    return unpack2x16float(h).x;
}

fn bf16_bits_to_f32(h: u32) -> f32 {
    return bitcast<f32>(h << 16u);
}

// Round an f32 to bf16 (nearest even) and back.
fn round_bf16(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7f800000u) == 0x7f800000u) {
        return x;
    }
    let r = b + 0x7fffu + ((b >> 16u) & 1u);
    return bitcast<f32>(r & 0xffff0000u);
}

fn round_sb(x: f32) -> f32 {
    // Only an f16 destination follows MLX's rounding in the model dtype; an f32 overlay keeps
    // `scale·q + bias` in f32 (what transformers computes from the same data).
    if (OUT_F16 == 0u) {
        return x;
    }
    if (SB_FMT == 1u) {
        return quantizeToF16(x);
    }
    if (SB_FMT == 2u) {
        return round_bf16(x);
    }
    return x;
}

fn sb_value(i: u32, from_scales: bool) -> f32 {
    if (SB_FMT == 0u) {
        if (from_scales) { return bitcast<f32>(scales[i]); }
        return bitcast<f32>(biases[i]);
    }
    var w: u32;
    if (from_scales) { w = scales[i / 2u]; } else { w = biases[i / 2u]; }
    let h = half_at(w, i);
    if (SB_FMT == 1u) {
        return f16_bits_to_f32(h);
    }
    return bf16_bits_to_f32(h);
}

// Element (row, col) of the chunk, as f32.
fn element(row: u32, col: u32) -> f32 {
    let flat = row * P.cols + col;
    if (FMT == 0u) {
        return bitcast<f32>(src[flat]);
    }
    if (FMT == 1u) {
        return f16_bits_to_f32(half_at(src[flat / 2u], flat));
    }
    if (FMT == 2u) {
        return bf16_bits_to_f32(half_at(src[flat / 2u], flat));
    }
    // MLX affine.
    let bit = col * BITS;
    let w = row * P.src_row_words + bit / 32u;
    let sh = bit % 32u;
    var q = src[w] >> sh;
    if (sh + BITS > 32u) {
        q = q | (src[w + 1u] << (32u - sh));
    }
    q = q & ((1u << BITS) - 1u);
    let g = row * P.groups_per_row + col / GROUP;
    let s = sb_value(g, true);
    let b = sb_value(g, false);
    return round_sb(round_sb(s * f32(q)) + b);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let word = gid.x + gid.y * nwg.x * 256u;
    if (word >= P.out_words) {
        return;
    }
    let n = P.rows * P.cols;
    if (OUT_F16 == 0u) {
        dst[word] = bitcast<u32>(element(word / P.cols, word % P.cols));
    } else {
        let f0 = word * 2u;
        let a = element(f0 / P.cols, f0 % P.cols);
        var b = 0.0;
        if (f0 + 1u < n) {
            b = element((f0 + 1u) / P.cols, (f0 + 1u) % P.cols);
        }
        dst[word] = pack2x16float(vec2<f32>(a, b));
    }
}
