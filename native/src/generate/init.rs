//! `--init-image` / `--init-video`: frames read from a file, fitted to the model's image size
//! (centre crop to its aspect, then a triangle-filter resize), for the model's encoder.
//!
//! An image is repeated over the window; of a video the last `f` frames are taken (a shorter one
//! repeats its first frame in front), so the generated video continues it.

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::{AnimationDecoder, RgbImage};
use std::path::Path;

/// The start clip: `window` RGB frames of `width x height`, oldest first.
pub fn clip_from_image(path: &Path, window: usize, width: usize, height: usize) -> Result<Vec<Vec<u8>>> {
    let image = image::open(path)
        .with_context(|| format!("cannot read --init-image {} (PNG, JPEG, GIF or WebP)", path.display()))?
        .to_rgb8();
    Ok(vec![fit(&image, width, height); window])
}

/// The last `window` frames of a video: an animated GIF, a Y4M file, or a folder of images
/// (sorted by name).
pub fn clip_from_video(path: &Path, window: usize, width: usize, height: usize) -> Result<Vec<Vec<u8>>> {
    let frames = read_video(path)?;
    if frames.is_empty() {
        bail!("--init-video {} holds no frames", path.display());
    }
    let mut clip: Vec<Vec<u8>> =
        frames[frames.len().saturating_sub(window)..].iter().map(|f| fit(f, width, height)).collect();
    while clip.len() < window {
        clip.insert(0, clip[0].clone());
    }
    Ok(clip)
}

fn read_video(path: &Path) -> Result<Vec<RgbImage>> {
    let what = || format!("cannot read --init-video {}", path.display());
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(what)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| image::ImageFormat::from_path(p).is_ok())
            .collect();
        files.sort();
        return files
            .iter()
            .map(|f| Ok(image::open(f).with_context(|| format!("cannot read {}", f.display()))?.to_rgb8()))
            .collect();
    }
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("gif") => {
            let file = std::io::BufReader::new(std::fs::File::open(path).with_context(what)?);
            let decoder = image::codecs::gif::GifDecoder::new(file).with_context(what)?;
            let frames = decoder.into_frames().collect_frames().with_context(what)?;
            Ok(frames
                .into_iter()
                .map(|f| image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8())
                .collect())
        }
        Some("y4m") => read_y4m(&std::fs::read(path).with_context(what)?).with_context(what),
        _ => bail!(
            "--init-video {}: expected an animated .gif, a .y4m file or a folder of images \
             (convert an MP4 with `ffmpeg -i IN.mp4 OUT.y4m`)",
            path.display()
        ),
    }
}

/// Centre-crops to the target aspect, then resizes.
fn fit(image: &RgbImage, width: usize, height: usize) -> Vec<u8> {
    let (w, h) = (image.width() as u64, image.height() as u64);
    let (tw, th) = (width as u64, height as u64);
    // Largest crop of aspect tw:th inside w x h.
    let (cw, ch) = if w * th > h * tw { (h * tw / th, h) } else { (w, w * th / tw) };
    let (x, y) = ((w - cw) / 2, (h - ch) / 2);
    let crop =
        image::imageops::crop_imm(image, x as u32, y as u32, cw.max(1) as u32, ch.max(1) as u32).to_image();
    image::imageops::resize(&crop, width as u32, height as u32, FilterType::Triangle).into_raw()
}

/// YUV4MPEG2 with 4:4:4 or 4:2:0 chroma (nearest upsampling), BT.601 limited range as
/// `fifo generate` writes it.
fn read_y4m(bytes: &[u8]) -> Result<Vec<RgbImage>> {
    let line_end = |from: usize| bytes[from..].iter().position(|&b| b == b'\n').map(|p| from + p);
    let header_end = line_end(0).context("no Y4M header line")?;
    let header = std::str::from_utf8(&bytes[..header_end]).context("the Y4M header is not text")?;
    let mut fields = header.split(' ');
    if fields.next() != Some("YUV4MPEG2") {
        bail!("not a Y4M file (no YUV4MPEG2 signature)");
    }
    let (mut width, mut height, mut chroma) = (0usize, 0usize, "420jpeg");
    for field in fields {
        match field.split_at(1) {
            ("W", v) => width = v.parse().context("bad Y4M width")?,
            ("H", v) => height = v.parse().context("bad Y4M height")?,
            ("C", v) => chroma = v,
            _ => {}
        }
    }
    let (cw, ch) = match chroma {
        "444" => (width, height),
        c if c.starts_with("420") => (width.div_ceil(2), height.div_ceil(2)),
        other => bail!("Y4M chroma C{other} is not supported (C444 or C420)"),
    };
    let (luma, plane) = (width * height, cw * ch);
    let mut frames = Vec::new();
    let mut at = header_end + 1;
    while at < bytes.len() {
        let end = line_end(at).context("a Y4M FRAME line is cut off")?;
        if !bytes[at..end].starts_with(b"FRAME") {
            bail!("expected a Y4M FRAME line at byte {at}");
        }
        let data = &bytes[end + 1..];
        if data.len() < luma + 2 * plane {
            bail!("the last Y4M frame is cut off");
        }
        let (y, u, v) = (&data[..luma], &data[luma..luma + plane], &data[luma + plane..luma + 2 * plane]);
        let mut rgb = RgbImage::new(width as u32, height as u32);
        for (i, px) in rgb.pixels_mut().enumerate() {
            let (r, c) = (i / width, i % width);
            let ci = (r * ch / height) * cw + c * cw / width;
            px.0 = yuv_to_rgb(y[i], u[ci], v[ci]);
        }
        frames.push(rgb);
        at = end + 1 + luma + 2 * plane;
    }
    Ok(frames)
}

/// BT.601 limited-range Y'CbCr -> RGB (the inverse of the Y4M writer's matrix).
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let (y, cb, cr) = ((f32::from(y) - 16.0) * 255.0 / 219.0, f32::from(u) - 128.0, f32::from(v) - 128.0);
    let (cb, cr) = (cb * 255.0 / 224.0, cr * 255.0 / 224.0);
    let r = y + 1.402 * cr;
    let g = y - 0.344_136 * cb - 0.714_136 * cr;
    let b = y + 1.772 * cb;
    [r, g, b].map(|x| x.round().clamp(0.0, 255.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y4m_frames_come_back_as_the_writer_wrote_them() {
        let (w, h) = (4usize, 2usize);
        let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
        // What the writer (output.rs) produces: a C444 header, then FRAME + Y, Cb, Cr planes.
        let mut bytes = format!("YUV4MPEG2 W{w} H{h} F8:1 Ip A1:1 C444\n").into_bytes();
        let mut planes = vec![0u8; 3 * w * h];
        for (p, px) in pixels.chunks_exact(3).enumerate() {
            let [y, cb, cr] = super::super::output::rgb_to_ycbcr(px[0], px[1], px[2]);
            (planes[p], planes[w * h + p], planes[2 * w * h + p]) = (y, cb, cr);
        }
        for _ in 0..2 {
            bytes.extend(b"FRAME\n");
            bytes.extend(&planes);
        }
        let frames = read_y4m(&bytes).unwrap();
        assert_eq!(frames.len(), 2);
        // 8-bit limited range loses a little: within 2 levels.
        let worst = frames[1].as_raw().iter().zip(&pixels).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 2, "{worst}");
    }

    #[test]
    fn fitting_crops_to_the_aspect_and_resizes() {
        // A 6x2 image: left third red, middle green, right third blue; a 2x2 target keeps the middle.
        let mut image = RgbImage::new(6, 2);
        for (x, _, px) in image.enumerate_pixels_mut() {
            px.0 = match x / 2 {
                0 => [255, 0, 0],
                1 => [0, 255, 0],
                _ => [0, 0, 255],
            };
        }
        assert_eq!(fit(&image, 2, 2), [0, 255, 0].repeat(4));
        assert_eq!(fit(&image, 6, 2).len(), 6 * 2 * 3);
    }
}
