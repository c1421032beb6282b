//! Wider vectors for the elementwise loops without raising the build's target: the release build
//! targets baseline x86-64 (SSE2, four floats, and a scalar call for every float-to-int
//! conversion in `math::exp`), so loops that want more run through [`vectorised`], which compiles
//! its closure again with AVX2 + FMA and picks that copy where the CPU has them, or a third
//! copy with AVX-512 where it has that (`FIFO_AVX512=0` keeps AVX2, to compare). Measured on an
//! AVX-512 EPYC (Zen 4), the bench model on one thread: SiLU 0.64x, group norm + SiLU 0.82x,
//! attention 0.92x the AVX2 copy's time. Loops over rows of 8 floats or short spans (Winograd's
//! tiles, im2col) take [`vectorised_256`]: in 512-bit vectors they ran 3-6% slower. Rust never
//! contracts `a * b + c` into an FMA on its own and never reorders a float reduction, so every
//! copy computes the same bits.

/// Runs `f`, compiled for AVX-512 or AVX2 + FMA where the CPU supports them (x86-64 only;
/// elsewhere `f` as it is). Pass an `#[inline(always)] || ...` closure calling `#[inline]` code:
/// whatever the optimiser leaves behind a call keeps the baseline instructions (a closure
/// defined in another codegen unit is not inlined without the attribute).
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: the CPU supports AVX-512 F/VL, AVX2 and FMA (checked by `level`).
        Level::Avx512 => return unsafe { with_avx512(f) },
        // SAFETY: the CPU supports AVX2 and FMA (checked by `level`).
        Level::Avx2 => return unsafe { with_avx2(f) },
        Level::Baseline => {}
    }
    f()
}

/// [`vectorised`] capped at 256-bit vectors: for loops whose rows are 8 floats or short spans.
#[inline(always)]
pub fn vectorised_256<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: the CPU supports AVX2 and FMA (checked by `level`).
        Level::Avx512 | Level::Avx2 => return unsafe { with_avx2(f) },
        Level::Baseline => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether [`vectorised`] runs its AVX-512 copy, for kernels that carry their own AVX-512 code.
#[cfg(target_arch = "x86_64")]
pub fn avx512() -> bool {
    level() == Level::Avx512
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq)]
enum Level {
    Baseline,
    Avx2,
    Avx512,
}

/// The copy to run: the widest the CPU has; `FIFO_AVX512=0` stops at AVX2 and `FIFO_NO_AVX2=1`
/// keeps the baseline copy (to compare them).
#[cfg(target_arch = "x86_64")]
fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| v != "0");
        let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
        let avx512 =
            std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl");
        let off = |name: &str| std::env::var_os(name).is_some_and(|v| v == "0");
        match (avx2 && !set("FIFO_NO_AVX2"), avx512 && !off("FIFO_AVX512")) {
            (true, true) => Level::Avx512,
            (true, false) => Level::Avx2,
            _ => Level::Baseline,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::math::exp;

    #[test]
    fn every_copy_computes_the_same_bits() {
        let x: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.0437).collect();
        let run = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| x * exp(-x.abs()) + 0.25 * x).collect() };
        let plain = run(&x);
        let same = |got: Vec<f32>| got.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same(vectorised(|| run(&x))));
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                // SAFETY: checked just above.
                assert!(same(unsafe { with_avx2(|| run(&x)) }));
            }
            if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
                // SAFETY: checked just above.
                assert!(same(unsafe { with_avx512(|| run(&x)) }));
            }
        }
    }
}
