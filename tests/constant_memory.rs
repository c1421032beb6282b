//! Memory held by the scheduler is O(queue): after the first iterations the loop allocates
//! nothing, however many frames it produces.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::ToyDenoiser;
use fifo_diffusion::fifo::{FifoConfig, FifoScheduler, InitMode, PromptSchedule};
use fifo_diffusion::schedule::DiffusionSchedule;
use pollster::block_on;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        let live = LIVE_BYTES.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK_BYTES.fetch_max(live, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_loop_allocates_nothing_once_running() {
    for (lookahead, init, windows_per_call) in
        [(true, InitMode::Noise, usize::MAX), (false, InitMode::Clip, 1), (true, InitMode::Clip, 3)]
    {
        let config = FifoConfig {
            window: 8,
            partitions: 4,
            lookahead,
            eta: 1.0,
            guidance: 7.5,
            seed: 5,
            init,
            frame_shape: vec![4, 8, 8],
            schedule: DiffusionSchedule::videocrafter(),
        };
        let mut model = ToyDenoiser::new(config.schedule.alphas_cumprod(), vec![0.0, 0.5, 0.1]);
        let prompts = PromptSchedule::parse("0: a\n50..90: b\n300: a").unwrap();
        let mut s = block_on(FifoScheduler::start(config, prompts, &mut model)).unwrap();
        s.set_windows_per_call(windows_per_call);
        // One executor for the whole run: pollster allocates a waker per `block_on`.
        let (allocations, peak) = block_on(async {
            for _ in 0..64 {
                s.next_frame(&mut model).await.unwrap();
            }
            let counts = (ALLOCATIONS.load(Relaxed), PEAK_BYTES.load(Relaxed));
            for _ in 64..1_000 {
                s.next_frame(&mut model).await.unwrap();
            }
            counts
        });
        assert_eq!(ALLOCATIONS.load(Relaxed), allocations, "allocations between frame 64 and 1,000");
        assert_eq!(PEAK_BYTES.load(Relaxed), peak, "peak bytes grew between frame 64 and 1,000");
    }
}
