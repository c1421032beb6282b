//! On the CPU backend a UNet call's windows are split into equal parts, one per thread (or the
//! most that divide the batch), run side by side (`pipeline::denoiser`): the frames are the same
//! bits whatever the thread count, and the parts' session is the one built.
#![cfg(not(target_arch = "wasm32"))]

use fifo_diffusion::fifo::PromptSchedule;
use fifo_diffusion::model::ModelPackage;
use fifo_diffusion::pipeline::{Frame, Generation, Models, RunOptions};
use std::path::Path;

/// Two frames of the shipped model (2 partitions with lookahead and guidance: UNet calls of 8
/// windows) on a pool of `threads`, and the batch sizes the UNet was built for.
fn frames_on(threads: usize) -> (Vec<Frame>, Vec<usize>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        pollster::block_on(async {
            let package =
                ModelPackage::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes-t2v-tiny"))
                    .unwrap();
            let mut config = Generation::config(&package);
            (config.partitions, config.lookahead, config.seed) = (2, true, 5);
            let models = Models::load(package, RunOptions::default()).await.unwrap();
            let prompts = PromptSchedule::single("a blue square moving up on a white background").unwrap();
            let mut run = Generation::start(models, config, prompts).await.unwrap();
            let mut frames = Vec::new();
            for _ in 0..2 {
                frames.push(run.next_frame().await.unwrap());
            }
            (frames, run.models().unet_batches())
        })
    })
}

#[test]
fn split_calls_give_the_same_frames_as_whole_ones() {
    let (whole, batches) = frames_on(1);
    assert!(batches.contains(&8), "one thread: the whole batch of 8 ({batches:?})");
    // 4 threads: 4 parts of 2 windows; 3 threads: 2 parts of 4 (3 does not divide 8).
    for (threads, part) in [(4, 2), (3, 4)] {
        let (split, batches) = frames_on(threads);
        assert!(batches.contains(&part) && !batches.contains(&8), "{threads} threads: {batches:?}");
        assert!(split == whole, "{threads} threads: the frames differ from one thread's");
    }
}
