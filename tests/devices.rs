//! Several devices splitting each iteration's windows (the device-resident loop on each, only the
//! split's boundary frames exchanged) against one device running them all: bit for bit on two
//! devices of one adapter, within a stated tolerance across adapter kinds (Vulkan lavapipe + GL
//! llvmpipe), and checkpoints of a split run resume on one device.

mod onnx_common;

use fifo_diffusion::fifo::{FifoConfig, PromptSchedule, QueueLayout};
use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions, Traffic};
use fifo_diffusion::model::ModelPackage;
use fifo_diffusion::pipeline::{Frame, Generation, Models, RunOptions};
use fifo_diffusion::session::Backend;
use std::path::Path;
use std::sync::Arc;

/// Across adapter kinds the kernels are the same WGSL but compiled by different drivers, which
/// may contract multiply-adds differently: decoded bytes may differ by this many levels.
const MAX_LEVEL_DIFF_ACROSS_KINDS: u8 = 2;

const PACKAGE: &str = "tests/fixtures/loop/micro-t2v";

/// (partitions, lookahead, guidance, prompt): both window layouts, with and without guidance.
type Layout = (usize, bool, f64, &'static str);
const LAYOUTS: [Layout; 2] =
    [(2, true, 7.5, "a red circle moving right"), (3, false, 1.0, "a blue square moving left")];

/// Windows per device for two devices: 4 windows with lookahead (n = 2), 3 without (n = 3).
const SPLITS: [[usize; 2]; 2] = [[3, 1], [1, 2]];

fn package() -> ModelPackage {
    ModelPackage::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(PACKAGE)).unwrap()
}

fn config(package: &ModelPackage, (partitions, lookahead, guidance, _): Layout) -> FifoConfig {
    let mut config = Generation::config(package);
    (config.partitions, config.lookahead, config.guidance) = (partitions, lookahead, guidance);
    (config.seed, config.eta) = (3, 1.0);
    config
}

/// A device of its own (traffic counters see only this test's work).
fn open(adapter: AdapterChoice) -> Arc<GpuContext> {
    Arc::new(pollster::block_on(GpuContext::new(&GpuOptions { adapter, ..Default::default() })).unwrap())
}

/// A run on `devices`, with a fixed `split` or (`None`) balanced by measured time.
fn start(devices: &[Arc<GpuContext>], layout: Layout, split: Option<&[usize]>) -> Generation {
    let package = package();
    let config = config(&package, layout);
    let options = RunOptions {
        backend: Backend::Gpu,
        gpu: Some(devices[0].clone()),
        extra_gpus: devices[1..].to_vec(),
        window_split: split.map(<[usize]>::to_vec),
        ..Default::default()
    };
    pollster::block_on(async {
        let models = Models::load(package, options).await.unwrap();
        Generation::start(models, config, PromptSchedule::single(layout.3).unwrap()).await.unwrap()
    })
}

fn frames(run: &mut Generation, n: usize) -> Vec<Frame> {
    (0..n).map(|_| pollster::block_on(run.next_frame()).unwrap()).collect()
}

/// Asserts two runs wrote the same frames, bit for bit, naming the first that differs.
fn assert_same(got: &[Frame], want: &[Frame], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            g == w,
            "{what}: frame {} differs by up to {} levels",
            w.id,
            max_level_diff(std::slice::from_ref(g), std::slice::from_ref(w))
        );
    }
}

fn max_level_diff(a: &[Frame], b: &[Frame]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.rgb.iter().zip(&y.rgb).map(|(&p, &q)| p.abs_diff(q))).max().unwrap()
}

fn delta(after: Traffic, before: Traffic, iterations: u64) -> (u64, u64) {
    let n = iterations.max(1);
    ((after.submissions - before.submissions) / n, (after.bytes_read - before.bytes_read) / n)
}

#[test]
fn two_devices_of_one_adapter_write_one_devices_frames_bit_for_bit() {
    let Some(_) = onnx_common::gpu_context() else { return };
    for (layout, counts) in LAYOUTS.into_iter().zip(SPLITS) {
        let one = open(AdapterChoice::Fallback);
        let want = frames(&mut start(&[one], layout, None), 8);

        let two = [open(AdapterChoice::Fallback), open(AdapterChoice::Fallback)];
        let mut split = start(&two, layout, Some(&counts));
        assert_eq!(split.queue_placement(), "device", "{:?}", split.host_queue_reason());
        let mut got = frames(&mut split, 3);
        // Past the timed iterations: each device submits once per iteration and reads back only
        // the frames it sends (and the head device the decoded frame).
        let before: Vec<Traffic> = two.iter().map(|c| c.traffic()).collect();
        let iteration = split.scheduler().iteration();
        got.extend(frames(&mut split, 5));
        let iterations = split.scheduler().iteration() - iteration;
        assert_same(&got, &want, &format!("layout {layout:?}: two devices vs one"));

        let package = package();
        let layout_q = QueueLayout::new(&config(&package, layout));
        let (active, used, moved) = split.device_split().unwrap();
        assert_eq!((active, used), (vec![0, 1], counts.to_vec()), "a fixed split stays as asked");
        // One boundary: f/2 frames with lookahead (the neighbour's context half and the frame
        // moving across), one without.
        assert_eq!(moved, layout_q.head.max(1), "{layout:?}");
        let frame_bytes = 4 * package.latent.channels * package.latent.height * package.latent.width;
        let rgb_bytes = 3 * 4 * package.image.height * package.image.width;
        let (head_sends, tail_sends) = if layout_q.head > 0 { (layout_q.head - 1, 1) } else { (0, 1) };
        let traffic: Vec<(u64, u64)> =
            two.iter().zip(&before).map(|(c, &b)| delta(c.traffic(), b, iterations)).collect();
        assert_eq!(traffic[0], (1, (rgb_bytes + head_sends * frame_bytes) as u64), "{layout:?}: head device");
        assert_eq!(traffic[1], (1, (tail_sends * frame_bytes) as u64), "{layout:?}: tail device");
    }
}

/// Vulkan (lavapipe) and GL (llvmpipe) adapters: two kinds of device in one run.
#[test]
fn a_vulkan_and_a_gl_adapter_share_the_windows_within_tolerance() {
    let Some(_) = onnx_common::gpu_context() else { return };
    let adapters = pollster::block_on(GpuContext::adapters());
    let find = |backend: &str| adapters.iter().find(|a| a.backend == backend).map(|a| a.index);
    let (Some(vulkan), Some(gl)) = (find("Vulkan"), find("Gl")) else {
        if std::env::var("FIFO_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("FIFO_REQUIRE_GPU=1 but no Vulkan and GL adapter pair: {adapters:?}");
        }
        eprintln!("\n!!!!!!!! SKIPPING: no Vulkan + GL adapter pair !!!!!!!!\n");
        return;
    };
    let layout = LAYOUTS[0];
    let want = frames(&mut start(&[open(AdapterChoice::Index(vulkan))], layout, None), 6);
    let mixed = [open(AdapterChoice::Index(vulkan)), open(AdapterChoice::Index(gl))];
    // Balanced by measured window time: any split is right, as long as the frames are.
    let mut run = start(&mixed, layout, None);
    let got = frames(&mut run, 6);
    let diff = max_level_diff(&got, &want);
    assert!(diff <= MAX_LEVEL_DIFF_ACROSS_KINDS, "Vulkan + GL differ from Vulkan alone by {diff} levels");
    let (_, counts, _) = run.device_split().unwrap();
    assert_eq!(counts.iter().sum::<usize>(), QueueLayout::new(&config(&package(), layout)).windows().len());
}

/// A checkpoint of a split run holds every device's share of the queue: resuming it on one
/// device continues the uninterrupted run bit for bit.
#[test]
fn a_checkpoint_of_a_split_run_resumes_on_one_device() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let layout = LAYOUTS[0];
    let want = frames(&mut start(std::slice::from_ref(&ctx), layout, None), 6);
    let two = [open(AdapterChoice::Fallback), open(AdapterChoice::Fallback)];
    let mut split = start(&two, layout, Some(&[2, 2]));
    let head = frames(&mut split, 3);
    let checkpoint = pollster::block_on(split.checkpoint()).unwrap();
    assert_same(&frames(&mut split, 3), &want[3..], "the split run after a checkpoint");
    let options = RunOptions { backend: Backend::Gpu, gpu: Some(ctx.clone()), ..Default::default() };
    let mut resumed = pollster::block_on(async {
        let models = Models::load(package(), options).await.unwrap();
        Generation::resume(models, &checkpoint).await.unwrap()
    });
    assert_same(&head, &want[..3], "the split run");
    assert_same(&frames(&mut resumed, 3), &want[3..], "resumed on one device");
}

/// A device lost mid-run: the next frame fails with a device-lost error, and the run continues
/// on the device left from a checkpoint taken earlier, giving the frames of an uninterrupted
/// run; whether the lost device held the head (text encoder, decoder) or the tail.
#[test]
fn a_lost_device_leaves_the_run_to_the_others() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let layout = LAYOUTS[0];
    let want = frames(&mut start(std::slice::from_ref(&ctx), layout, None), 8);
    for lost in [1, 0] {
        let two = [open(AdapterChoice::Fallback), open(AdapterChoice::Fallback)];
        let mut run = start(&two, layout, Some(&[2, 2]));
        let mut got = frames(&mut run, 2);
        let checkpoint = pollster::block_on(run.checkpoint()).unwrap();
        got.extend(frames(&mut run, 2));
        two[lost].destroy();
        let error = pollster::block_on(run.next_frame()).unwrap_err().to_string();
        assert!(error.contains("lost"), "device {lost}: {error}");
        pollster::block_on(run.recover(&checkpoint, 4)).unwrap();
        assert_eq!(run.models().devices().len(), 1, "the lost device left the run");
        assert!(!run.models().devices()[0].is_lost());
        got.extend(frames(&mut run, 4));
        assert_same(&got, &want, &format!("device {lost} lost after frame 3"));
    }
}
