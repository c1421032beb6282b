//! The device-resident FIFO loop (GPU backend: queue, tables and step on the device, one
//! submission per iteration) against the scheduler's own host loop running the same graphs on
//! the same device, on two packages with different layouts (the shipped model: v-prediction,
//! cosine betas, 8 frames; the ModelScope export: epsilon, scaled-linear betas, 4 frames).

mod onnx_common;

use fifo_diffusion::fifo::{FifoConfig, PromptSchedule};
use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions};
use fifo_diffusion::model::ModelPackage;
use fifo_diffusion::pipeline::{Frame, Generation, Models, RunOptions};
use fifo_diffusion::session::Backend;
use std::path::Path;
use std::sync::Arc;

/// Decoded bytes may differ by this many levels between the loops: the step and guidance are
/// the same f32 expressions, but the device may contract them into fused multiply-adds.
const MAX_LEVEL_DIFF: u8 = 1;

struct Package {
    dir: &'static str,
    prompt: &'static str,
    partitions: usize,
    lookahead: bool,
    guidance: f64,
}

/// A micro package (tools/export/micro.py: a UNet of a few ops that still mixes space, time,
/// timestep and context) keeps these tests to seconds on a software adapter; the shipped model
/// goes through the device loop in native/tests/generate.rs.
const PACKAGES: [Package; 2] = [
    Package {
        dir: "tests/fixtures/loop/micro-t2v",
        prompt: "a red circle moving right",
        partitions: 2,
        lookahead: true,
        guidance: 7.5,
    },
    Package {
        dir: "tests/fixtures/loop/micro-t2v",
        prompt: "a blue square moving left",
        partitions: 3,
        lookahead: false,
        guidance: 1.0,
    },
];

fn load(dir: &str) -> ModelPackage {
    ModelPackage::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap()
}

/// Step noise on, the layout and guidance of `p`.
fn config(package: &ModelPackage, p: &Package, seed: u64) -> FifoConfig {
    let mut config = Generation::config(package);
    (config.partitions, config.lookahead, config.guidance) = (p.partitions, p.lookahead, p.guidance);
    (config.seed, config.eta) = (seed, 1.0);
    config
}

fn start(ctx: &Arc<GpuContext>, p: &Package, host_queue: bool, seed: u64) -> Generation {
    let package = load(p.dir);
    let config = config(&package, p, seed);
    let options =
        RunOptions { backend: Backend::Gpu, gpu: Some(ctx.clone()), host_queue, ..Default::default() };
    pollster::block_on(async {
        let models = Models::load(package, options).await.unwrap();
        let prompts = PromptSchedule::single(p.prompt).unwrap();
        Generation::start(models, config, prompts).await.unwrap()
    })
}

fn frames(run: &mut Generation, n: usize) -> Vec<Frame> {
    (0..n).map(|_| pollster::block_on(run.next_frame()).unwrap()).collect()
}

fn max_level_diff(a: &Frame, b: &Frame) -> u8 {
    a.rgb.iter().zip(&b.rgb).map(|(&x, &y)| x.abs_diff(y)).max().unwrap()
}

#[test]
fn the_device_loop_writes_the_host_loops_frames_with_one_submission_per_iteration() {
    let Some(shared) = onnx_common::gpu_context() else { return };
    // A device of its own: the traffic counters must not see the other tests' work.
    let options = GpuOptions { adapter: AdapterChoice::Fallback, ..Default::default() };
    let ctx = Arc::new(pollster::block_on(GpuContext::new(&options)).unwrap());
    assert_eq!(ctx.name(), shared.name());
    for p in &PACKAGES {
        let mut host = start(&ctx, p, true, 5);
        assert_eq!(host.queue_placement(), "host");
        let mut want = frames(&mut host, 1);
        let host_traffic = traffic_of(&ctx, &mut host, &mut want);

        let mut device = start(&ctx, p, false, 5);
        assert_eq!(device.queue_placement(), "device", "{}: {:?}", p.dir, device.host_queue_reason());
        let mut got = frames(&mut device, 1);
        let device_traffic = traffic_of(&ctx, &mut device, &mut got);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.id, g.width, g.height), (w.id, w.width, w.height));
            let diff = max_level_diff(g, w);
            assert!(diff <= MAX_LEVEL_DIFF, "{}: frame {} differs by {diff} levels", p.dir, g.id);
        }
        assert_eq!(device_traffic.submissions, 1.0, "{}: one submission per iteration", p.dir);
        let package = load(p.dir);
        let frame_bytes = (3 * package.image.height * package.image.width * 4) as f64;
        assert_eq!(device_traffic.bytes_read, frame_bytes, "{}: only the frame is read back", p.dir);
        // The host loop uploads every window's latents and contexts and reads the model output
        // back; the device loop uploads the plan's tables and the step noise.
        assert!(host_traffic.bytes_read > 2.0 * frame_bytes, "{}: {host_traffic:?}", p.dir);
        assert!(
            device_traffic.bytes_written < host_traffic.bytes_written,
            "{}: device loop {device_traffic:?}, host loop {host_traffic:?}",
            p.dir
        );
    }
}

/// Per-iteration traffic over five more frames (every iteration emits after the first frame).
struct PerIteration {
    submissions: f64,
    bytes_written: f64,
    bytes_read: f64,
}

impl std::fmt::Debug for PerIteration {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{} submissions, {} B up, {} B down", self.submissions, self.bytes_written, self.bytes_read)
    }
}

fn traffic_of(ctx: &GpuContext, run: &mut Generation, frames_so_far: &mut Vec<Frame>) -> PerIteration {
    let (before, iteration) = (ctx.traffic(), run.scheduler().iteration());
    frames_so_far.extend(frames(run, 5));
    let (after, n) = (ctx.traffic(), (run.scheduler().iteration() - iteration) as f64);
    assert_eq!(n, 5.0);
    PerIteration {
        submissions: (after.submissions - before.submissions) as f64 / n,
        bytes_written: (after.bytes_written - before.bytes_written) as f64 / n,
        bytes_read: (after.bytes_read - before.bytes_read) as f64 / n,
    }
}

/// A checkpoint taken on the device loop holds the device's queue: resuming it (on the device
/// loop again, or on the host loop) continues the uninterrupted run.
#[test]
fn checkpoints_of_the_device_loop_resume_exactly() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let p = &PACKAGES[0];
    let mut whole = start(&ctx, p, false, 9);
    let want = frames(&mut whole, 5);

    let mut first = start(&ctx, p, false, 9);
    let head = frames(&mut first, 2);
    let checkpoint = pollster::block_on(first.checkpoint()).unwrap();
    // Taking a checkpoint does not disturb the running loop.
    assert_eq!(frames(&mut first, 3), want[2..]);
    for host_queue in [false, true] {
        let options =
            RunOptions { backend: Backend::Gpu, gpu: Some(ctx.clone()), host_queue, ..Default::default() };
        let mut resumed = pollster::block_on(async {
            let models = Models::load(load(p.dir), options).await.unwrap();
            Generation::resume(models, &checkpoint).await.unwrap()
        });
        let rest = frames(&mut resumed, 3);
        assert_eq!(head, want[..2]);
        for (g, w) in rest.iter().zip(&want[2..]) {
            let diff = max_level_diff(g, w);
            if host_queue {
                assert!(diff <= MAX_LEVEL_DIFF, "host loop after a device checkpoint: {diff} levels");
            } else {
                assert!(g == w, "the device loop resumed frame {} differs by {diff} levels", g.id);
            }
        }
    }
}
