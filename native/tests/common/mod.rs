//! Helpers shared by the CLI tests that run `fifo generate` and compare its frames.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shipped model package in the source tree.
pub fn shipped_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shapes-t2v-tiny")
}

/// An empty folder `fifo-{tag}-{pid}` under the system's temporary folder (emptied if a previous
/// run of the same process id left it).
pub fn fresh_temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fifo-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An 8-bit RGB PNG: (width, height, pixels).
pub fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// The pixels of an RGB PNG.
pub fn png_pixels(path: &Path) -> Vec<u8> {
    read_png(path).2
}

/// The PNG files of an output folder, in frame order.
pub fn png_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
}

/// Mean absolute difference of two equally long byte images, in 0..255 levels.
pub fn mean_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| f64::from(x.abs_diff(y))).sum::<f64>() / a.len() as f64
}
