//! LayerNorm and Group/InstanceNorm (affine, fused SiLU) vs f64 two-pass CPU statistics.

use fifo_diffusion::gpu::ops::norm::{group_norm, layer_norm, Affine};
use fifo_diffusion::gpu::{
    Activation, AdapterChoice, DType, GpuContext, GpuOptions, GpuTensor, ProgramBuilder,
};

use crate::{assert_close, ctx, run, Rng, Tolerance};

/// Normalisation divides by a std estimated from the data: a few ulps more than plain f32.
const NORM: Tolerance = Tolerance { rel: 2e-5, abs: 1e-5 };

fn cpu_normalise(x: &[f32], eps: f32) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    x.iter().map(|&v| (v as f64 - mean) / (var + eps as f64).sqrt()).collect()
}

#[test]
fn layer_norm_rows_with_and_without_affine() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(60);
    let (rows, d) = (7, 33);
    // An offset far from zero checks the two-pass variance.
    let x: Vec<f32> = rng.vec(rows * d, -1.0, 1.0).iter().map(|v| v + 100.0).collect();
    let gamma = rng.vec(d, 0.5, 1.5);
    let beta = rng.vec(d, -0.5, 0.5);
    let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let affine = Affine {
        gamma: GpuTensor::from_f32(ctx, "g", &gamma).unwrap(),
        beta: GpuTensor::from_f32(ctx, "b", &beta).unwrap(),
    };
    for with_affine in [false, true] {
        let out = GpuTensor::new(ctx, "y", DType::F32, rows * d).unwrap();
        let mut b = ProgramBuilder::new(ctx);
        layer_norm(&mut b, &gx, rows, d, with_affine.then_some(&affine), 1e-5, Activation::None, &out)
            .unwrap();
        run(run(b.build()).unwrap().run(ctx)).unwrap();
        let want: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let y = cpu_normalise(&x[r * d..(r + 1) * d], 1e-5);
                let (g, bt) = (&gamma, &beta);
                y.into_iter().enumerate().map(move |(j, v)| {
                    if with_affine {
                        (v * g[j] as f64 + bt[j] as f64) as f32
                    } else {
                        v as f32
                    }
                })
            })
            .collect();
        // x ~ 100 +- 1 in f32 carries ~1e-5 absolute rounding before normalising.
        assert_close(
            &format!("layer_norm affine={with_affine}"),
            &run(ctx.read_f32(&out)).unwrap(),
            &want,
            Tolerance { rel: 1e-4, abs: 1e-4 },
        );
    }
}

#[test]
fn group_and_instance_norm_with_fused_silu() {
    let Some(ctx) = ctx() else { return };
    group_norm_cases(ctx);
}

/// The statistics without subgroups (shared-memory tree), on the same adapter.
#[test]
fn group_norm_without_subgroups() {
    if ctx().is_none() {
        return;
    }
    let options =
        GpuOptions { adapter: AdapterChoice::Fallback, disable_subgroups: true, ..Default::default() };
    let ctx = run(GpuContext::new(&options)).unwrap();
    assert!(!ctx.has_subgroups());
    group_norm_cases(&ctx);
}

fn group_norm_cases(ctx: &GpuContext) {
    let mut rng = Rng::new(61);
    let shape = [2, 6, 5, 7];
    let (n, c, s) = (2, 6, 35);
    let x = rng.vec(n * c * s, -3.0, 3.0);
    let gamma = rng.vec(c, 0.5, 1.5);
    let beta = rng.vec(c, -0.5, 0.5);
    let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let affine = Affine {
        gamma: GpuTensor::from_f32(ctx, "g", &gamma).unwrap(),
        beta: GpuTensor::from_f32(ctx, "b", &beta).unwrap(),
    };
    for (groups, act) in [(3, Activation::Silu), (6, Activation::None), (1, Activation::Silu)] {
        let out = GpuTensor::new(ctx, "y", DType::F32, n * c * s).unwrap();
        let mut b = ProgramBuilder::new(ctx);
        group_norm(&mut b, &gx, &shape, groups, Some(&affine), 1e-5, act, &out).unwrap();
        let program = run(b.build()).unwrap();
        assert_eq!(program.keys()[0].contains(".subgroups."), ctx.has_subgroups(), "{:?}", program.keys());
        run(program.run(ctx)).unwrap();
        let per = c / groups * s;
        let mut want = vec![0.0f32; x.len()];
        for g in 0..n * groups {
            let y = cpu_normalise(&x[g * per..(g + 1) * per], 1e-5);
            for (j, v) in y.into_iter().enumerate() {
                let i = g * per + j;
                let ch = (i / s) % c;
                want[i] = act.apply((v * gamma[ch] as f64 + beta[ch] as f64) as f32);
            }
        }
        assert_close(
            &format!("group_norm groups={groups} {act:?}"),
            &run(ctx.read_f32(&out)).unwrap(),
            &want,
            NORM,
        );
    }
}
