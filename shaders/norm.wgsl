// RMSNorm: out[r, i] = w[i] · (x[r, i] / sqrt(mean_i(x[r, i]²) + eps)), x and out `[rows, dim]`.
// One workgroup per row (dispatch (rows, 1, 1)): 256 invocations stride over the row, the sum
// of squares meets in a tree reduction in workgroup memory. The multiply order follows the CPU
// reference (w · (x · inv)).

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn rmsnorm(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x;
    let base = r * P.dim;
    var s = 0.0;
    for (var i = tid; i < P.dim; i += 256u) {
        let v = x[base + i];
        s += v * v;
    }
    red[tid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (tid < stride) {
            red[tid] += red[tid + stride];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(red[0] / f32(P.dim) + P.eps);
    for (var i = tid; i < P.dim; i += 256u) {
        out[base + i] = weight[i] * (x[base + i] * inv);
    }
}
