#!/usr/bin/env python3
"""Several devices splitting each iteration's windows (`fifo generate --devices`), measured side by
side in one run on the adapters this machine has, then projected to k real GPUs.

  cargo build --release -p fifo-cli
  python3 tools/bench/multi_device.py [--frames 4] [--partitions 2] [--model DIR] [-- extra fifo args]

Measured: steady-state frames/s of each device set (`--stats`' frames after the first over their
time, from the run of twice --frames; the timed first iterations fall before the first frame),
the ratio to the first adapter alone, the split the run settled on and the frames exchanged per
iteration. On this machine every adapter is the same two CPU cores (lavapipe, llvmpipe GL), so
two devices cannot be faster than one here: the point of the measured rows is that the split
costs little (exchange and one more submission per iteration) and that the balance follows the
faster adapter.

Projection to k GPUs of one kind, with W windows of t_w seconds each, a decode of t_d seconds
on the head device and B boundaries exchanging x frames of s bytes each way through the host:
    T(1) = W t_w + t_d,    T(k) = ceil(W / k) t_w + t_d + (k - 1) (2 lat + 2 x s / bw)
(the devices run their windows at once; each boundary costs one read-back of the sender's
outbox and one write into the receiver, serially on the host; bw is the host link bandwidth and
lat the latency of one read-back or write). Assumptions: windows of equal cost on devices of one
kind, bw = 16 GB/s, lat = 50 us; the window time of a real GPU is not measured here (no GPU was
lent), so the table gives the speedup for the measured t_w and for 1 ms to 1 s per window.
"""
import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIFO = ROOT / "target" / "release" / "fifo"
PROMPT = "a red circle moving right on a black background"
BANDWIDTH = 16e9
LATENCY = 50e-6


def adapters():
    out = subprocess.run([str(FIFO), "devices", "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run(label, devices, args, tmp, frames):
    stats = pathlib.Path(tmp) / f"{label}-{frames}.json"
    out = pathlib.Path(tmp) / f"{label}-{frames}.y4m"
    cmd = [str(FIFO), "generate", args.prompt, "--frames", str(frames), "--partitions", str(args.partitions),
           "--devices", devices, "--quiet", "--out", str(out), "--stats", str(stats)] + args.extra
    if args.model:
        cmd += ["--model", args.model]
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return json.loads(stats.read_text()), out.read_bytes()


def steady(short, long):
    """Frames/s after the first frame (the timed first iterations and a new split fall before it
    once the queue is filled), and the per-iteration UNet and per-frame decode seconds between the
    two runs (session builds cancel out)."""
    (a, _), (b, _) = short, long
    frames = b["frames"] - a["frames"]
    iterations = b["iterations"] - a["iterations"]
    stage = lambda k: (b["stages"][k] - a["stages"][k])
    return b["frames_per_second"], stage("unet") / iterations, stage("decode") / frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4, help="frames of the shorter run")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--model", default=None, help="model package (default: the shipped one)")
    ap.add_argument("extra", nargs="*", help="more `fifo generate` arguments, after --")
    args = ap.parse_args()
    if not FIFO.exists():
        sys.exit(f"{FIFO} is missing: cargo build --release -p fifo-cli")
    found = adapters()
    if not found:
        sys.exit("no GPU adapter: install lavapipe (see README) to run this benchmark")
    sets = {f"[{a['index']}] {a['backend']}": str(a["index"]) for a in found}
    sets[f"[{found[0]['index']}] x2 (one adapter, two devices)"] = f"{found[0]['index']},{found[0]['index']}"
    if len(found) > 1:
        sets["all adapters"] = ",".join(str(a["index"]) for a in found)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, devices) in enumerate(sets.items()):
            short = run(f"set{n}", devices, args, tmp, args.frames)
            long = run(f"set{n}", devices, args, tmp, 2 * args.frames)
            runs[name] = (short, long)
    base_name = next(iter(runs))
    base_fps, t_unet, t_decode = steady(*runs[base_name])
    base_video = runs[base_name][1][1]
    stats = runs[base_name][1][0]
    print(f"\n{args.frames} and {2 * args.frames} frames, n = {args.partitions}, model {args.model or 'shipped'}")
    print(f"{'devices':<40} {'frames/s':>9} {'ratio':>6} {'split (dev:win)':>16} {'exchanged/it':>13}  same video")
    for name, (short, long) in runs.items():
        fps, _, _ = steady(short, long)
        s = long[0]
        split = s.get("split") or {}
        # device index (in --devices order) : windows, head first
        windows = " ".join(f"{d}:{w}" for d, w in zip(split.get("devices", []), split.get("windows", []))) or "-"
        moved = split.get("frames_exchanged_per_iteration", 0)
        same = "yes" if long[1] == base_video else "no"
        print(f"{name:<40} {fps:9.3f} {fps / base_fps:6.2f} {windows:>16} {moved:>13}  {same}")

    # The projection, from the single-device run's measured window and decode times.
    package = json.loads((pathlib.Path(args.model or ROOT / "models" / "shapes-t2v-tiny") / "model.json").read_text())
    lookahead = "--no-lookahead" not in args.extra
    windows = 2 * args.partitions if lookahead else args.partitions
    t_w = t_unet / windows
    lat = package["latent"]
    this_frame = 4 * lat["channels"] * lat["height"] * lat["width"]
    this_boundary = package["frames"] // 2 if lookahead else 1
    # The official setting: f = 16, n = 4 with lookahead, 4 x 40 x 64 latents (320 x 512 video).
    layouts = [("this run", windows, this_boundary, this_frame), ("official (f=16, n=4, lookahead)", 8, 8, 4 * 40 * 64 * 4)]
    print(f"\nprojection to k devices of one kind: speedup T(1)/T(k) for window times t_w (the measured one on "
          f"{base_name}: {t_w * 1e3:.2f} ms, decode {t_decode * 1e3:.2f} ms); exchange through the host at "
          f"{BANDWIDTH / 1e9:.0f} GB/s with {LATENCY * 1e6:.0f} us per read-back or write")
    for label, w, per_boundary, s_bytes in layouts:
        print(f"  {label}: W = {w} windows, {per_boundary} frames of {s_bytes} B per boundary and iteration")
        for tw in [t_w, 1e-3, 1e-2, 1e-1, 1.0]:
            td = t_decode if tw == t_w else 0.0
            row = []
            for k in [1, 2, 4, 8]:
                if k > w:
                    row.append("    -")
                    continue
                exchange = (k - 1) * (2 * LATENCY + 2 * per_boundary * s_bytes / BANDWIDTH)
                t_k = math.ceil(w / k) * tw + td + exchange
                row.append(f"{(w * tw + td) / t_k:5.2f}")
            tag = "measured" if tw == t_w else ""
            print(f"    t_w = {tw * 1e3:8.2f} ms {tag:<9} k = 1, 2, 4, 8: {'  '.join(row)}")


if __name__ == "__main__":
    main()
