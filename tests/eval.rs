//! The evaluator against ground truth: clips rendered by tools/model/world.py with the Python
//! detector's outputs (tools/eval_fixtures/make_fixtures.py -> tests/fixtures/eval/), and long
//! videos rendered by the Rust transcription of the world for the temporal scores.

use fifo_diffusion::eval::{
    wrap, Detection, EvalError, Evaluator, Frame, FramePrompts, Prompt, Scores, Verdict, World,
};
use fifo_diffusion::fifo::PromptSchedule;
use serde_json::Value;
use std::path::PathBuf;

/// The Rust renderer vs world.py's frames: u8 levels (rounding, f32 trig, 3-decimal positions).
const RENDER_TOLERANCE: i32 = 2;
/// Largest centre error in pixels (on the torus) against the true centre: clean / noisy frames.
/// (The Python detector's largest error on the clean clips is 0.25 px, on the triangle.)
const POSITION_TOLERANCE: f32 = 0.1;
const NOISY_POSITION_TOLERANCE: f32 = 0.5;
/// Soft-mask area vs the true object area (the rendered alpha's sum), relative, clean frames.
const AREA_TOLERANCE: f32 = 0.01;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn truth() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("truth.json")).unwrap()).unwrap()
}

/// The frames of one clip strip (frames side by side).
fn read_clip(file: &str, frames: usize) -> Vec<Frame> {
    let decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(fixtures().join(file)).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!(w, h * frames);
    (0..frames)
        .map(|f| {
            let rgb: Vec<u8> =
                (0..h).flat_map(|y| buf[(y * w + f * h) * 3..(y * w + (f + 1) * h) * 3].to_vec()).collect();
            Frame::from_rgb8(h, h, &rgb).unwrap()
        })
        .collect()
}

fn index(names: &[&str], name: &str) -> usize {
    names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("unknown name {name}"))
}

struct Names {
    colours: Vec<String>,
    shapes: Vec<String>,
    directions: Vec<String>,
    backgrounds: Vec<String>,
}

fn names(w: &World) -> Names {
    Names {
        colours: w.colours.iter().map(|c| c.name.clone()).collect(),
        shapes: w.shapes.clone(),
        directions: w.directions.iter().map(|d| d.name.clone()).collect(),
        backgrounds: w.backgrounds.iter().map(|b| b.name.clone()).collect(),
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn torus_error(w: &World, x: f32, y: f32, tx: f32, ty: f32) -> f32 {
    let s = w.size as f32;
    wrap(x - tx, s).hypot(wrap(y - ty, s))
}

#[test]
fn world_json_holds_the_shapes_world() {
    let w = World::shapes_world();
    assert_eq!(
        (w.size, w.colours.len(), w.backgrounds.len(), w.shapes.len(), w.directions.len()),
        (64, 8, 4, 6, 4)
    );
    assert_eq!(w.colours[2].name, "blue");
    assert_eq!(w.colours[2].value, [0.1, 0.3, 1.0]);
    assert_eq!(w.shapes, ["circle", "square", "triangle", "star", "ring", "cross"]);
    assert!(World::from_json(r#"{"size": 64}"#).unwrap_err().to_string().contains("world description"));
    let hexagon = include_str!("../src/eval/world.json").replace("\"cross\"", "\"hexagon\"");
    assert!(World::from_json(&hexagon).unwrap_err().to_string().contains("'hexagon' has no renderer"));
}

/// The Rust transcription of world.py's SDFs renders the fixtures' frames.
#[test]
fn rust_renderer_matches_world_py() {
    let w = World::shapes_world();
    let n = names(&w);
    let t = truth();
    let mut worst = 0;
    for clip in t["clips"].as_array().unwrap().iter().filter(|c| c["noise_sigma"].as_f64() == Some(0.0)) {
        let tr = &clip["truth"];
        let frames = read_clip(clip["file"].as_str().unwrap(), clip["frames"].as_u64().unwrap() as usize);
        let c = w.colours[index(
            &n.colours.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            tr["colour"].as_str().unwrap(),
        )]
        .value;
        let b = w.backgrounds[index(
            &n.backgrounds.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            tr["background"].as_str().unwrap(),
        )]
        .value;
        let s =
            index(&w.shapes.iter().map(|s| s.as_str()).collect::<Vec<_>>(), tr["shape"].as_str().unwrap());
        let (xs, ys) = (floats(&tr["x"]), floats(&tr["y"]));
        for (f, frame) in frames.iter().enumerate() {
            let img = w.render(s, c, b, tr["radius"].as_f64().unwrap() as f32, xs[f], ys[f]);
            for (got, want) in img.iter().zip(frame.rgb()) {
                let (g, w8) = (((got * 255.0) + 0.5).floor() as i32, (want * 255.0).round() as i32);
                worst = worst.max((g - w8).abs());
            }
        }
    }
    assert!(worst <= RENDER_TOLERANCE, "largest difference {worst} levels");
}

#[test]
fn detector_matches_ground_truth_at_least_as_well_as_detect_py() {
    let ev = Evaluator::shapes_world();
    let w = ev.world();
    let n = names(w);
    let t = truth();
    let (mut clips, mut rust_clip_ok, mut py_clip_ok) = (0, 0, 0);
    let (mut frames_total, mut rust_frame_ok, mut py_frame_ok) = (0, 0, 0);
    let (mut worst_clean, mut worst_noisy, mut worst_area) =
        ((0.0f32, String::new()), (0.0f32, String::new()), (0.0f32, String::new()));
    let (mut worst_py, mut sum_err) = (0.0f32, 0.0f32);
    for clip in t["clips"].as_array().unwrap() {
        let (tr, py) = (&clip["truth"], &clip["python_detector"]);
        let noisy = clip["noise_sigma"].as_f64().unwrap() > 0.0;
        let s =
            index(&w.shapes.iter().map(|s| s.as_str()).collect::<Vec<_>>(), tr["shape"].as_str().unwrap());
        let frames = read_clip(clip["file"].as_str().unwrap(), clip["frames"].as_u64().unwrap() as usize);
        let det: Vec<Detection> = frames.iter().map(|f| ev.detect(f).unwrap()).collect();
        let v = Verdict::of(w, &det);
        let name = |list: &[String], i: Option<usize>| i.map_or("none".to_string(), |i| list[i].clone());
        let got = [name(&n.colours, v.colour), name(&n.shapes, v.shape), name(&n.directions, v.direction)];
        let want = [&tr["colour"], &tr["shape"], &tr["direction"]].map(|x| x.as_str().unwrap().to_string());
        let python = [&py["colour"], &py["shape"], &py["direction"]].map(|x| x.as_str().unwrap().to_string());
        clips += 1;
        rust_clip_ok += usize::from(got == want);
        py_clip_ok += usize::from(python == want);
        assert_eq!(got, want, "{}: {}", clip["file"], clip["prompt"]);
        let (tx, ty, px, py_y, pa) =
            (floats(&tr["x"]), floats(&tr["y"]), floats(&py["x"]), floats(&py["y"]), floats(&py["area"]));
        for (f, d) in det.iter().enumerate() {
            frames_total += 1;
            assert!(d.present, "{} frame {f}: no object", clip["file"]);
            rust_frame_ok += usize::from(
                n.colours[d.colour] == want[0]
                    && n.shapes[d.shape] == want[1]
                    && n.backgrounds[d.background] == tr["background"],
            );
            py_frame_ok += usize::from(
                py["colour_per_frame"][f] == want[0].as_str() && py["shape_per_frame"][f] == want[1].as_str(),
            );
            let err = torus_error(w, d.x, d.y, tx[f], ty[f]);
            let worst = if noisy { &mut worst_noisy } else { &mut worst_clean };
            if err > worst.0 {
                *worst = (
                    err,
                    format!("{} frame {f}: ({}, {}) vs truth ({}, {})", clip["file"], d.x, d.y, tx[f], ty[f]),
                );
            }
            sum_err += err;
            if !noisy {
                worst_py = worst_py.max(torus_error(w, px[f], py_y[f], tx[f], ty[f]));
                let alpha =
                    w.render(s, [1.0; 3], [0.0; 3], tr["radius"].as_f64().unwrap() as f32, tx[f], ty[f]);
                let area: f32 = alpha.iter().step_by(3).sum();
                let rel = (d.area - area).abs() / area;
                if rel > worst_area.0 {
                    worst_area = (
                        rel,
                        format!("{} frame {f}: {} vs {area} (detect.py {})", clip["file"], d.area, pa[f]),
                    );
                }
            }
        }
    }
    println!(
        "clips {clips}: rust {rust_clip_ok} python {py_clip_ok} right; frames {frames_total}: rust {rust_frame_ok} \
         python {py_frame_ok} right; centre error: rust max {:.3} px clean, {:.3} px noisy, mean {:.3} px; \
         python max {worst_py:.3} px clean; area vs truth: max relative error {:.4}",
        worst_clean.0,
        worst_noisy.0,
        sum_err / frames_total as f32,
        worst_area.0
    );
    assert!(rust_clip_ok >= py_clip_ok && rust_frame_ok >= py_frame_ok);
    assert!(worst_clean.0 <= POSITION_TOLERANCE, "{}", worst_clean.1);
    assert!(worst_noisy.0 <= NOISY_POSITION_TOLERANCE, "{}", worst_noisy.1);
    assert!(worst_area.0 <= AREA_TOLERANCE, "{}", worst_area.1);
    assert!(worst_clean.0 <= worst_py, "the refined centroid is no worse than detect.py's");
}

fn render_video(
    w: &World,
    p: &Prompt,
    frames: usize,
    speed: impl Fn(usize) -> f32,
    colour: impl Fn(usize) -> usize,
) -> Vec<Frame> {
    let dir = w.directions[p.direction].value;
    let (mut x, mut y) = (0.3f32, 62.7f32);
    (0..frames)
        .map(|f| {
            let img =
                w.render(p.shape, w.colours[colour(f)].value, w.backgrounds[p.background].value, 12.0, x, y);
            x = (x + dir[0] * speed(f)).rem_euclid(64.0);
            y = (y + dir[1] * speed(f)).rem_euclid(64.0);
            Frame::from_rgb_f32(64, 64, &img).unwrap()
        })
        .collect()
}

const PROMPT: &str = "a cyan star moving up on a brown background";

#[test]
fn a_steady_1000_frame_video_is_stationary() {
    let ev = Evaluator::shapes_world();
    let w = ev.world();
    let p = Prompt::parse(w, PROMPT).unwrap();
    let frames = render_video(w, &p, 1000, |_| 2.7, |_| p.colour);
    let report = ev.evaluate(&frames, &FramePrompts::single(w, PROMPT, 1000).unwrap()).unwrap();
    let s = &report.overall;
    assert_eq!(
        (s.present, s.colour, s.shape, s.background, s.direction),
        (1.0, Some(1.0), Some(1.0), Some(1.0), Some(1.0))
    );
    assert_eq!((s.identity_switches, s.longest_gap), (Some(0.0), 0));
    assert!((s.speed_mean.unwrap() - 2.7).abs() < 0.02, "{s:?}");
    assert!(s.speed_cv.unwrap() < 0.01 && s.background_flicker.unwrap() < 1e-6, "{s:?}");
    let st = report.stationarity.unwrap();
    assert_eq!((st.early.start, st.early.end, st.late.start, st.late.end), (0, 100, 900, 1000));
    for (metric, delta) in &st.delta {
        assert!(delta.unwrap().abs() < 0.02, "{metric}: {delta:?}");
    }
}

#[test]
fn drift_shows_in_the_stationarity_deltas() {
    let ev = Evaluator::shapes_world();
    let w = ev.world();
    let p = Prompt::parse(w, PROMPT).unwrap();
    // Slows from 3 to 1.5 px/frame and turns white after frame 500.
    let frames = render_video(
        w,
        &p,
        1000,
        |f| if f < 500 { 3.0 } else { 1.5 },
        |f| if f < 500 { p.colour } else { 6 },
    );
    let report = ev.evaluate(&frames, &FramePrompts::single(w, PROMPT, 1000).unwrap()).unwrap();
    let d = &report.stationarity.unwrap().delta;
    assert_eq!(d["colour"], Some(-1.0));
    assert_eq!(d["shape"], Some(0.0));
    assert!((d["speed_mean"].unwrap() + 1.5).abs() < 0.05, "{d:?}");
    assert!((report.overall.colour.unwrap() - 0.5).abs() < 1e-9);
    // The colour changes once: one switch among 999 pairs.
    assert!((report.overall.identity_switches.unwrap() - 1.0 / 999.0).abs() < 1e-9);
    assert!(report.overall.speed_cv.unwrap() > 0.3);
}

#[test]
fn wrong_direction_and_missing_object_are_scored() {
    let ev = Evaluator::shapes_world();
    let w = ev.world();
    let down = Prompt::parse(w, "a cyan star moving down on a brown background").unwrap();
    let mut frames = render_video(w, &down, 40, |_| 3.0, |_| down.colour);
    let blank =
        Frame::from_rgb_f32(64, 64, &w.render(0, [0.35, 0.2, 0.08], [0.35, 0.2, 0.08], 12.0, 0.0, 0.0))
            .unwrap();
    for f in &mut frames[10..15] {
        *f = blank.clone();
    }
    let report = ev.evaluate(&frames, &FramePrompts::single(w, PROMPT, 40).unwrap()).unwrap();
    let s = &report.overall;
    assert_eq!(s.direction, Some(0.0), "moving down, asked up");
    assert_eq!(s.longest_gap, 5);
    assert!((s.present - 35.0 / 40.0).abs() < 1e-9);
    assert!((s.colour.unwrap() - 35.0 / 40.0).abs() < 1e-9);
    assert!(report.stationarity.is_none(), "40 frames are too few for stationarity");
    assert!(!ev.detect(&blank).unwrap().present);
}

#[test]
fn a_prompt_schedule_scores_each_segment_and_skips_blends() {
    let ev = Evaluator::shapes_world();
    let w = ev.world();
    let a = Prompt::parse(w, PROMPT).unwrap();
    let text = format!("0: {PROMPT}\n30..40: a red cross moving left on a navy background\n");
    let schedule = PromptSchedule::parse(&text).unwrap();
    let prompts = FramePrompts::from_schedule(w, &schedule, 60).unwrap();
    assert_eq!(prompts.per_frame[31], None);
    assert_eq!(prompts.segments().iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(), [(0, 31), (40, 60)]);
    // The first prompt throughout: the first segment adheres, the second does not.
    let frames = render_video(w, &a, 60, |_| 3.0, |_| a.colour);
    let report = ev.evaluate(&frames, &prompts).unwrap();
    assert_eq!(report.segments[0].scores.colour, Some(1.0));
    assert_eq!(report.segments[1].scores.colour, Some(0.0));
    assert_eq!(report.segments[1].scores.direction, Some(0.0));
    assert_eq!(report.overall.scored_frames, 51);
}

#[test]
fn bad_input_is_a_clear_error() {
    let ev = Evaluator::shapes_world();
    let w = ev.world();
    let err = Prompt::parse(w, "a purple circle moving left on a gray background").unwrap_err();
    assert!(err.to_string().contains("unknown colour 'purple'; known: red, green"), "{err}");
    let err = Prompt::parse(w, "a red circle").unwrap_err();
    assert!(err.to_string().contains("expected `a {colour} {shape}"), "{err}");
    assert!(matches!(Frame::from_rgb8(64, 64, &[0; 10]), Err(EvalError::Frame(_))));
    assert!(Frame::from_rgb_f32(1, 1, &[0.0, f32::NAN, 0.0]).is_err());
    let small = Frame::from_rgb8(32, 32, &[0; 32 * 32 * 3]).unwrap();
    assert!(ev.detect(&small).unwrap_err().to_string().contains("64x64"));
    let prompts = FramePrompts::single(w, PROMPT, 3).unwrap();
    assert!(matches!(ev.evaluate(&[], &prompts), Err(EvalError::Length { frames: 0, prompts: 3 })));
    let empty = ev.evaluate(&[], &FramePrompts::single(w, PROMPT, 0).unwrap()).unwrap();
    assert_eq!(empty.overall, Scores::measure(w, &[], &[], 0..0));
    // Ranges beyond the detections or the prompts are cut, not a panic.
    let det = ev.detect(&Frame::from_rgb8(64, 64, &[0; 64 * 64 * 3]).unwrap()).unwrap();
    assert_eq!(Scores::measure(w, &[det.clone(), det], &[None], 0..5).frames, 1);
}

/// A decoder's planar [-1, 1] output reads like the same frame as bytes.
#[test]
fn planar_signed_frames_are_detected_like_bytes() {
    let ev = Evaluator::shapes_world();
    let w = ev.world();
    let rgb = w.render(4, w.colours[7].value, w.backgrounds[3].value, 11.0, 63.5, 20.25);
    let plane = 64 * 64;
    let mut chw = vec![0.0f32; 3 * plane];
    for (i, v) in rgb.iter().enumerate() {
        chw[(i % 3) * plane + i / 3] = v * 2.0 - 1.0;
    }
    let bytes: Vec<u8> = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
    let a = ev.detect(&Frame::from_planar_signed(64, 64, &chw).unwrap()).unwrap();
    let b = ev.detect(&Frame::from_rgb8(64, 64, &bytes).unwrap()).unwrap();
    assert_eq!((a.colour, a.shape, a.background), (7, 4, 3));
    assert_eq!((b.colour, b.shape, b.background), (7, 4, 3));
    assert!(torus_error(w, a.x, a.y, 63.5, 20.25) < POSITION_TOLERANCE, "{a:?}");
    assert!(torus_error(w, a.x, a.y, b.x, b.y) < 0.02);
}
