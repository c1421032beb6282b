// Weight loads for matmul and conv: element `e` of a weight tensor as f32, whatever its storage.
//   W_F32: array<f32>.  W_F16: array<f16> (adapter has shader-f16).  W_F16P: f16 packed two per
//   u32 (every adapter).  W_VEC4 / W_F16V: array<vec4<f32>> / array<vec4<f16>> (matmul's vec4
//   path).  W_I8: int8 packed four per u32; the per-output-channel scale is applied
//   in the epilogue (sum_k a*q*s == s * sum_k a*q), so the inner loop stays integer-exact.

@group(0) @binding(2) var<storage, read> wts: array<W_STORE>;
// int8 weights carry one f32 scale per output channel.
#ifdef W_I8
@group(0) @binding(BIND_SCALES) var<storage, read> scales: array<f32>;
#endif

fn load_w(e: u32) -> f32 {
#ifdef W_F32
    return wts[e];
#endif
#ifdef W_F16
    return f32(wts[e]);
#endif
#ifdef W_F16P
    let pair = unpack2x16float(wts[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
#endif
#ifdef W_VEC4
    return wts[e >> 2u][e & 3u];
#endif
#ifdef W_F16V
    return f32(wts[e >> 2u][e & 3u]);
#endif
#ifdef W_I8
    // Move byte (e % 4) to the top, then an arithmetic shift sign-extends it.
    let word = bitcast<i32>(wts[e >> 2u] << (24u - 8u * (e & 3u)));
    return f32(word >> 24u);
#endif
}

// Elements 4q..4q+3 as one vec4 (q = element index / 4), for the vec4 matmul path.
fn load_w4(q: u32) -> vec4<f32> {
#ifdef W_VEC4
    return wts[q];
#endif
#ifdef W_F16V
    return vec4<f32>(wts[q]);
#endif
#ifdef W_F16P
    return vec4<f32>(unpack2x16float(wts[2u * q]), unpack2x16float(wts[2u * q + 1u]));
#endif
#ifdef W_I8
    // Four sign-extended bytes, lowest first.
    let word = bitcast<i32>(wts[q]);
    return vec4<f32>(vec4<i32>(word << 24u, word << 16u, word << 8u, word) >> vec4<u32>(24u));
#endif
#ifdef W_F32
    return vec4<f32>(wts[4u * q], wts[4u * q + 1u], wts[4u * q + 2u], wts[4u * q + 3u]);
#endif
#ifdef W_F16
    return vec4<f32>(f32(wts[4u * q]), f32(wts[4u * q + 1u]), f32(wts[4u * q + 2u]), f32(wts[4u * q + 3u]));
#endif
}
