//! The FIFO loop's kernels (`shaders/fifo.wgsl`): prompt-context blending per model row, the
//! guided DDIM step of every written slot, single-frame moves. Their tables (which rows, slots
//! and frames) are storage buffers the caller rewrites each iteration; see `pipeline::device_loop`.

use bytemuck::{Pod, Zeroable};

use super::{u32_of, WG_LINEAR};
use crate::gpu::error::{shape_err, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{DType, GpuTensor};

/// Marks an update without noise in the step table.
pub const NO_NOISE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    frame_len: u32,
    total: u32,
    uncond_offset: u32,
    entry: u32,
    guidance: f32,
    divisor: f32,
    _pad: [u32; 2],
}

fn variant(entry: &str) -> ShaderVariant {
    // `ACT` is for common.wgsl's activation helper, unused here.
    ShaderVariant::new("fifo")
        .tag(&entry.to_lowercase())
        .flag(entry)
        .define("WG", WG_LINEAR)
        .define("ACT", "x")
}

fn expect(op: &'static str, t: &GpuTensor, dtype: DType, len: usize) -> GpuResult<()> {
    if t.dtype() != dtype || t.len() < len {
        return Err(shape_err(
            op,
            format!("'{}' is {} x {}; needs {} x {len}", t.name(), t.len(), t.dtype().name(), dtype.name()),
        ));
    }
    Ok(())
}

/// `dst[r] = (1 - mix) prompts[first] + mix prompts[second]` for each of `rows` rows of
/// `context_len` values; `table` holds `[first, second, mix bits, 0]` per row.
pub fn blend_contexts(
    b: &mut ProgramBuilder,
    prompts: &GpuTensor,
    table: &GpuTensor,
    rows: usize,
    context_len: usize,
    dst: &GpuTensor,
) -> GpuResult<()> {
    const OP: &str = "fifo.context";
    expect(OP, prompts, DType::F32, context_len)?;
    expect(OP, table, DType::I32, 4 * rows)?;
    expect(OP, dst, DType::F32, rows * context_len)?;
    let total = rows * context_len;
    let params = Params {
        frame_len: u32_of(OP, context_len)?,
        total: u32_of(OP, total)?,
        uncond_offset: 0,
        entry: 0,
        guidance: 0.0,
        divisor: 1.0,
        _pad: [0; 2],
    };
    b.push(variant("CONTEXT"), &params, &[prompts, table], &[dst], linear_workgroups(total, WG_LINEAR), 0)
}

/// The guided DDIM step in place on `queue` for `updates` frames: with `m = u + g (c - u)` (or
/// `c` when `guidance` is `None`), `x' = c_x x + c_model m + c_noise z`. `table` holds
/// `[slot, row, index, noise frame or NO_NOISE]` per update, `coefficients` `[c_x, c_model,
/// c_noise, 0]` per DDIM index; unconditional rows start `uncond_rows` rows after their
/// conditional ones.
#[allow(clippy::too_many_arguments)]
pub fn ddim_step(
    b: &mut ProgramBuilder,
    model: &GpuTensor,
    noise: &GpuTensor,
    table: &GpuTensor,
    coefficients: &GpuTensor,
    queue: &GpuTensor,
    updates: usize,
    frame_len: usize,
    guidance: Option<(f32, usize)>,
) -> GpuResult<()> {
    const OP: &str = "fifo.step";
    expect(OP, table, DType::I32, 4 * updates)?;
    for t in [model, noise, queue] {
        expect(OP, t, DType::F32, frame_len)?;
    }
    expect(OP, coefficients, DType::F32, 4)?;
    let total = updates * frame_len;
    let (guidance, uncond_rows) = guidance.unwrap_or((1.0, 0));
    let params = Params {
        frame_len: u32_of(OP, frame_len)?,
        total: u32_of(OP, total)?,
        uncond_offset: u32_of(OP, uncond_rows * frame_len)?,
        entry: 0,
        guidance,
        divisor: 1.0,
        _pad: [0; 2],
    };
    let reads = [model, noise, table, coefficients];
    b.push(variant("STEP"), &params, &reads, &[queue], linear_workgroups(total, WG_LINEAR), 0)
}

/// `dst[frame to] = src[frame from] / divisor` for entry `entry` of `table` (`[from, to]` pairs).
pub fn move_frame(
    b: &mut ProgramBuilder,
    src: &GpuTensor,
    table: &GpuTensor,
    entry: usize,
    frame_len: usize,
    divisor: f32,
    dst: &GpuTensor,
) -> GpuResult<()> {
    const OP: &str = "fifo.move";
    expect(OP, table, DType::I32, 2 * (entry + 1))?;
    expect(OP, src, DType::F32, frame_len)?;
    expect(OP, dst, DType::F32, frame_len)?;
    let params = Params {
        frame_len: u32_of(OP, frame_len)?,
        total: u32_of(OP, frame_len)?,
        uncond_offset: 0,
        entry: u32_of(OP, entry)?,
        guidance: 0.0,
        divisor,
        _pad: [0; 2],
    };
    b.push(variant("MOVE"), &params, &[src, table], &[dst], linear_workgroups(frame_len, WG_LINEAR), 0)
}
