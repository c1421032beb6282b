//! Wider vectors for the elementwise loops without raising the build's target: the release build
//! targets baseline x86-64 (SSE2, four floats, and a scalar call for every float-to-int
//! conversion in `math::exp`), so loops that want more run through [`vectorised`], which compiles
//! its closure again with AVX2 + FMA and picks that copy where the CPU has them. A third copy
//! with AVX-512 runs with `FIFO_AVX512=1` only: it is not yet measured on a CPU that has
//! AVX-512 (`tools/device/cpu_check.sh` compares the two), and 512-bit code can lower the
//! clock of some of them. Rust never contracts `a * b + c` into an FMA on its own and never
//! reorders a float reduction, so every copy computes the same bits.

/// Runs `f`, compiled for AVX2 + FMA (or AVX-512, when asked) where the CPU supports them (x86-64 only;
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

/// The copy to run: AVX2 where the CPU has it, AVX-512 with `FIFO_AVX512=1` where it has that;
/// `FIFO_NO_AVX2=1` keeps the baseline copy (to compare them).
#[cfg(target_arch = "x86_64")]
fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| v != "0");
        let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
        let avx512 =
            std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl");
        match (avx2 && !set("FIFO_NO_AVX2"), avx512 && set("FIFO_AVX512")) {
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
