//! `fifo models`: the model packages `fifo generate` can find, and their UNet weights.

use crate::generate::{default_model_dir, model_roots};
use anyhow::Result;
use clap::Args;
use fifo_diffusion::model::{ModelPackage, Weights};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ModelsArgs {
    /// Also search this folder: a package (holding model.json) or a folder of packages. Repeatable.
    #[arg(long, value_name = "DIR")]
    dir: Vec<PathBuf>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Listing {
    /// The folders searched, in order.
    searched: Vec<String>,
    packages: Vec<PackageInfo>,
}

#[derive(Serialize)]
struct PackageInfo {
    /// model.json `name`, or the folder's name when model.json cannot be read.
    name: String,
    path: String,
    /// The package `fifo generate` runs without --model.
    default: bool,
    /// Why model.json cannot be used; the fields below are then absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// model.json `family`, when it names one.
    family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames: Option<usize>,
    /// [width, height]
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<[usize; 2]>,
    /// [channels, height, width]
    #[serde(skip_serializing_if = "Option::is_none")]
    latent: Option<[usize; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokenizer: Option<String>,
    /// The `--weights` whose UNet file is named and present, f32 first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    weights: Vec<&'static str>,
    /// Bytes on disk a run with these weights reads: the UNet, text encoder and decoder graphs
    /// and their `.data` files.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    bytes: BTreeMap<&'static str, u64>,
    /// Files model.json names that are not in the folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
}

/// The folders holding model.json: `root` itself if it is a package, else its subfolders that are.
fn packages_in(root: &Path) -> Vec<PathBuf> {
    if root.join("model.json").is_file() {
        return vec![root.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.join("model.json").is_file()).collect();
    dirs.sort();
    dirs
}

/// A graph file and its external data beside it (`FILE.data`), as bytes on disk.
fn graph_bytes(dir: &Path, file: &str) -> u64 {
    [file.to_string(), format!("{file}.data")]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn describe(dir: &Path, default: bool) -> PackageInfo {
    let folder = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
    let mut info = PackageInfo {
        name: folder,
        path: dir.display().to_string(),
        default,
        error: None,
        family: None,
        frames: None,
        image: None,
        latent: None,
        tokenizer: None,
        weights: Vec::new(),
        bytes: BTreeMap::new(),
        missing: Vec::new(),
    };
    let path = dir.join("model.json");
    let parsed = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|json| {
            let package =
                ModelPackage::parse(&json, &path.display().to_string()).map_err(|e| e.to_string())?;
            let family = serde_json::from_str::<serde_json::Value>(&json)
                .ok()
                .and_then(|v| v.get("family").and_then(|f| f.as_str()).map(String::from));
            Ok((package, family))
        });
    let (package, family) = match parsed {
        Ok(p) => p,
        Err(e) => {
            info.error = Some(e);
            return info;
        }
    };
    let g = &package.graphs;
    let exists = |file: &str| dir.join(file).is_file();
    let mut named: Vec<&str> = vec![&g.text_encoder.file, &g.decoder.file];
    named.extend(Weights::ALL.iter().filter_map(|&w| package.unet_variant(w)));
    named.extend(package.text.tokenizer_file());
    info.missing = named.iter().filter(|f| !exists(f)).map(|f| f.to_string()).collect();
    let shared = graph_bytes(dir, &g.text_encoder.file) + graph_bytes(dir, &g.decoder.file);
    for weights in Weights::ALL {
        if let Some(unet) = package.unet_variant(weights).filter(|f| exists(f)) {
            info.weights.push(weights.name());
            info.bytes.insert(weights.name(), shared + graph_bytes(dir, unet));
        }
    }
    info.name = package.name.clone();
    info.family = family;
    info.frames = Some(package.frames);
    info.image = Some([package.image.width, package.image.height]);
    info.latent = Some([package.latent.channels, package.latent.height, package.latent.width]);
    info.tokenizer = Some(package.text.tokenizer.clone());
    info
}

/// The same folder however it is spelled (symlinks, `..`), for de-duplication.
fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn run(args: &ModelsArgs) -> Result<()> {
    let default = canonical(&default_model_dir());
    let mut roots = model_roots();
    roots.extend(std::env::var_os("FIFO_MODEL_DIR").map(PathBuf::from));
    roots.extend(args.dir.iter().cloned());
    for dir in &args.dir {
        anyhow::ensure!(dir.is_dir(), "--dir {}: no such folder", dir.display());
    }
    let mut seen_roots = Vec::new();
    let mut seen = Vec::new();
    let mut listing = Listing { searched: Vec::new(), packages: Vec::new() };
    for root in roots {
        let key = canonical(&root);
        if !root.is_dir() || seen_roots.contains(&key) {
            continue;
        }
        seen_roots.push(key);
        listing.searched.push(root.display().to_string());
        for dir in packages_in(&root) {
            let key = canonical(&dir);
            if seen.contains(&key) {
                continue;
            }
            listing.packages.push(describe(&dir, key == default));
            seen.push(key);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    if listing.packages.is_empty() {
        println!("no model packages (folders with model.json) in: {}", listing.searched.join(", "));
        println!("add folders to search with --dir DIR");
        return Ok(());
    }
    for (i, p) in listing.packages.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}{}", p.name, if p.default { " (default)" } else { "" });
        println!("  path       {}", p.path);
        if let Some(error) = &p.error {
            println!("  error      {error}");
            continue;
        }
        let dims = |d: &[usize]| d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x");
        println!("  family     {}", p.family.as_deref().unwrap_or("-"));
        println!("  frames     {}", p.frames.unwrap_or(0));
        println!("  image      {}", dims(&p.image.unwrap_or_default()));
        println!("  latent     {}", dims(&p.latent.unwrap_or_default()));
        println!("  tokenizer  {}", p.tokenizer.as_deref().unwrap_or("-"));
        let weights: Vec<String> =
            p.weights.iter().map(|w| format!("{w} ({})", megabytes(p.bytes[w]))).collect();
        println!("  weights    {}", if weights.is_empty() { "-".into() } else { weights.join(", ") });
        if !p.missing.is_empty() {
            println!("  missing    {}", p.missing.join(", "));
        }
    }
    Ok(())
}
