//! `model.json`: what a model package holds and how to call its graphs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::fifo::InitMode;
use crate::schedule::DiffusionSchedule;
use crate::session::ModelSource;

/// The `format` string this build reads.
pub const PACKAGE_FORMAT: &str = "fifo-diffusion-model/1";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no model package at '{dir}': {source}; pass --model DIR (a folder with model.json) or set FIFO_MODEL_DIR")]
    Missing {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' is not a valid model.json: {message}")]
    Json { path: String, message: String },
    #[error("'{path}': {message}")]
    Invalid { path: String, message: String },
    #[error("model file '{path}' is missing or unreadable ({source}); the package is incomplete: re-export or re-download it")]
    GraphMissing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the model package has no file '{file}' (fetch every file model.json names, and the `.data` files beside them)")]
    FileMissing { file: String },
    #[error(
        "the model package '{name}' has no {weights} UNet (no graphs.unet.{weights} in model.json); use \
         --weights f32, or make one: `fifo quantize --weights {weights} {dir}/{base} {dir}/{file}` and add \
         `\"{weights}\": \"{file}\"` to graphs.unet in model.json"
    )]
    NoVariant {
        name: String,
        /// The missing weights, as `--weights` names them (`int8`, `f16`).
        weights: &'static str,
        /// The package folder (`DIR` for a package held in memory).
        dir: String,
        /// The f32 UNet file the variant is made from.
        base: String,
        /// The file name the variant conventionally has (`unet.int8.onnx`).
        file: String,
    },
    #[error(
        "the tokenizer file '{file}' cannot be used: {message}; export it again with transformers' \
         `tokenizer.save_pretrained(DIR)` (DIR/tokenizer.json) or tokenizers' `Tokenizer.save(PATH)`"
    )]
    Tokenizer { file: String, message: String },
    #[error(
        "model '{name}' has no image encoder (graphs.encoder in model.json), so it cannot start from \
         an image or a video; drop --init-image/--init-video, or export the model with its encoder"
    )]
    NoEncoder { name: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// The value range of decoded pixels, e.g. `[-1, 1]`.
    pub range: [f32; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Encoder output times this is the diffusion latent; divide by it before the decoder.
    pub scale_factor: f32,
}

impl LatentSpec {
    pub fn frame_shape(&self) -> Vec<usize> {
        vec![self.channels, self.height, self.width]
    }

    pub fn frame_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    pub guidance: f64,
    pub partitions: usize,
    pub lookahead: bool,
    pub eta: f64,
    pub init: InitMode,
}

/// `model.json` `text`: how prompts become the text encoder's `max_tokens` ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextSpec {
    /// The kind of tokenizer: `words` or `huggingface` (see [`TokenizerKind`]).
    pub tokenizer: String,
    /// `huggingface`: the tokenizer's file in the package; `tokenizer.json` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `words`: the words by id (`huggingface` tokenizers carry their own vocabulary).
    #[serde(default)]
    pub vocabulary: Vec<String>,
    pub max_tokens: usize,
    /// Width of one token's context vector.
    pub dim: usize,
    /// Fills the ids after the prompt's up to `max_tokens`.
    pub pad_id: i64,
    /// `words`: the id the empty prompt (the unconditional input) starts with. A `huggingface`
    /// tokenizer encodes the empty prompt like any other, as diffusers does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_id: Option<i64>,
    /// A human-readable pattern for prompts, shown in errors.
    #[serde(default)]
    pub grammar: Option<String>,
}

/// The tokenizer kinds this build knows, as `text.tokenizer` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind<'a> {
    /// `words`: lowercase, split on whitespace, one id per word of `text.vocabulary`.
    Words,
    /// `huggingface`: the Hugging Face `tokenizer.json` at this path in the package.
    HuggingFace { file: &'a str },
}

impl TextSpec {
    pub const DEFAULT_TOKENIZER_FILE: &'static str = "tokenizer.json";

    /// What `tokenizer` names; `Err` says which kinds exist.
    pub fn kind(&self) -> Result<TokenizerKind<'_>, String> {
        match self.tokenizer.as_str() {
            "words" => Ok(TokenizerKind::Words),
            "huggingface" => Ok(TokenizerKind::HuggingFace {
                file: self.file.as_deref().unwrap_or(Self::DEFAULT_TOKENIZER_FILE),
            }),
            other => Err(format!(
                "text tokenizer `{other}` is not supported; use `words` (with `text.vocabulary`) or \
                 `huggingface` (a Hugging Face tokenizer.json in the package, named by `text.file`)"
            )),
        }
    }

    /// The package file the tokenizer is read from, for kinds that have one.
    pub fn tokenizer_file(&self) -> Option<&str> {
        match self.kind() {
            Ok(TokenizerKind::HuggingFace { file }) => Some(file),
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_tokens == 0 || self.dim == 0 {
            return Err("`text.max_tokens` and `text.dim` must be non-zero".into());
        }
        match self.kind()? {
            TokenizerKind::Words => {
                let Some(empty_id) = self.empty_id else {
                    return Err("`text.empty_id` is missing; the `words` tokenizer needs it".into());
                };
                for (what, id) in [("pad_id", self.pad_id), ("empty_id", empty_id)] {
                    if id < 0 || id as usize >= self.vocabulary.len() {
                        return Err(format!(
                            "`text.{what}` {id} is outside the vocabulary ({} words)",
                            self.vocabulary.len()
                        ));
                    }
                }
            }
            // The vocabulary is in the file: the tokenizer checks `pad_id` against it when it loads.
            TokenizerKind::HuggingFace { .. } => {
                if self.pad_id < 0 {
                    return Err(format!("`text.pad_id` must be a token id, got {}", self.pad_id));
                }
            }
        }
        Ok(())
    }
}

/// A graph with one input and one output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphFile {
    pub file: String,
    pub input: String,
    pub output: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnetGraph {
    pub file: String,
    /// The int8-weight variant, when the package ships one.
    #[serde(default)]
    pub int8: Option<String>,
    /// The f16-weight variant (f16 weights cast to f32 when the graph loads), when the package
    /// ships one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16: Option<String>,
    pub latents: String,
    pub timesteps: String,
    pub context: String,
    pub output: String,
}

/// The latent-to-RGB decoder. A plain decoder turns one latent `[B, C, H, W]` into one frame
/// `[B, 3, height, width]`. A causal video decoder (Wan's VAE) carries state from latent to latent
/// and turns each into several frames `[B, frames, 3, height, width]`: `first` decodes the first
/// latent (`first_frames` frames, no state in, the initial state out); `file` decodes each
/// following one (`frames_per_latent` frames) from the latent and `state`, writing `next_state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderGraph {
    pub file: String,
    pub input: String,
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// The state inputs of `file`, in the order of `next_state`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<String>,
    /// The state outputs of both graphs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_state: Vec<String>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub frames_per_latent: usize,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub first_frames: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl DecoderGraph {
    /// Whether the decoder carries state from latent to latent.
    pub fn is_causal(&self) -> bool {
        self.first.is_some()
    }

    /// Frames decoded from latent `index` (0: the first one).
    pub fn frames_from(&self, index: u64) -> usize {
        if self.is_causal() && index == 0 {
            self.first_frames
        } else {
            self.frames_per_latent
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.state.len() != self.next_state.len() {
            return Err(format!(
                "`graphs.decoder`: `state` names {} inputs but `next_state` {} outputs",
                self.state.len(),
                self.next_state.len()
            ));
        }
        if self.frames_per_latent == 0 || self.first_frames == 0 {
            return Err("`graphs.decoder`: `frames_per_latent` and `first_frames` must be at least 1".into());
        }
        if self.first.is_none() && (!self.state.is_empty() || self.first_frames != 1) {
            return Err(
                "`graphs.decoder`: a decoder with `state` or `first_frames` needs its `first` graph".into()
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graphs {
    pub text_encoder: GraphFile,
    pub unet: UnetGraph,
    pub decoder: DecoderGraph,
    #[serde(default)]
    pub encoder: Option<GraphFile>,
}

/// Which UNet weights to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    #[default]
    F32,
    Int8,
    F16,
}

impl Weights {
    /// Every kind, f32 first.
    pub const ALL: [Weights; 3] = [Weights::F32, Weights::Int8, Weights::F16];

    /// The name `--weights` and `model.json` use.
    pub fn name(self) -> &'static str {
        match self {
            Weights::F32 => "f32",
            Weights::Int8 => "int8",
            Weights::F16 => "f16",
        }
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed and validated `model.json`. Keys this build does not know are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPackage {
    pub format: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// f: frames the UNet sees at once.
    pub frames: usize,
    pub fps: u32,
    pub image: ImageSpec,
    pub latent: LatentSpec,
    pub schedule: DiffusionSchedule,
    pub defaults: Defaults,
    pub text: TextSpec,
    pub graphs: Graphs,
    /// The folder the graph files are relative to (not part of the JSON).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The package's files when it lives in memory rather than in `dir` (not part of the JSON).
    #[serde(skip)]
    pub files: Option<PackageFiles>,
}

/// A package's files held in memory, by path inside the package folder (`/`-separated).
#[derive(Clone, Default)]
pub struct PackageFiles(Arc<BTreeMap<String, Vec<u8>>>);

impl PackageFiles {
    pub fn new(files: BTreeMap<String, Vec<u8>>) -> Self {
        Self(Arc::new(files))
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(Vec::as_slice)
    }

    pub fn map(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.0
    }
}

// Names and sizes only: the bytes are megabytes.
impl std::fmt::Debug for PackageFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(k, v)| (k, v.len()))).finish()
    }
}

impl PartialEq for PackageFiles {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// One graph of a package, on disk or in memory.
#[derive(Clone, Debug)]
pub enum GraphSource {
    Path(PathBuf),
    Memory { files: PackageFiles, file: String },
}

impl GraphSource {
    /// The session's view of this graph; `Err` names a file missing from memory.
    pub fn source(&self) -> Result<ModelSource<'_>, ModelError> {
        match self {
            GraphSource::Path(p) => Ok(ModelSource::Path(p)),
            GraphSource::Memory { files, file } => {
                let model = files.get(file).ok_or_else(|| ModelError::FileMissing { file: file.clone() })?;
                Ok(ModelSource::Memory { model, files: files.map() })
            }
        }
    }
}

impl ModelPackage {
    /// Parses and validates `model.json` text; `path` names it in errors.
    pub fn parse(json: &str, path: &str) -> Result<Self, ModelError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ModelError::Json { path: path.into(), message: e.to_string() })?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("(none)");
        if format != PACKAGE_FORMAT {
            return Err(ModelError::Invalid {
                path: path.into(),
                message: format!(
                    "package format `{format}` is not supported; this build reads `{PACKAGE_FORMAT}` \
                     (re-export the model with tools/model/package.py)"
                ),
            });
        }
        let package: Self = serde_json::from_value(value)
            .map_err(|e| ModelError::Json { path: path.into(), message: e.to_string() })?;
        package.validate().map_err(|message| ModelError::Invalid { path: path.into(), message })?;
        Ok(package)
    }

    /// Reads `DIR/model.json` and checks that every file it names (graphs, tokenizer) exists.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("model.json");
        let json = std::fs::read_to_string(&path)
            .map_err(|source| ModelError::Missing { dir: dir.display().to_string(), source })?;
        let mut package = Self::parse(&json, &path.display().to_string())?;
        package.dir = dir.to_path_buf();
        for file in package.files_needed() {
            let p = dir.join(file);
            std::fs::metadata(&p)
                .map_err(|source| ModelError::GraphMissing { path: p.display().to_string(), source })?;
        }
        Ok(package)
    }

    /// Reads a package held in memory: `model.json`, the text encoder and decoder graphs, the
    /// tokenizer's file (if its kind has one) and the UNet of the weights that will run, keyed by
    /// path inside the package folder (what a browser fetched; the UNet is checked when the
    /// models load, which knows the weights).
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> Result<Self, ModelError> {
        let missing = |file: &str| ModelError::FileMissing { file: file.to_string() };
        let json = files.get("model.json").ok_or_else(|| missing("model.json"))?;
        let json = std::str::from_utf8(json).map_err(|e| ModelError::Json {
            path: "model.json".into(),
            message: format!("not UTF-8 text ({e})"),
        })?;
        let mut package = Self::parse(json, "model.json")?;
        let d = &package.graphs.decoder;
        let graphs = [package.graphs.text_encoder.file.as_str(), &d.file];
        for file in graphs.into_iter().chain(d.first.as_deref()).chain(package.text.tokenizer_file()) {
            if !files.contains_key(file) {
                return Err(missing(file));
            }
        }
        package.files = Some(PackageFiles::new(files));
        Ok(package)
    }

    fn graph_files(&self) -> Vec<&str> {
        let g = &self.graphs;
        let mut files = vec![g.text_encoder.file.as_str(), &g.unet.file, &g.decoder.file];
        files.extend(g.decoder.first.as_deref());
        files.extend(g.unet.int8.as_deref());
        files.extend(g.unet.f16.as_deref());
        files
    }

    /// Every file model.json names: the graphs and the tokenizer's file, if it has one.
    fn files_needed(&self) -> Vec<&str> {
        let mut files = self.graph_files();
        files.extend(self.text.tokenizer_file());
        files
    }

    /// The bytes of a file of this package, wherever the package lives (a borrow when in memory).
    pub fn read(&self, file: &str) -> Result<Cow<'_, [u8]>, ModelError> {
        match &self.files {
            Some(files) => files
                .get(file)
                .map(Cow::Borrowed)
                .ok_or_else(|| ModelError::FileMissing { file: file.into() }),
            None => {
                let path = self.dir.join(file);
                std::fs::read(&path)
                    .map(Cow::Owned)
                    .map_err(|source| ModelError::GraphMissing { path: path.display().to_string(), source })
            }
        }
    }

    /// How errors name a file of this package: its path on disk, or its name in memory.
    pub fn display_path(&self, file: &str) -> String {
        match &self.files {
            Some(_) => file.to_string(),
            None => self.dir.join(file).display().to_string(),
        }
    }

    /// The UNet file model.json names for the chosen weights, if any.
    pub fn unet_variant(&self, weights: Weights) -> Option<&str> {
        let unet = &self.graphs.unet;
        match weights {
            Weights::F32 => Some(&unet.file),
            Weights::Int8 => unet.int8.as_deref(),
            Weights::F16 => unet.f16.as_deref(),
        }
    }

    /// The UNet file for the chosen weights; `Err` says how to make a missing variant.
    pub fn unet_file(&self, weights: Weights) -> Result<&str, ModelError> {
        self.unet_variant(weights).ok_or_else(|| {
            let base = &self.graphs.unet.file;
            let stem = base.strip_suffix(".onnx").unwrap_or(base);
            ModelError::NoVariant {
                name: self.name.clone(),
                weights: weights.name(),
                dir: match &self.files {
                    None if !self.dir.as_os_str().is_empty() => self.dir.display().to_string(),
                    _ => "DIR".into(),
                },
                base: base.clone(),
                file: format!("{stem}.{}.onnx", weights.name()),
            }
        })
    }

    /// The path of the UNet file for the chosen weights (a package on disk).
    pub fn unet_path(&self, weights: Weights) -> Result<PathBuf, ModelError> {
        Ok(self.dir.join(self.unet_file(weights)?))
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A graph file of this package, wherever the package lives.
    pub fn graph(&self, file: &str) -> GraphSource {
        match &self.files {
            Some(files) => GraphSource::Memory { files: files.clone(), file: file.to_string() },
            None => GraphSource::Path(self.dir.join(file)),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        if self.frames < 2 {
            return Err(format!("`frames` (the UNet window) must be at least 2, got {}", self.frames));
        }
        if self.fps == 0 {
            return Err("`fps` must be at least 1".into());
        }
        let i = &self.image;
        if i.height == 0 || i.width == 0 || i.channels != 3 {
            return Err(format!(
                "`image` must be RGB (3 channels) with a non-zero size, got {}x{}x{}",
                i.height, i.width, i.channels
            ));
        }
        if !(i.range[0].is_finite() && i.range[1].is_finite() && i.range[0] < i.range[1]) {
            return Err(format!("`image.range` must be [low, high] with low < high, got {:?}", i.range));
        }
        let l = &self.latent;
        if l.frame_len() == 0 {
            return Err("`latent` channels, height and width must be non-zero".into());
        }
        if !(l.scale_factor.is_finite() && l.scale_factor > 0.0) {
            return Err(format!("`latent.scale_factor` must be a positive number, got {}", l.scale_factor));
        }
        self.schedule.validate().map_err(|e| format!("`schedule`: {e}"))?;
        let d = &self.defaults;
        if d.partitions == 0 || !d.guidance.is_finite() || !(d.eta.is_finite() && d.eta >= 0.0) {
            return Err(format!("`defaults` out of range: {d:?}"));
        }
        self.schedule.check_eta(d.eta).map_err(|e| format!("`defaults.eta`: {e}"))?;
        self.text.validate()?;
        self.graphs.decoder.validate()?;
        for file in self.files_needed() {
            let p = Path::new(file);
            if file.is_empty() || p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
                return Err(format!("file `{file}` must be a plain path inside the package folder"));
            }
        }
        Ok(())
    }
}
