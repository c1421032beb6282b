//! Corrupt, truncated and mutated model bytes give errors, never panics (the fuzz target in
//! fuzz/ explores further; this runs in every `cargo test`).

mod onnx_common;

use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
use onnx_common::{fixtures_root, load_fixture};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// xorshift64*: deterministic mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Builds (and, if that succeeds, runs) a model; returns whether it built, or the panic.
fn survives(bytes: &[u8], fixture: &onnx_common::Fixture) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let built =
            Session::build(ModelSource::Bytes(bytes), &fixture.input_shapes(), &SessionOptions::default());
        if let Ok(session) = &built {
            let _ = session.run(fixture.input_map());
        }
        built.is_ok()
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn mutated_and_truncated_models_never_panic() {
    let fixture = load_fixture(&fixtures_root().join("models/unet_torchscript_op17"));
    let original = std::fs::read(&fixture.model).unwrap();
    let mut rng = Rng(0x5eed_f1f0);
    let (mut panics, mut built) = (Vec::new(), 0);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for round in 0..400 {
        let mut bytes = original.clone();
        match round % 4 {
            0 => bytes.truncate(rng.below(original.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            _ => {
                let (i, n) = (rng.below(bytes.len()), 1 + rng.below(16));
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
        }
        match survives(&bytes, &fixture) {
            Ok(ok) => built += ok as usize,
            Err(message) => panics.push(format!("round {round}: {message}")),
        }
    }
    std::panic::set_hook(quiet);
    // Flips inside weights still load: those models must also run without a panic.
    assert!(built > 20, "only {built} mutated models built; the run path went untested");
    assert!(panics.is_empty(), "{} mutations panicked:\n{}", panics.len(), panics.join("\n"));
}

#[test]
fn garbage_and_empty_input_are_errors() {
    for bytes in [&b""[..], b"not an onnx model at all", &[0xff; 64]] {
        assert!(Session::build(ModelSource::Bytes(bytes), &Default::default(), &SessionOptions::default())
            .is_err());
    }
}
