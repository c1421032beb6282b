#!/usr/bin/env python3
"""Writes the evaluator's world constants and test fixtures from tools/model/world.py.

  src/eval/world.json              the shapes world's constants (palette, backgrounds, shapes,
                                   directions, sizes): all the Rust detector knows of the world
  tests/fixtures/eval/clip_NN.png  one clip per file, its frames side by side (64 x 64*F, RGB)
  tests/fixtures/eval/truth.json   per clip: prompt, ground truth (names, radius, speed, centres
                                   per frame) and the Python detector's outputs (tools/model/detect.py)
                                   on the same uint8 frames

The clips cover every colour x shape pair once (48 clean clips of 8 frames), every background x
direction pair 3 times, starts across the wrap edges, and 6 noisy clips (one per shape, Gaussian
noise sigma 0.1 on [-1, 1], 4 frames).

Run:    /work/venv/bin/python tools/eval_fixtures/make_fixtures.py           (needs torch)
Check:  python3 tools/eval_fixtures/make_fixtures.py --check   (regenerates in memory and compares
        byte for byte; prints a skip notice and succeeds when torch is not installed, as in CI)
"""
import argparse
import io
import json
import pathlib
import sys
import zlib
import struct

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORLD_JSON = ROOT / "src" / "eval" / "world.json"
FIXTURES = ROOT / "tests" / "fixtures" / "eval"
FRAMES = 8
NOISY_FRAMES = 4
NOISE_SIGMA = 0.1
SEED = 20261128


def png_bytes(rgb):
    """uint8 [H, W, 3] to PNG bytes (same encoder as tools/model/imageio_png.py, in memory)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    out = io.BytesIO()
    out.write(b"\x89PNG\r\n\x1a\n")
    out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
    out.write(chunk(b"IDAT", zlib.compress(raw, 9)))
    out.write(chunk(b"IEND", b""))
    return out.getvalue()


def world_constants(world):
    return {
        "size": world.SIZE,
        "colours": [{"name": k, "rgb": list(v)} for k, v in world.COLOURS.items()],
        "backgrounds": [{"name": k, "rgb": list(v)} for k, v in world.BACKGROUNDS.items()],
        "shapes": list(world.SHAPES),
        "directions": [{"name": k, "vector": list(v)} for k, v in world.DIRECTIONS.items()],
        "radius": list(world.RADIUS),
        "speed": list(world.SPEED),
    }


def r3(values):
    return [round(float(v), 3) for v in values]


def build(world, detect, torch):
    g = torch.Generator().manual_seed(SEED)
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand(1, generator=g))
    specs = []  # (colour, shape, bg, direction, radius, speed, x0, y0, frames, noise)
    i = 0
    for c in range(len(world.COLOURS)):
        for s in range(len(world.SHAPES)):
            bg, d = i % 4, (i // 4) % 4
            x0, y0 = u(0, world.SIZE), u(0, world.SIZE)
            if i % 3 == 0:  # straddle the left/right edge
                x0 = u(-3.0, 3.0) % world.SIZE
            elif i % 3 == 1:  # straddle the top/bottom edge
                y0 = u(-3.0, 3.0) % world.SIZE
            specs.append((c, s, bg, d, u(*world.RADIUS), u(*world.SPEED), x0, y0, FRAMES, 0.0))
            i += 1
    for s in range(len(world.SHAPES)):
        c = (3 * s + 1) % len(world.COLOURS)
        specs.append((c, s, s % 4, (s + 1) % 4, u(*world.RADIUS), u(*world.SPEED), u(0, world.SIZE),
                      u(0, world.SIZE), NOISY_FRAMES, NOISE_SIGMA))

    files, clips = {}, []
    for k, (c, s, bg, d, radius, speed, x0, y0, frames, noise) in enumerate(specs):
        t = lambda v, dt=torch.long: torch.tensor([v], dtype=dt)
        clip = world.Clips(shape=t(s), colour=t(c), bg=t(bg), direction=t(d), radius=t(radius, torch.float32),
                           speed=t(speed, torch.float32), x0=t(x0, torch.float32), y0=t(y0, torch.float32))
        video = clip.render(range(frames))  # [1, F, 3, H, W] in [-1, 1]
        if noise > 0:
            video = video + noise * torch.randn(video.shape, generator=g)
        u8 = np.clip((video.numpy() + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)  # [1, F, 3, H, W]
        strip = np.concatenate(list(np.moveaxis(u8[0], 1, -1)), axis=1)  # [H, F*W, 3]
        name = f"clip_{k:02d}.png"
        files[name] = png_bytes(strip)
        # The Python detector sees exactly the frames the Rust detector will read.
        seen = torch.from_numpy(u8.astype(np.float32) / 127.5 - 1.0)
        det = detect.detect(seen)
        truth = clip.truth(range(frames))
        clips.append({
            "file": name,
            "frames": frames,
            "noise_sigma": noise,
            "prompt": clip.prompts()[0],
            "truth": {
                "colour": truth["colour"][0], "shape": truth["shape"][0],
                "direction": truth["direction"][0], "background": truth["background"][0],
                "radius": round(radius, 3), "speed": round(speed, 3),
                "x": r3(truth["x"][0]), "y": r3(truth["y"][0]),
            },
            "python_detector": {
                "colour": det["colour"][0], "shape": det["shape"][0], "direction": det["direction"][0],
                "colour_per_frame": [world.COLOUR_NAMES[v] for v in det["colour_per_frame"][0].tolist()],
                "shape_per_frame": [world.SHAPES[v] for v in det["shape_per_frame"][0].tolist()],
                "x": r3(det["x"][0]), "y": r3(det["y"][0]), "area": r3(det["area"][0]),
            },
        })
    truth = {"generator": "tools/eval_fixtures/make_fixtures.py", "seed": SEED, "clips": clips}
    files["truth.json"] = (json.dumps(truth, indent=1) + "\n").encode()
    world_json = (json.dumps(world_constants(world), indent=2) + "\n").encode()
    return world_json, files


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        if args.check:
            print("eval fixtures: skipped (torch is not installed; the fixtures are committed)")
            return 0
        raise
    sys.path.insert(0, str(ROOT / "tools" / "model"))
    import detect
    import world

    torch.set_num_threads(1)
    world_json, files = build(world, detect, torch)
    targets = {WORLD_JSON: world_json, **{FIXTURES / n: b for n, b in files.items()}}
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, b in targets.items() if not p.exists() or p.read_bytes() != b]
        extra = [str(p.relative_to(ROOT)) for p in FIXTURES.glob("*") if p not in targets]
        if stale or extra:
            print("eval fixtures are not current (run tools/eval_fixtures/make_fixtures.py):")
            for p in stale:
                print(f"  differs: {p}")
            for p in extra:
                print(f"  not generated: {p}")
            return 1
        print(f"eval fixtures: {len(targets)} files current")
        return 0
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for old in FIXTURES.glob("*"):
        if old not in targets:
            old.unlink()
    WORLD_JSON.parent.mkdir(parents=True, exist_ok=True)
    for p, b in targets.items():
        p.write_bytes(b)
    total = sum(len(b) for b in targets.values())
    print(f"wrote {len(targets)} files, {total / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
