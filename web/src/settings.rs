//! The page's settings (JSON) to the scheduler's configuration, checked against the model.
//! Pure Rust, tested natively: the page shows these messages as they are.

use fifo_diffusion::fifo::{FifoConfig, InitMode, PromptSchedule};
use fifo_diffusion::gpu::Precision;
use fifo_diffusion::model::{ModelPackage, Weights};
use fifo_diffusion::pipeline::Generation;
use fifo_diffusion::schedule::StepTable;
use fifo_diffusion::session::Backend;
use serde::Deserialize;

/// `Generator.load` options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadOptions {
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub weights: Weights,
    /// The UNet's arithmetic on WebGPU: `"auto"` (f16 for int8 / f16 weights where the adapter
    /// has shader-f16), `"f32"` or `"f16"`.
    #[serde(default, deserialize_with = "precision")]
    pub precision: Precision,
}

fn precision<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(serde::de::Error::custom)
}

/// `Generator.start` settings; everything but the prompt defaults to the model's `model.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartSettings {
    /// One prompt for the whole video.
    pub prompt: Option<String>,
    /// A prompt schedule: `FRAME: prompt` cuts and `FRAME..END: prompt` blends, one a line.
    pub schedule: Option<String>,
    pub seed: Option<u64>,
    pub partitions: Option<usize>,
    pub lookahead: Option<bool>,
    pub guidance: Option<f64>,
    pub eta: Option<f64>,
    pub init: Option<InitMode>,
}

pub fn parse_load_options(json: &str) -> Result<LoadOptions, String> {
    if json.trim().is_empty() {
        return Ok(LoadOptions::default());
    }
    serde_json::from_str(json).map_err(|e| {
        format!(
            "load options: {e} (expected {{\"backend\": \"gpu\"|\"cpu\", \"weights\": \"f32\"|\"f16\"|\"int8\", \"precision\": \"auto\"|\"f32\"|\"f16\"}})"
        )
    })
}

/// The run's configuration and prompts, or a message naming the setting to fix.
pub fn resolve(package: &ModelPackage, json: &str) -> Result<(FifoConfig, PromptSchedule), String> {
    let s: StartSettings = serde_json::from_str(json).map_err(|e| format!("settings: {e}"))?;
    let prompts = match (&s.schedule, &s.prompt) {
        (Some(_), Some(_)) => return Err("give `prompt` or `schedule`, not both".into()),
        (Some(text), None) => PromptSchedule::parse(text).map_err(|e| format!("prompt schedule: {e}"))?,
        (None, Some(p)) => PromptSchedule::single(p).map_err(|e| format!("prompt: {e}"))?,
        (None, None) => return Err("no prompt: give `prompt` (or a `schedule`)".into()),
    };
    let mut config = Generation::config(package);
    config.seed = s.seed.unwrap_or(config.seed);
    config.partitions = s.partitions.unwrap_or(config.partitions);
    config.lookahead = s.lookahead.unwrap_or(config.lookahead);
    config.guidance = s.guidance.unwrap_or(config.guidance);
    config.eta = s.eta.unwrap_or(config.eta);
    config.init = s.init.unwrap_or(config.init);
    config.validate().map_err(|e| e.to_string())?;
    StepTable::new(&config.schedule, config.steps(), config.eta)
        .map_err(|e| format!("partitions {} do not fit this model: {e}", config.partitions))?;
    Ok((config, prompts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> ModelPackage {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/shapes-t2v-tiny");
        ModelPackage::load(std::path::Path::new(dir)).unwrap()
    }

    #[test]
    fn defaults_come_from_the_model_and_settings_override_them() {
        let package = shipped();
        let (config, prompts) = resolve(&package, r#"{"prompt": "a red circle moving right"}"#).unwrap();
        assert_eq!(config, Generation::config(&package));
        assert_eq!(prompts.prompts()[1], "a red circle moving right");
        let json = r#"{"schedule": "0: a red circle\n8: a blue square", "seed": 7, "partitions": 1,
                       "lookahead": false, "guidance": 1.0, "init": "noise"}"#;
        let (config, prompts) = resolve(&package, json).unwrap();
        assert_eq!((config.seed, config.partitions, config.lookahead), (7, 1, false));
        assert_eq!((config.guidance, config.init), (1.0, InitMode::Noise));
        assert_eq!(prompts.prompts().len(), 3);
    }

    #[test]
    fn bad_settings_name_what_to_fix() {
        let package = shipped();
        for (json, needle) in [
            (r#"{}"#, "no prompt"),
            (r#"{"prompt": "a", "schedule": "0: a"}"#, "not both"),
            (r#"{"schedule": "5: a red circle"}"#, "prompt schedule"),
            (r#"{"prompt": "a red circle", "partitions": 0}"#, "partitions"),
            (r#"{"prompt": "a red circle", "partitions": 1000}"#, "partitions 1000"),
            (r#"{"prompt": "a red circle", "colour": 1}"#, "unknown field `colour`"),
        ] {
            let err = resolve(&package, json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let err = parse_load_options(r#"{"backend": "tpu"}"#).unwrap_err();
        assert!(err.contains("\"gpu\"|\"cpu\""), "{err}");
        assert_eq!(parse_load_options("").unwrap().backend, Backend::Cpu);
    }

    #[test]
    fn precision_defaults_to_auto_and_names_the_choices() {
        assert_eq!(parse_load_options("{}").unwrap().precision, Precision::Auto);
        let o = parse_load_options(r#"{"weights": "int8", "precision": "f16"}"#).unwrap();
        assert_eq!((o.weights, o.precision), (Weights::Int8, Precision::F16));
        let err = parse_load_options(r#"{"precision": "f8"}"#).unwrap_err();
        assert!(err.contains("expected f32, f16 or auto"), "{err}");
    }
}
