//! Fused attention softmax(scale * Q K^T) V that streams over keys (online softmax), so the
//! score matrix never exists: the attention fusion pass lowers MatMul-Scale-Softmax-MatMul (or the
//! Einsum form) here. Views carry any layout, e.g. torch's [B, L, H, D] permuted to [B, H, L, D].

use bytemuck::{Pod, Zeroable};

use super::{float_storage, u32_of, WG_LINEAR};
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder, MAX_WORKGROUPS};
use crate::gpu::shader::ShaderVariant;
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
    _pad: u32,
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
        n % 4 == 0 && v.strides[3] == 1 && v.offset % 4 == 0 && v.strides[..3].iter().all(|s| s % 4 == 0)
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
        _pad: 0,
    };
    let rows = rows_per_invocation(d.max(dv));
    // The head size picks the register budget (like a tile size); lengths stay in uniforms.
    let mut variant = types
        .tag(&format!("f32.online.rows{rows}.keys2"))
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
    b.push(variant, &params, &[&q.tensor, &k.tensor, &v.tensor], &[&out.tensor], groups)
}
