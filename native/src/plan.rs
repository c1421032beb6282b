//! `fifo plan`: what the scheduler will do, without a model.

use clap::Args;
use fifo_diffusion::fifo::{FifoConfig, InitMode, QueueLayout};
use fifo_diffusion::schedule::{BetaSchedule, DiffusionSchedule, Prediction, StepTable, TimestepSpacing};

#[derive(Args)]
pub struct PlanArgs {
    /// Frames the model sees at once (f).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Latent partitions (n); the diagonal has f*n noise levels.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Turn lookahead denoising off.
    #[arg(long)]
    no_lookahead: bool,
    /// DDIM eta (0 = deterministic).
    #[arg(long, default_value_t = 1.0)]
    eta: f64,
    /// Beta schedule: scaled-linear, linear or cosine.
    #[arg(long, default_value = "scaled-linear")]
    betas: String,
    /// Model prediction: epsilon, v or sample.
    #[arg(long, default_value = "epsilon")]
    prediction: String,
    /// Timestep spacing: official, leading or trailing.
    #[arg(long, default_value = "official")]
    spacing: String,
    /// Rectified flow (Wan 2.1) with this shift (3 at 480p, 5 at 720p) instead of --betas,
    /// --prediction and --spacing; needs --eta 0.
    #[arg(long)]
    flow_shift: Option<f64>,
    /// Queue start: clip (re-noise a sampled clip) or noise (warm up from pure noise).
    #[arg(long, default_value = "clip")]
    init: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_config(a: &PlanArgs) -> Result<FifoConfig, String> {
    let betas = match a.betas.as_str() {
        "scaled-linear" => BetaSchedule::ScaledLinear { start: 0.00085, end: 0.012 },
        "linear" => BetaSchedule::Linear { start: 1e-4, end: 0.02 },
        "cosine" => BetaSchedule::Cosine,
        other => return Err(format!("unknown --betas `{other}`: use scaled-linear, linear or cosine")),
    };
    let prediction = match a.prediction.as_str() {
        "epsilon" => Prediction::Epsilon,
        "v" => Prediction::VPrediction,
        "sample" => Prediction::Sample,
        other => return Err(format!("unknown --prediction `{other}`: use epsilon, v or sample")),
    };
    let spacing = match a.spacing.as_str() {
        "official" => TimestepSpacing::OfficialLinspace,
        "leading" => TimestepSpacing::Leading { offset: 1 },
        "trailing" => TimestepSpacing::Trailing,
        other => return Err(format!("unknown --spacing `{other}`: use official, leading or trailing")),
    };
    let init = match a.init.as_str() {
        "clip" => InitMode::Clip,
        "noise" => InitMode::Noise,
        other => return Err(format!("unknown --init `{other}`: use clip or noise")),
    };
    let config = FifoConfig {
        window: a.window,
        partitions: a.partitions,
        lookahead: !a.no_lookahead,
        eta: a.eta,
        init,
        schedule: match a.flow_shift {
            Some(shift) => DiffusionSchedule::rectified_flow(shift),
            None => DiffusionSchedule { betas, prediction, spacing, ..DiffusionSchedule::videocrafter() },
        },
        ..FifoConfig::official(vec![1])
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

pub fn run(args: &PlanArgs) -> Result<(), String> {
    let config = parse_config(args)?;
    let table = StepTable::new(&config.schedule, config.steps(), config.eta).map_err(|e| e.to_string())?;
    let layout = QueueLayout::new(&config);
    let windows: Vec<_> = layout
        .windows()
        .iter()
        .map(|w| {
            let slots = w.start..w.start + config.window;
            serde_json::json!({
                "slots": [slots.start, slots.end],
                "writes": [w.start + w.write_from, slots.end],
                "indices": slots.map(|s| layout.base_label(s)).collect::<Vec<_>>(),
            })
        })
        .collect();
    if args.json {
        let steps: Vec<_> = table
            .entries()
            .iter()
            .map(|e| {
                serde_json::json!({"timestep": e.timestep, "alpha": e.alpha, "alpha_prev": e.alpha_prev,
                "sigma": e.sigma, "signal": e.signal, "noise_scale": e.noise_scale,
                "c_x": e.c_x, "c_model": e.c_model, "c_noise": e.c_noise})
            })
            .collect();
        let plan = serde_json::json!({
            "config": config, "queue_slots": layout.len(), "head_slots": layout.head,
            "first_emitted_iteration": layout.first_emit, "windows": windows, "steps": steps,
            "model_calls_per_frame": layout.windows().len() * if config.uses_guidance() { 2 } else { 1 },
        });
        println!("{}", serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "f = {}, n = {}, lookahead {}: {} DDIM steps, {} queue slots ({} head), {} windows per iteration",
        config.window,
        config.partitions,
        if config.lookahead { "on" } else { "off" },
        config.steps(),
        layout.len(),
        layout.head,
        layout.windows().len()
    );
    println!("first frame emitted after {} iterations ({:?} start)", layout.first_emit + 1, config.init);
    println!("{:>5} {:>9} {:>10} {:>10} {:>9}", "index", "timestep", "alphabar", "sigma", "c_model");
    for (i, e) in table.entries().iter().enumerate() {
        // Flow timesteps are not integers.
        let t =
            if e.timestep.fract() == 0.0 { format!("{}", e.timestep) } else { format!("{:.3}", e.timestep) };
        println!("{i:>5} {t:>9} {:>10.6} {:>10.6} {:>9.5}", e.alpha, e.sigma, e.c_model);
    }
    for (i, w) in windows.iter().enumerate() {
        println!("window {i}: slots {} writes {}", w["slots"], w["writes"]);
    }
    Ok(())
}
