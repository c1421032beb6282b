//! Branch-free f32 math that loops vectorise (a libm call per element does not): e^x and tanh
//! with Cephes' polynomials, within a few ulp of `f32::exp` and `f32::tanh`.

/// e^x. Overflows to infinity above ln(f32::MAX), underflows to 0 below the normal range,
/// propagates NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.0, 88.722_84);
    let rounded = clamped * LOG2E + ROUND;
    let n = rounded - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // n as an integer: `rounded` lies in [2^23, 2^24), where floats are consecutive integers, so
    // its bits count up from ROUND's. Unlike `n as i32` (a saturating conversion, which
    // LLVM leaves scalar) this vectorises, and it gives the same n.
    let n = rounded.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    // 2^n in two halves, so n = 128 (x near ln(f32::MAX)) stays representable.
    let half = n >> 1;
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let y = e * pow2(half) * pow2(n - half);
    if x > 88.722_84 {
        f32::INFINITY
    } else if x < -87.0 {
        // Below the clamp the true value is at most e^-87 ~ 1.6e-38 (denormal range).
        0.0
    } else {
        y
    }
}

/// tanh(x), Cephes' tanhf: an odd polynomial below |x| = 0.625, 1 - 2 / (e^2|x| + 1) above, both
/// computed and one selected so the loop stays branch-free. Propagates NaN.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let z = x * x;
    let small = ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
        - 3.333_328e-1)
        * z
        * x
        + x;
    let large = (1.0 - 2.0 / (exp(2.0 * x.abs()) + 1.0)).copysign(x);
    if x.abs() < 0.625 {
        small
    } else {
        large
    }
}

/// Lanes of the reductions below: a sequential sum is one long dependency chain the compiler
/// may not reorder (float addition is not associative), so the reductions keep this many
/// independent partial results, which vectorise; wide enough for two AVX-512 registers.
const LANES: usize = 16;

/// Σ f(x) over `x` in `LANES` interleaved partial sums, added pairwise at the end.
#[inline(always)]
pub fn sum_by<T: Copy, A>(x: &[T], f: impl Fn(T) -> A) -> A
where
    A: Copy + Default + std::ops::Add<Output = A>,
{
    let mut acc = [A::default(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = *a + f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a = *a + f(v);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = acc[i] + acc[i + width];
        }
    }
    acc[0]
}

/// The largest value (NaNs ignored, as `f32::max` does; -inf for an empty or all-NaN slice).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a = a.max(v);
    }
    acc.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_match_plain_loops() {
        for len in [0, 1, 15, 16, 17, 100, 1029] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.125).collect();
            // Multiples of 1/8 far below 2^24: every order of summation is exact.
            assert_eq!(sum_by(&x, |v| v), x.iter().sum::<f32>(), "{len}");
            let want = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
            assert_eq!(sum_by(&x, |v| v as f64 * v as f64), want, "{len}");
            assert_eq!(max(&x), x.iter().copied().fold(f32::NEG_INFINITY, f32::max), "{len}");
        }
        assert_eq!(max(&[f32::NAN, 2.0, f32::NAN]), 2.0);
        assert_eq!(max(&[f32::NAN]), f32::NEG_INFINITY);
    }

    #[test]
    fn tanh_is_within_a_few_ulp_of_libm() {
        let mut worst: f32 = 0.0;
        let mut x = -12.0f32;
        while x < 12.0 {
            let (got, want) = (tanh(x), x.tanh());
            if want != 0.0 {
                worst = worst.max(((got - want) / want).abs());
            }
            x += 0.000_731;
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        for x in [1e-30f32, -1e-7, 0.624_999, 0.625, 100.0, -100.0, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(((tanh(x) - x.tanh()) / x.tanh()).abs() < 4e-7, "{x}");
        }
        assert_eq!(tanh(0.0), 0.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        let mut worst: f32 = 0.0;
        let mut x = -86.9f32;
        while x < 88.7 {
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(-100.0), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }
}
