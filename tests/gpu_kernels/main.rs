//! Every GPU kernel family against a plain CPU reference, on small random shapes (odd sizes and
//! broadcasting included), on a deterministic software adapter: Vulkan lavapipe, pinned by
//! `VK_DRIVER_FILES` and `force_fallback_adapter`. Without any adapter the tests SKIP loudly;
//! `FIFO_REQUIRE_GPU=1` (set in CI) turns that skip into a failure.
//!
//! One test binary for all families: each binary links wgpu, which is slow on 2 cores.

mod attention;
mod conv;
mod copy;
mod elementwise;
mod gl;
mod matmul;
mod norm;
mod program;
mod reduce;
mod resize;

use std::sync::OnceLock;

use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions};

const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

/// The shared test device (Vulkan lavapipe when installed), or `None` after a loud skip message.
pub fn ctx() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        if std::env::var_os("VK_DRIVER_FILES").is_none() && std::path::Path::new(LAVAPIPE_ICD).exists() {
            // Safe here: runs once, before any wgpu instance reads the environment.
            std::env::set_var("VK_DRIVER_FILES", LAVAPIPE_ICD);
        }
        let options = GpuOptions { adapter: AdapterChoice::Fallback, ..Default::default() };
        match pollster::block_on(GpuContext::new(&options)) {
            Ok(ctx) => {
                eprintln!("GPU tests on {}", ctx.describe());
                Some(ctx)
            }
            Err(e) => skip_or_fail(&e.to_string()),
        }
    })
    .as_ref()
}

/// A second device on the same adapter with subgroups ignored: the kernels for CPU adapters
/// without them (llvmpipe's GL backend, SwiftShader in a browser).
pub fn no_subgroups_ctx() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    ctx()?;
    CTX.get_or_init(|| {
        let options =
            GpuOptions { adapter: AdapterChoice::Fallback, disable_subgroups: true, ..Default::default() };
        pollster::block_on(GpuContext::new(&options)).ok()
    })
    .as_ref()
}

/// A second device on the same adapter with the GPU kernel style (workgroup tiles, one element
/// per elementwise invocation), to test those variants on a CPU adapter.
pub fn tiled_ctx() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    ctx()?;
    CTX.get_or_init(|| {
        let options = GpuOptions {
            adapter: AdapterChoice::Fallback,
            style: Some(fifo_diffusion::gpu::KernelStyle::Tiled),
            ..Default::default()
        };
        pollster::block_on(GpuContext::new(&options)).ok()
    })
    .as_ref()
}

pub fn skip_or_fail<T>(why: &str) -> Option<T> {
    if std::env::var("FIFO_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("FIFO_REQUIRE_GPU=1 but no GPU adapter: {why}");
    }
    eprintln!("\n!!!!!!!! SKIPPING GPU TEST: no adapter ({why}) !!!!!!!!\n");
    None
}

/// Blocks on a future (tests are native).
pub fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

/// Named tolerances: |got - want| <= abs + rel * |want|.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub rel: f32,
    pub abs: f32,
}

/// Plain f32 arithmetic (one rounding per op, a few ulps).
pub const F32: Tolerance = Tolerance { rel: 1e-5, abs: 1e-6 };
/// f32 through the GPU's exp/log/sin (Vulkan allows a few ulps more there).
pub const F32_TRANSCENDENTAL: Tolerance = Tolerance { rel: 2e-5, abs: 2e-6 };
/// f16 storage or arithmetic.
pub const F16: Tolerance = Tolerance { rel: 2e-3, abs: 2e-3 };

impl Tolerance {
    /// A sum of `n` terms of magnitude ~1 drifts like sqrt(n) roundings.
    pub fn accumulating(self, n: usize) -> Self {
        let f = (n.max(1) as f32).sqrt();
        Self { rel: self.rel * f, abs: self.abs * f }
    }
}

#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same_nan = g.is_nan() && w.is_nan();
        let same_inf = g.is_infinite() && g == w;
        if same_nan || same_inf {
            continue;
        }
        let err = (g - w).abs();
        let bound = tol.abs + tol.rel * w.abs();
        // NaN errors fail too.
        if err.is_nan() || err > bound {
            panic!("{what}: element {i}: got {g}, want {w} (error {err:e} > {bound:e}; {tol:?})");
        }
    }
}

/// Deterministic uniform numbers in [lo, hi) (xorshift; no extra dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next_f32()).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_f32() * n as f32) as usize).min(n - 1)
    }
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    fifo_diffusion::gpu::contiguous_strides(shape)
}

/// Multi-index of linear index `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// Element of `data` (shape `shape`) at the numpy-broadcast position of `idx` (of a larger shape).
pub fn at_broadcast(data: &[f32], shape: &[usize], idx: &[usize]) -> f32 {
    let lead = idx.len() - shape.len();
    let st = strides(shape);
    let off: usize =
        shape.iter().enumerate().map(|(d, &n)| if n == 1 { 0 } else { idx[d + lead] * st[d] }).sum();
    data[off]
}
