// Helpers shared by every kernel family (included with `#include "common"`).

// Dims and strides travel as two vec4s (rank <= 8): uniform arrays need 16-byte elements. Read
// them in place, `p.x[d >> 2u][d & 3u]`: a helper taking the array by value copies all of it on
// every call, which made lavapipe's strided kernels 5x slower.

// Infinities and NaN from their bits. `bitcast<f32>(0x7f800000u)` would be a const-expression,
// and a const-expression that is not finite is a shader-creation error in Tint (Chromium's WGSL
// compiler; naga accepts it); through a function parameter the value is a runtime one.
fn f32_from_bits(bits: u32) -> f32 {
    return bitcast<f32>(bits);
}

// sin and cos to about 1 ulp for |x| < 1e5 (timestep embeddings reach ~1e3). WGSL's builtins
// promise only 2^-11 absolute error, and browsers' software adapters give that much.
// Cody-Waite reduction by pi/2 in three parts (the first two exact for |k| < 2^16), then
// minimax polynomials on [-pi/4, pi/4] (cephes sinf/cosf).
fn sincos_f(x: f32) -> vec2<f32> {
    let k = round(x * 0.636619772);
    let r = ((x - k * 1.5703125) - k * 4.837512969970703125e-4) - k * 7.549789954891882e-8;
    let z = r * r;
    let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
        - 0.5 * z + 1.0;
    switch (i32(k) & 3) {
        case 0: { return vec2<f32>(s, c); }
        case 1: { return vec2<f32>(c, -s); }
        case 2: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

fn sin_f(x: f32) -> f32 {
    return sincos_f(x).x;
}

fn cos_f(x: f32) -> f32 {
    return sincos_f(x).y;
}

// Linear invocation index of a 1-D launch folded into x and y (more than 65535 workgroups).
fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg + lid;
}

// erf to ~1e-7: Taylor series near 0 (keeps relative accuracy), Abramowitz-Stegun 7.1.26 beyond.
fn erf_f(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 1.0) {
        let z = x * x;
        var s = 1.0 / 76204800.0;
        s = s * -z + 1.0 / 6894720.0;
        s = s * -z + 1.0 / 685440.0;
        s = -s * z + 1.0 / 75600.0;
        s = -s * z + 1.0 / 9360.0;
        s = -s * z + 1.0 / 1320.0;
        s = -s * z + 1.0 / 216.0;
        s = -s * z + 1.0 / 42.0;
        s = -s * z + 1.0 / 10.0;
        s = -s * z + 1.0 / 3.0;
        s = -s * z + 1.0;
        return 1.1283791670955126 * x * s;
    }
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-ax * ax));
}

fn mul_f(a: f32, b: f32) -> f32 {
    return a * b;
}

fn sigmoid_f(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh's builtin can overflow to NaN through exp on some drivers; |x| > 15 is +-1 in f32 anyway.
fn tanh_f(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// The fused activation of matmul/conv/norm epilogues; ACT is an expression in x and alpha.
fn activation(x: f32, alpha: f32) -> f32 {
    return ACT;
}
