//! Wider vectors for the elementwise loops without raising the build's target: the release build
//! targets baseline x86-64 (SSE2, four floats, and a scalar call for every float-to-int
//! conversion in `math::exp`), so loops that want AVX2 run through [`vectorised`], which compiles
//! its closure a second time with AVX2 and FMA enabled and picks that copy when the CPU has them.
//! Rust never contracts `a * b + c` into an FMA on its own, so both copies compute the same bits.

/// Runs `f`, compiled for AVX2 + FMA where the CPU supports them (x86-64 only; elsewhere `f` as
/// it is). Pass an `#[inline(always)] || ...` closure calling `#[inline]` code: whatever the
/// optimiser leaves behind a call keeps the baseline instructions (a closure defined in another
/// codegen unit is not inlined without the attribute).
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { with_avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    // `FIFO_NO_AVX2=1` keeps the baseline copy (to compare the two).
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::env::var_os("FIFO_NO_AVX2").is_none_or(|v| v == "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::math::exp;

    #[test]
    fn both_copies_compute_the_same_bits() {
        let x: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.0437).collect();
        let run = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| x * exp(-x.abs()) + 0.25 * x).collect() };
        let wide = vectorised(|| run(&x));
        let plain = run(&x);
        assert!(wide.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
