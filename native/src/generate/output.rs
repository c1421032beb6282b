//! Frame writers: Y4M (file or stdout), PNG folder, GIF, MP4 (H.264). Frames stream in as they leave
//! the queue; `finish` completes the file (GIF trailer).

use anyhow::{bail, Context, Result};
use fifo_diffusion::pipeline::Frame;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What `--out` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `-`: Y4M on standard output.
    Stdout,
    Y4m(PathBuf),
    Gif(PathBuf),
    Mp4(PathBuf),
    /// A folder of `frame_NNNNNN.png` (a path ending in `/`, an existing folder, or no extension).
    PngFolder(PathBuf),
}

pub const SUPPORTED: &str =
    ".y4m, .gif, .mp4, a folder for PNG frames (ending in `/`), or `-` for Y4M on stdout";

impl OutputKind {
    /// Classifies `--out` and checks that it can be written, before any work is done.
    pub fn parse(out: &str) -> Result<Self> {
        if out == "-" {
            return Ok(Self::Stdout);
        }
        let path = PathBuf::from(out);
        let is_dir = out.ends_with('/') || path.is_dir() || path.extension().is_none();
        let kind = if is_dir {
            Self::PngFolder(path)
        } else {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            match ext.as_str() {
                "y4m" => Self::Y4m(path),
                "gif" => Self::Gif(path),
                "mp4" => Self::Mp4(path),
                other => bail!("unknown output extension `.{other}` in --out {out}; use {SUPPORTED}"),
            }
        };
        kind.check_writable()?;
        Ok(kind)
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Stdout => None,
            Self::Y4m(p) | Self::Gif(p) | Self::Mp4(p) | Self::PngFolder(p) => Some(p),
        }
    }

    fn check_writable(&self) -> Result<()> {
        let Some(path) = self.path() else { return Ok(()) };
        let folder = match self {
            Self::PngFolder(p) if p.is_dir() => p.clone(),
            _ => match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
        };
        if !folder.is_dir() {
            bail!("the output folder {} does not exist; create it or choose another --out", folder.display());
        }
        let probe = folder.join(format!(".fifo-write-test-{}", std::process::id()));
        File::create(&probe)
            .with_context(|| format!("cannot write into {}; choose a writable --out", folder.display()))?;
        let _ = std::fs::remove_file(probe);
        Ok(())
    }
}

pub trait FrameWriter {
    fn write(&mut self, frame: &Frame) -> Result<()>;
    /// Completes the file; called once, also after Ctrl-C.
    fn finish(&mut self) -> Result<()>;
}

pub fn open(kind: &OutputKind, width: usize, height: usize, fps: u32) -> Result<Box<dyn FrameWriter>> {
    let create = |p: &Path| File::create(p).with_context(|| format!("cannot create {}", p.display()));
    Ok(match kind {
        OutputKind::Stdout => Box::new(Y4m::new(Box::new(std::io::stdout()), width, height, fps)),
        OutputKind::Y4m(p) => Box::new(Y4m::new(Box::new(BufWriter::new(create(p)?)), width, height, fps)),
        OutputKind::Gif(p) => Box::new(Gif::new(create(p)?, width, height, fps)?),
        OutputKind::Mp4(p) => Box::new(super::mp4::Mp4::new(create(p)?, width, height, fps)?),
        OutputKind::PngFolder(p) => {
            if !p.is_dir() {
                std::fs::create_dir(p)
                    .with_context(|| format!("cannot create the folder {}", p.display()))?;
            }
            Box::new(PngFolder { folder: p.clone() })
        }
    })
}

/// YUV4MPEG2, 4:4:4, BT.601 limited range: a trivial, lossless-enough raw format.
struct Y4m {
    out: Box<dyn Write>,
    header: Option<String>,
    planes: Vec<u8>,
}

impl Y4m {
    fn new(out: Box<dyn Write>, width: usize, height: usize, fps: u32) -> Self {
        let header = format!("YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C444\n");
        Self { out, header: Some(header), planes: Vec::with_capacity(3 * width * height) }
    }
}

/// BT.601 limited-range RGB -> Y'CbCr.
pub fn rgb_to_ycbcr(r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (r as f32, g as f32, b as f32);
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    [y, cb, cr].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

impl FrameWriter for Y4m {
    fn write(&mut self, frame: &Frame) -> Result<()> {
        if let Some(header) = self.header.take() {
            self.out.write_all(header.as_bytes())?;
        }
        let n = frame.width * frame.height;
        self.planes.clear();
        self.planes.resize(3 * n, 0);
        for (p, px) in frame.rgb.chunks_exact(3).enumerate() {
            let [y, cb, cr] = rgb_to_ycbcr(px[0], px[1], px[2]);
            (self.planes[p], self.planes[n + p], self.planes[2 * n + p]) = (y, cb, cr);
        }
        self.out.write_all(b"FRAME\n")?;
        self.out.write_all(&self.planes)?;
        // Streamed: a reader (or a killed run) sees every finished frame.
        self.out.flush()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(header) = self.header.take() {
            self.out.write_all(header.as_bytes())?;
        }
        self.out.flush()?;
        Ok(())
    }
}

struct PngFolder {
    folder: PathBuf,
}

impl FrameWriter for PngFolder {
    fn write(&mut self, frame: &Frame) -> Result<()> {
        let path = self.folder.join(format!("frame_{:06}.png", frame.id));
        let file =
            BufWriter::new(File::create(&path).with_context(|| format!("cannot create {}", path.display()))?);
        let mut encoder = png::Encoder::new(file, frame.width as u32, frame.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&frame.rgb)?;
        writer.finish()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Animated GIF, looping forever, one palette per frame (NeuQuant).
struct Gif {
    encoder: Option<gif::Encoder<BufWriter<File>>>,
    delay: u16,
}

impl Gif {
    fn new(file: File, width: usize, height: usize, fps: u32) -> Result<Self> {
        let (w, h) = (u16::try_from(width)?, u16::try_from(height)?);
        let mut encoder = gif::Encoder::new(BufWriter::new(file), w, h, &[])?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        // GIF delays are in hundredths of a second.
        let delay = (100.0 / fps as f64).round().max(1.0) as u16;
        Ok(Self { encoder: Some(encoder), delay })
    }
}

impl FrameWriter for Gif {
    fn write(&mut self, frame: &Frame) -> Result<()> {
        let encoder = self.encoder.as_mut().context("the GIF is already finished")?;
        let mut f = gif::Frame::from_rgb_speed(frame.width as u16, frame.height as u16, &frame.rgb, 10);
        f.delay = self.delay;
        encoder.write_frame(&f)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(encoder) = self.encoder.take() {
            encoder.into_inner()?.flush()?;
        }
        Ok(())
    }
}
