//! Counter-based Gaussian noise.
//!
//! Every noise draw of a run is a pure function of `(seed, frame id, DDIM index, purpose)`, so the
//! result never depends on how windows are batched, ordered or split across devices, a run
//! resumes exactly, and native and wasm32 agree bit for bit (transcendentals come from `libm`,
//! not from the platform's math library).
//!
//! The generator is Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
//! SC 2011), the counter-based generator of Random123, cuRAND and JAX. Uniforms become normals by
//! the Box-Muller transform in f64. `tools/reference/philox.py` is an independent transcription.

use serde::{Deserialize, Serialize};

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: maps a 128-bit counter and a 64-bit key to 128 random bits.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Why a noise tensor is drawn. Part of the counter, so draws for different purposes never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum NoisePurpose {
    /// A frame's initial pure noise when it enters the queue.
    Enqueue = 1,
    /// The `sigma * z` term of the DDIM step at a given index.
    Step = 2,
    /// Forward-noising a sampled clip onto the diagonal.
    Renoise = 3,
    /// The initial noise of an ordinary f-frame clip sample.
    ClipInit = 4,
    /// The step noise of that clip sampler.
    ClipStep = 5,
}

/// The identity of one noise tensor: the key of the counter-based generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoiseKey {
    pub seed: u64,
    /// Absolute frame id: 0 is the first emitted frame, warm-up frames are negative.
    pub frame: i64,
    /// DDIM index (0 = cleanest).
    pub index: u16,
    pub purpose: NoisePurpose,
}

impl NoiseKey {
    fn counter(&self, block: u32) -> [u32; 4] {
        let frame = self.frame as u64;
        [
            block,
            frame as u32,
            (frame >> 32) as u32,
            (u32::from(self.purpose as u16) << 16) | u32::from(self.index),
        ]
    }

    fn philox_key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// Fills `out` with standard normal samples; element `i` depends only on the key and `i`.
    pub fn fill_normal(&self, out: &mut [f32]) {
        let key = self.philox_key();
        for (block, chunk) in out.chunks_mut(4).enumerate() {
            let r = philox4x32_10(self.counter(block as u32), key);
            let pair = |a: u32, b: u32| {
                let radius = libm::sqrt(-2.0 * libm::log(unit_open(a)));
                let angle = std::f64::consts::TAU * unit_open(b);
                [radius * libm::cos(angle), radius * libm::sin(angle)]
            };
            let [z0, z1] = pair(r[0], r[1]);
            let [z2, z3] = pair(r[2], r[3]);
            for (dst, z) in chunk.iter_mut().zip([z0, z1, z2, z3]) {
                *dst = z as f32;
            }
        }
    }
}

/// Maps 32 random bits to the open interval (0, 1): never 0, so the logarithm is finite.
fn unit_open(bits: u32) -> f64 {
    (f64::from(bits) + 0.5) * (1.0 / 4_294_967_296.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, philox4x32_10).
    #[test]
    fn philox_matches_random123_known_answers() {
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    fn key(frame: i64, index: u16, purpose: NoisePurpose) -> NoiseKey {
        NoiseKey { seed: 321, frame, index, purpose }
    }

    #[test]
    fn prefix_of_a_longer_draw_is_the_shorter_draw() {
        let mut short = vec![0.0; 7];
        let mut long = vec![0.0; 1000];
        key(5, 3, NoisePurpose::Step).fill_normal(&mut short);
        key(5, 3, NoisePurpose::Step).fill_normal(&mut long);
        assert_eq!(short[..], long[..7]);
    }

    #[test]
    fn every_field_of_the_key_changes_the_draw() {
        let draw = |k: NoiseKey| {
            let mut v = vec![0.0; 8];
            k.fill_normal(&mut v);
            v
        };
        let base = draw(key(5, 3, NoisePurpose::Step));
        assert_ne!(base, draw(key(6, 3, NoisePurpose::Step)));
        assert_ne!(base, draw(key(5, 4, NoisePurpose::Step)));
        assert_ne!(base, draw(key(5, 3, NoisePurpose::Enqueue)));
        assert_ne!(base, draw(NoiseKey { seed: 322, ..key(5, 3, NoisePurpose::Step) }));
        assert_ne!(base, draw(key(5 - (1 << 32), 3, NoisePurpose::Step)));
    }

    #[test]
    fn samples_are_standard_normal() {
        let mut v = vec![0.0f32; 200_000];
        key(-17, 9, NoisePurpose::Renoise).fill_normal(&mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        let kurt = v.iter().map(|&x| (f64::from(x) - mean).powi(4)).sum::<f64>() / n / (var * var);
        let lag1 = v.windows(2).map(|w| f64::from(w[0]) * f64::from(w[1])).sum::<f64>() / n;
        // Standard errors at n = 2e5: mean 0.0022, variance 0.0032, kurtosis 0.011, lag-1 0.0022.
        assert!(mean.abs() < 0.012, "mean {mean}");
        assert!((var - 1.0).abs() < 0.016, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.06, "kurtosis {kurt}");
        assert!(lag1.abs() < 0.012, "lag-1 correlation {lag1}");
    }
}
