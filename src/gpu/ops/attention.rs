//! Fused attention softmax(scale * Q K^T) V that streams over keys (online softmax), so the
//! score matrix never exists: the attention fusion pass lowers MatMul-Scale-Softmax-MatMul (or the
//! Einsum form) here. Views carry any layout, e.g. torch's [B, L, H, D] permuted to [B, H, L, D].
//! Two forms, picked by the adapter's `KernelStyle`: register-blocked rows per invocation for CPU
//! adapters, and flash-attention tiles (with a key split and combine pass where the grid would
//! be small) for GPUs; see `Tiled`.

use bytemuck::{Pod, Zeroable};

use super::{float_storage, u32_of, WG_LINEAR};
use crate::gpu::context::KernelStyle;
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{fixed_loop, linear_workgroups, ProgramBuilder, MAX_WORKGROUPS};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::DType;
use crate::gpu::tensor::View;

/// Largest head size: the query and the accumulator live in registers.
const MAX_HEAD: usize = 256;

/// Query rows per invocation: each key/value load serves all of them (2.4x on lavapipe with four
/// rows of head size 40), as long as their registers fit: fewer rows for larger heads.
fn rows_per_invocation(head: usize) -> usize {
    match head {
        0..=64 => 4,
        65..=128 => 2,
        _ => 1,
    }
}

/// q [B0, B1, Lq, D], k [B0, B1, Lk, D], v [B0, B1, Lk, Dv] -> out [B0, B1, Lq, Dv]; k and v
/// may broadcast over the batch dims (shared heads). Rank-3 views are taken as B0 = 1.
#[derive(Clone, Debug)]
pub struct Attention {
    pub q: View,
    pub k: View,
    pub v: View,
    pub out: View,
    /// Usually 1/sqrt(D).
    pub scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    q_strides: [u32; 4],
    k_strides: [u32; 4],
    v_strides: [u32; 4],
    o_strides: [u32; 4],
    offsets: [u32; 4],
    lq: u32,
    lk: u32,
    d: u32,
    dv: u32,
    batch1: u32,
    batches: u32,
    scale: f32,
    splits: u32,
    chunk: u32,
    row_blocks: u32,
    _pad: [u32; 2],
}

const OP: &str = "attention";

fn rank4(v: &View) -> GpuResult<View> {
    match v.shape.len() {
        4 => Ok(v.clone()),
        3 => Ok(View {
            tensor: v.tensor.clone(),
            offset: v.offset,
            shape: [&[1], &v.shape[..]].concat(),
            strides: [&[0], &v.strides[..]].concat(),
        }),
        r => Err(shape_err(
            OP,
            format!("'{}' has rank {r}; expected [B0, B1, L, D] or [B, L, D]", v.tensor.name()),
        )),
    }
}

pub fn attention(b: &mut ProgramBuilder, a: &Attention) -> GpuResult<()> {
    let out = rank4(&a.out)?;
    let (b0, b1, lq, dv) = (out.shape[0], out.shape[1], out.shape[2], out.shape[3]);
    let q = rank4(&a.q)?;
    let d = q.shape[3];
    let k = rank4(&a.k)?;
    let lk = k.shape[2];
    let q = q.broadcast_to(&[b0, b1, lq, d])?;
    let k = k.broadcast_to(&[b0, b1, lk, d])?;
    let v = rank4(&a.v)?.broadcast_to(&[b0, b1, lk, dv])?;
    let ctx = b.context();
    let mut types = ShaderVariant::new(OP);
    for (t, name, part) in [(&q, "Q_T", "q"), (&k, "K_T", "k"), (&v, "V_T", "v"), (&out, "OUT_T", "out")] {
        t.check(OP)?;
        types = float_storage(ctx, OP, types, name, part, &t.tensor)?;
    }
    if lk == 0 {
        return Err(shape_err(OP, "no keys"));
    }
    if d.max(dv) > MAX_HEAD || d == 0 || dv == 0 {
        return Err(GpuError::Unsupported {
            op: OP,
            message: format!("head size {} (1 to {MAX_HEAD})", d.max(dv)),
        });
    }
    // Whole vec4 loads when every head row is contiguous and starts on a 4-element boundary.
    let aligned = |v: &View, n: usize| {
        n.is_multiple_of(4)
            && v.strides[3] == 1
            && v.offset.is_multiple_of(4)
            && v.strides[..3].iter().all(|s| s % 4 == 0)
    };
    let vec4 = aligned(&q, d) && aligned(&k, d) && aligned(&v, dv);
    let s4 = |v: &View| -> GpuResult<[u32; 4]> {
        Ok([
            u32_of(OP, v.strides[0])?,
            u32_of(OP, v.strides[1])?,
            u32_of(OP, v.strides[2])?,
            u32_of(OP, v.strides[3])?,
        ])
    };
    let batches = b0 * b1;
    let params = Params {
        q_strides: s4(&q)?,
        k_strides: s4(&k)?,
        v_strides: s4(&v)?,
        o_strides: s4(&out)?,
        offsets: [
            u32_of(OP, q.offset)?,
            u32_of(OP, k.offset)?,
            u32_of(OP, v.offset)?,
            u32_of(OP, out.offset)?,
        ],
        lq: u32_of(OP, lq)?,
        lk: u32_of(OP, lk)?,
        d: u32_of(OP, d)?,
        dv: u32_of(OP, dv)?,
        batch1: u32_of(OP, b1)?,
        batches: u32_of(OP, batches)?,
        scale: a.scale,
        splits: 1,
        chunk: 0,
        row_blocks: 0,
        _pad: [0; 2],
    };
    if ctx.style() == KernelStyle::Tiled {
        let tiled = Tiled { types, vec4, batches, lq, lk, d, dv };
        return tiled.push(b, params, &q, &k, &v, &out);
    }
    let rows = rows_per_invocation(d.max(dv));
    // The head size picks the register budget (like a tile size); lengths stay in uniforms.
    let mut variant = types
        .tag(&format!("f32.online.rows{rows}"))
        .define("ROWS", format!("{rows}u"))
        .tag(&format!("d{d}x{dv}"))
        .define("DQ4", d.div_ceil(4))
        .define("DV4", dv.div_ceil(4));
    if vec4 {
        variant = variant.tag("vec4").flag("VEC4");
    }
    let variant = variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR).define("ACT", "x");
    // A workgroup of one batch entry would run mostly on clamped rows: pack entries instead.
    let packed = lq < rows * WG_LINEAR as usize;
    // Where the subgroups are 8 lanes, they share each load of 8 keys (needs the whole-workgroup
    // layout: every invocation on one batch entry's keys).
    let subgroups8 = !packed && ctx.fixed_subgroup_size() == Some(8) && WG_LINEAR.is_multiple_of(8);
    let variant = if subgroups8 { variant.tag("sg8.keys8").flag("SG8") } else { variant.tag("keys2") };
    let max = MAX_WORKGROUPS as usize;
    let (variant, groups) = if packed {
        let threads = batches * lq.div_ceil(rows);
        (variant.tag("packed").flag("PACKED"), linear_workgroups(threads, WG_LINEAR))
    } else {
        let groups = [
            lq.div_ceil(rows * WG_LINEAR as usize) as u32,
            batches.min(max) as u32,
            batches.div_ceil(max) as u32,
        ];
        (variant, groups)
    };
    // Per pair of keys: the step, the head's chunks of the scores and of the values (loops of
    // constant trips, unrolled when short), over ROWS rows each (always short); then loading the
    // queries and storing the rows.
    let (r, dq4, dv4) = (rows as u64, d.div_ceil(4) as u64, dv.div_ceil(4) as u64);
    let per_pair =
        1 + 3 * fixed_loop(r) + fixed_loop(dq4) + dq4 * fixed_loop(r) + fixed_loop(dv4) + dv4 * fixed_loop(r);
    let around = 2 * fixed_loop(r) + r * fixed_loop(dq4) + r * (fixed_loop(dv4) + dv4 * fixed_loop(4));
    // SG8: per 8 keys the same loops (with the rescale's), over the head's chunks once.
    let loops = if subgroups8 {
        (lk as u64).div_ceil(8) * (per_pair + fixed_loop(r)) + around
    } else {
        (lk as u64).div_ceil(2) * per_pair + around
    };
    b.push(variant, &params, &[&q.tensor, &k.tensor, &v.tensor], &[&out.tensor], groups, loops)
}

/// Workgroup size of the tiled kernel.
const TILED_WG: usize = 64;
/// Workgroup memory every adapter gives (WebGPU's default `maxComputeWorkgroupStorageSize`,
/// which is what the device is requested with).
const WORKGROUP_BYTES: usize = 16384;
/// Query and accumulator chunks of four one invocation keeps in registers: a head of up to 64
/// on one invocation, larger heads over 2 or 4 lanes.
const CHUNKS_PER_LANE: usize = 16;
/// Enough workgroups for a large GPU (132 SMs on an H200, several workgroups each): the keys are
/// split until batch * row blocks * key ranges reaches this.
const TARGET_WORKGROUPS: usize = 1024;
/// Each key range walks at least this many tiles, so that the partial results and the combine
/// pass stay small next to the work.
const MIN_TILES_PER_RANGE: usize = 4;
const MAX_RANGES: usize = 64;

/// The GPU (KernelStyle::Tiled) form: flash-attention tiles through workgroup memory, and the
/// keys split over several workgroups (then merged by a combine pass) when batch * query row
/// blocks alone would leave a large GPU mostly idle (flash-decoding's split-K).
struct Tiled {
    types: ShaderVariant,
    vec4: bool,
    batches: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
}

/// Layout of the tiled kernel for one shape: lanes per query row, keys per tile, key ranges.
#[derive(Debug, PartialEq)]
struct TiledPlan {
    lanes: usize,
    tile: usize,
    row_blocks: usize,
    ranges: usize,
    /// Keys per range (a multiple of `tile`).
    chunk: usize,
}

fn tiled_plan(batches: usize, lq: usize, lk: usize, d: usize, dv: usize, max_binding: u64) -> TiledPlan {
    let (dq4, dv4) = (d.div_ceil(4), dv.div_ceil(4));
    let chunks = dq4.max(dv4);
    // Lanes per row: enough for the head's registers, more for short sequences (a block of 64
    // rows would be mostly empty), but never more lanes than chunks.
    let mut lanes = chunks.div_ceil(CHUNKS_PER_LANE).next_power_of_two();
    if lq < TILED_WG {
        let short = 1 << (TILED_WG / lq.max(1)).ilog2(); // the power of two <= 64 / lq
        lanes = lanes.max(short.min(chunks.next_power_of_two()));
    }
    let lanes = lanes.min(TILED_WG);
    let score_bytes = |tile: usize| if lanes > 1 { TILED_WG * tile * 4 } else { 0 };
    let tile = [32, 16, 8, 4, 2, 1]
        .into_iter()
        .find(|&t| t * (dq4 + dv4) * 16 + score_bytes(t) <= WORKGROUP_BYTES)
        .unwrap_or(1);
    let row_blocks = lq.div_ceil(TILED_WG / lanes);
    let tiles = lk.div_ceil(tile);
    let groups = batches * row_blocks;
    let mut ranges =
        TARGET_WORKGROUPS.div_ceil(groups.max(1)).min(tiles / MIN_TILES_PER_RANGE).clamp(1, MAX_RANGES);
    // The partial results must fit one binding (and 32-bit indices); fewer ranges otherwise.
    while ranges > 1 && (batches * lq * ranges * (dv + 2) * 4) as u64 > max_binding.min(u32::MAX as u64) {
        ranges /= 2;
    }
    let per_range = tiles.div_ceil(ranges);
    let ranges = tiles.div_ceil(per_range); // none empty
    TiledPlan { lanes, tile, row_blocks, ranges, chunk: per_range * tile }
}

impl Tiled {
    fn push(
        self,
        b: &mut ProgramBuilder,
        mut params: Params,
        q: &View,
        k: &View,
        v: &View,
        out: &View,
    ) -> GpuResult<()> {
        let ctx = b.context();
        let plan = tiled_plan(self.batches, self.lq, self.lk, self.d, self.dv, ctx.max_binding_bytes());
        let TiledPlan { lanes, tile, row_blocks, ranges, chunk } = plan;
        params.splits = u32_of(OP, ranges)?;
        params.chunk = u32_of(OP, chunk)?;
        params.row_blocks = u32_of(OP, row_blocks)?;
        let (dq4, dv4) = (self.d.div_ceil(4), self.dv.div_ceil(4));
        // Head sizes and tiling are compile-time (register arrays); lengths stay in uniforms.
        let mut variant = self
            .types
            .clone()
            .tag(&format!("f32.tiled.lanes{lanes}.bk{tile}"))
            .flag("TILED")
            .define("LANES", lanes)
            .define("BK", tile)
            .tag(&format!("d{}x{}", self.d, self.dv))
            .define("DQ4", dq4)
            .define("DV4", dv4)
            .define("DQL", dq4.div_ceil(lanes))
            .define("DVL", dv4.div_ceil(lanes));
        if lanes > 1 {
            variant = variant.flag("SPLIT_HEAD");
        }
        if self.vec4 {
            variant = variant.tag("vec4").flag("VEC4");
        }
        variant = variant.tag(&format!("wg{TILED_WG}")).define("WG", TILED_WG).define("ACT", "x");
        let groups = linear_workgroups(self.batches * row_blocks * ranges, 1);
        let reads = [&q.tensor, &k.tensor, &v.tensor];
        // Per tile of a key range: the step, the cooperative loads of K and V (every WG-th
        // element), the scores (BK x DQL), the lanes' sums (SPLIT_HEAD: BK x LANES), the max,
        // the rescale and the values (BK x DVL); constant-trip loops count when not unrolled.
        let (bk, ql, vl, n) =
            (tile as u64, dq4.div_ceil(lanes) as u64, dv4.div_ceil(lanes) as u64, lanes as u64);
        let wg = TILED_WG as u64;
        let per_tile = 1
            + (bk * dq4 as u64).div_ceil(wg)
            + (bk * dv4 as u64).div_ceil(wg)
            + 5 * fixed_loop(bk)
            + bk * (fixed_loop(ql) + fixed_loop(n) + fixed_loop(vl))
            + fixed_loop(vl);
        let around = 2 * fixed_loop(ql.max(vl)) + vl * fixed_loop(4);
        let loops = (chunk as u64).div_ceil(bk) * per_tile + around;
        if ranges == 1 {
            return b.push(variant, &params, &reads, &[&out.tensor], groups, loops);
        }
        let partial =
            b.scratch("attention partials", DType::F32, self.batches * self.lq * ranges * (self.dv + 2))?;
        b.push(variant.tag("split").flag("SPLIT"), &params, &reads, &[&partial], groups, loops)?;
        let combine = self.types.tag("combine").flag("COMBINE").define("WG", WG_LINEAR).define("ACT", "x");
        let threads = self.batches * self.lq * self.dv;
        // Two loops over the key ranges.
        let groups = linear_workgroups(threads, WG_LINEAR);
        b.push(combine, &params, &[&partial], &[&out.tensor], groups, 2 * ranges as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_plan_splits_keys_only_when_the_grid_is_small() {
        let big = u64::MAX;
        // The peer benchmark's shape: 8 x 16 row blocks alone would be 128 workgroups.
        let p = tiled_plan(8, 1024, 1024, 40, 40, big);
        assert_eq!(p, TiledPlan { lanes: 1, tile: 32, row_blocks: 16, ranges: 8, chunk: 128 });
        // Plenty of workgroups already: no split.
        assert_eq!(tiled_plan(512, 8, 8, 64, 64, big).ranges, 1);
        // Temporal-like short sequences share a row over lanes.
        assert_eq!(tiled_plan(512, 8, 8, 64, 64, big).lanes, 8);
        // Head 160: four lanes for the registers, a smaller tile for workgroup memory.
        let p = tiled_plan(2, 70, 5, 160, 160, big);
        assert_eq!((p.lanes, p.tile, p.ranges), (4, 8, 1));
        // Every range holds keys; the binding limit caps the partial results.
        for (lk, lq) in [(300, 33), (1000, 1), (129, 3)] {
            let p = tiled_plan(1, lq, lk, 12, 20, big);
            assert!(p.chunk * (p.ranges - 1) < lk && p.chunk * p.ranges >= lk, "{p:?}");
        }
        assert_eq!(tiled_plan(1, 1024, 4096, 40, 40, 1 << 20).ranges, 4);
        assert_eq!(tiled_plan(1, 1024, 4096, 40, 40, 1 << 16).ranges, 1);
    }
}
