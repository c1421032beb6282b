//! `fifo eval`: scores a decoded video (.y4m, or a folder of PNG frames) against its prompts with
//! the shapes-world evaluator.

use anyhow::{bail, Context, Result};
use clap::Args;
use fifo_diffusion::eval::{Evaluator, Frame, FramePrompts, Report, Scores};
use fifo_diffusion::fifo::PromptSchedule;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EvalArgs {
    /// A .y4m file or a folder of PNG frames (read in file-name order).
    video: PathBuf,
    /// The prompt of every frame: "a {colour} {shape} moving {direction} on a {background} background".
    #[arg(long, conflicts_with = "prompt_schedule", required_unless_present = "prompt_schedule")]
    prompt: Option<String>,
    /// A prompt schedule (`FRAME: prompt` / `FRAME..END: prompt` lines), as for generation.
    #[arg(long, value_name = "FILE")]
    prompt_schedule: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let frames = read_video(&args.video)?;
    let ev = Evaluator::shapes_world();
    let prompts = match (&args.prompt, &args.prompt_schedule) {
        (Some(p), _) => FramePrompts::single(ev.world(), p, frames.len())?,
        (None, Some(file)) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let schedule = PromptSchedule::parse(&text).with_context(|| format!("{}", file.display()))?;
            FramePrompts::from_schedule(ev.world(), &schedule, frames.len())?
        }
        (None, None) => bail!("give --prompt or --prompt-schedule"),
    };
    let report = ev.evaluate(&frames, &prompts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&args.video, &report);
    }
    Ok(())
}

fn read_video(path: &Path) -> Result<Vec<Frame>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.retain(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")));
        files.sort();
        if files.is_empty() {
            bail!("{} holds no .png frames", path.display());
        }
        return files.iter().map(|f| read_png(f).with_context(|| format!("{}", f.display()))).collect();
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Ok(vec![read_png(path)?]);
    }
    read_y4m(&bytes).with_context(|| format!("{}", path.display()))
}

fn read_png(path: &Path) -> Result<Frame> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().context("not a PNG")?;
    let size = reader.output_buffer_size().context("PNG too large")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).context("damaged PNG")?;
    let (w, h) = (info.width as usize, info.height as usize);
    let px = &buf[..info.buffer_size()];
    let rgb: Vec<u8> = match info.color_type {
        png::ColorType::Rgb => px.to_vec(),
        png::ColorType::Rgba => px.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => px.iter().flat_map(|&g| [g; 3]).collect(),
        png::ColorType::GrayscaleAlpha => px.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        other => bail!("PNG colour type {other:?} is not supported after expansion"),
    };
    Ok(Frame::from_rgb8(w, h, &rgb)?)
}

/// YUV4MPEG2 with 8-bit 4:2:0, 4:2:2, 4:4:4 or mono frames; BT.601, limited range unless the
/// header says `XCOLORRANGE=FULL`.
fn read_y4m(bytes: &[u8]) -> Result<Vec<Frame>> {
    let line_end = |from: usize| bytes[from..].iter().position(|&b| b == b'\n').map(|p| from + p);
    let header_end = line_end(0).context("no YUV4MPEG2 header line")?;
    let header = std::str::from_utf8(&bytes[..header_end]).context("header is not text")?;
    let mut fields = header.split(' ');
    if fields.next() != Some("YUV4MPEG2") {
        bail!("not a .y4m file (no YUV4MPEG2 signature) nor a folder of PNG frames");
    }
    let (mut w, mut h, mut colour, mut full) = (0usize, 0usize, "420jpeg".to_string(), false);
    for f in fields {
        match f.split_at(f.len().min(1)) {
            ("W", v) => w = v.parse().context("bad width")?,
            ("H", v) => h = v.parse().context("bad height")?,
            ("C", v) => colour = v.to_string(),
            ("X", v) => full |= v == "COLORRANGE=FULL",
            _ => {}
        }
    }
    if w == 0 || h == 0 {
        bail!("the header gives no frame size (W.. H..)");
    }
    // Chroma plane size (width, height divisors), or none for mono.
    let chroma = match colour.as_str() {
        "420jpeg" | "420paldv" | "420mpeg2" | "420" => Some((2, 2)),
        "422" => Some((2, 1)),
        "444" => Some((1, 1)),
        "mono" => None,
        other => bail!("colour space C{other} is not supported; supported: C420*, C422, C444, Cmono (8 bit)"),
    };
    let (cw, ch) = chroma.map_or((0, 0), |(dx, dy)| (w.div_ceil(dx), h.div_ceil(dy)));
    let frame_len = w * h + 2 * cw * ch;
    let mut frames = Vec::new();
    let mut at = header_end + 1;
    while at < bytes.len() {
        let end = line_end(at).context("truncated FRAME line")?;
        if !bytes[at..end].starts_with(b"FRAME") {
            bail!("frame {}: expected a FRAME line", frames.len());
        }
        let data = bytes
            .get(end + 1..end + 1 + frame_len)
            .with_context(|| format!("frame {} is truncated", frames.len()))?;
        let (y, u, v) = (&data[..w * h], &data[w * h..w * h + cw * ch], &data[w * h + cw * ch..]);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            for col in 0..w {
                let luma = y[row * w + col] as f32;
                let (cb, cr) = match chroma {
                    Some((dx, dy)) => {
                        let i = (row / dy) * cw + col / dx;
                        (u[i] as f32 - 128.0, v[i] as f32 - 128.0)
                    }
                    None => (0.0, 0.0),
                };
                let (l, c) = if full { (luma, 1.0) } else { ((luma - 16.0) * 255.0 / 219.0, 255.0 / 224.0) };
                let (cb, cr) = (cb * c, cr * c);
                let px = [l + 1.402 * cr, l - 0.344_136 * cb - 0.714_136 * cr, l + 1.772 * cb];
                rgb.extend(px.map(|p| p.clamp(0.0, 255.0) / 255.0));
            }
        }
        frames.push(Frame::from_rgb_f32(w, h, &rgb)?);
        at = end + 1 + frame_len;
    }
    if frames.is_empty() {
        bail!("the .y4m file holds no frames");
    }
    Ok(frames)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn print_scores(indent: &str, s: &Scores) {
    println!(
        "{indent}adherence: colour {} shape {} background {} direction {}  ({} of {} frames scored)",
        fmt(s.colour),
        fmt(s.shape),
        fmt(s.background),
        fmt(s.direction),
        s.scored_frames,
        s.frames
    );
    println!(
        "{indent}consistency: object present {:.3} (longest gap {} frames), identity switches {}, \
         speed {} px/frame (CV {}), background flicker {}",
        s.present,
        s.longest_gap,
        fmt(s.identity_switches),
        fmt(s.speed_mean),
        fmt(s.speed_cv),
        fmt(s.background_flicker)
    );
}

fn print_report(video: &Path, r: &Report) {
    println!("video: {} ({} frames)", video.display(), r.frames);
    print_scores("  ", &r.overall);
    if r.segments.len() > 1 {
        for s in &r.segments {
            println!("segment {}..{}: {}", s.start, s.end, s.prompt);
            print_scores("  ", &s.scores);
        }
    }
    match &r.stationarity {
        Some(st) => {
            println!(
                "stationarity: frames {}..{} vs {}..{} (late - early):",
                st.early.start, st.early.end, st.late.start, st.late.end
            );
            let deltas: Vec<String> = st.delta.iter().map(|(k, v)| format!("{k} {}", fmt(*v))).collect();
            println!("  {}", deltas.join(", "));
        }
        None => println!("stationarity: needs 200+ frames (compares frames 0..100 with 900..1000)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y4m_grey_frames_decode_in_both_ranges() {
        let mut file = b"YUV4MPEG2 W2 H2 F25:1 C420jpeg\n".to_vec();
        for y in [16u8, 235] {
            file.extend(b"FRAME\n");
            file.extend([y; 4]);
            file.extend([128u8; 2]);
        }
        let frames = read_y4m(&file).unwrap();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].rgb().iter().all(|&v| v.abs() < 1e-6));
        assert!(frames[1].rgb().iter().all(|&v| (v - 1.0).abs() < 1e-6));
        let mut full = b"YUV4MPEG2 W2 H2 F25:1 C420jpeg XCOLORRANGE=FULL".to_vec();
        full.extend(&file[file.iter().position(|&b| b == b'\n').unwrap()..]);
        let frames = read_y4m(&full).unwrap();
        assert!((frames[0].rgb()[0] - 16.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn damaged_y4m_is_an_error() {
        assert!(read_y4m(b"P6 2 2\n").unwrap_err().to_string().contains("YUV4MPEG2"));
        let err = read_y4m(b"YUV4MPEG2 W2 H2 C420\nFRAME\n\x10").unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(read_y4m(b"YUV4MPEG2 W2 H2 C420p10\n").unwrap_err().to_string().contains("C420p10"));
    }
}
