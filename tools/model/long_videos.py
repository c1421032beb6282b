#!/usr/bin/env python3
"""Long-video figures (issue 5): independent clips vs FIFO-Diffusion, scored by `fifo eval`.

Usage:
    python3 tools/model/long_videos.py [--prompts 20] [--frames 1000] \\
        [--settings clips,fifo-n1,fifo-n4,fifo-n4-la] [--backend cpu|gpu] [--weights f32|f16|int8] \\
        [--out long-videos] [--jobs 1]
    python3 tools/model/long_videos.py --prompts 2 --frames 16 --out /tmp/lv   # a quick check

For every prompt and setting it runs `target/release/fifo generate PROMPT --frames F --seed I`
(I = the prompt's index, the same for every setting) into OUT/SETTING/pII.y4m, then
`fifo eval pII.y4m --prompt PROMPT --json` into OUT/SETTING/pII.eval.json. A (prompt, setting)
whose eval JSON exists, made with the same prompt, seed, frames, backend, weights and model
(OUT/SETTING/pII.key.json), is skipped, so an interrupted run resumes. It prints one markdown table per
setting (means over the seen prompts and over the held-out prompts) and writes every prompt's row
to OUT/results.json.

Settings:
    clips       `--independent-clips`: consecutive f-frame clips, each from fresh noise with the
                ordinary DDIM sampler, S = f*n steps with the model's n (the naive baseline)
    fifo-n1     FIFO-Diffusion, n = 1, no lookahead
    fifo-n4     FIFO-Diffusion, n = 4, no lookahead
    fifo-n4-la  FIFO-Diffusion, n = 4, with lookahead

Prompts come from the model's grammar ("a {colour} {shape} moving {direction} on a {background}
background"), the words of each slot from the evaluator's world (src/eval/world.json), checked
against the model's vocabulary. Held-out prompts are the model.json `held_out_pairs` (colour,
shape), each with a different direction and background; the rest are seen pairs, spread evenly
over directions and backgrounds. With N prompts, round(N / 5) (1 to 4, none for N = 1) are held
out: 4 of the default 20.

Columns (mean over the group, the worst prompt in brackets): colour / shape / direction / present
are `fifo eval`'s overall fractions, speed CV its
coefficient of variation of the per-frame displacement, stationarity the largest |late - early|
over the fraction metrics (present, colour, shape, background, direction, identity switches)
between frames 0..100 and the last 100 (`-` when the video is too short for the two windows);
"all goals met" counts the prompts with colour >= 0.95, shape >= 0.90, direction >= 0.90 and
stationarity <= 0.05 (the issue's goals for the default settings).
Standard library only.
"""

import argparse
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTINGS = {
    "clips": ["--independent-clips"],
    "fifo-n1": ["--partitions", "1", "--no-lookahead"],
    "fifo-n4": ["--partitions", "4", "--no-lookahead"],
    "fifo-n4-la": ["--partitions", "4"],
}
DESCRIPTION = {
    "clips": "independent clips (S = f*n, the model's n)",
    "fifo-n1": "FIFO n=1, no lookahead",
    "fifo-n4": "FIFO n=4, no lookahead",
    "fifo-n4-la": "FIFO n=4, lookahead",
}
# The [0, 1] metrics whose late - early change the stationarity column takes the largest of.
FRACTIONS = ["present", "colour", "shape", "background", "direction", "identity_switches"]


def prompt_set(model_dir, count):
    """[(id, prompt, held_out)]: a deterministic mix of held-out and seen prompts."""
    with open(os.path.join(model_dir, "model.json")) as f:
        model = json.load(f)
    with open(os.path.join(ROOT, "src", "eval", "world.json")) as f:
        world = json.load(f)
    grammar = model["text"]["grammar"]
    vocab = set(model["text"]["vocabulary"])

    def words(key):
        names = [w["name"] if isinstance(w, dict) else w for w in world[key]]
        return [w for w in names if w in vocab]

    colours, shapes = words("colours"), words("shapes")
    directions, backgrounds = words("directions"), words("backgrounds")
    held_pairs = [tuple(p) for p in model.get("held_out_pairs", [])]

    def text(colour, shape, direction, background):
        return grammar.format(colour=colour, shape=shape, direction=direction, background=background)

    held = 0 if count < 2 else min(len(held_pairs), max(1, round(count / 5)))
    prompts = []
    for i, (colour, shape) in enumerate(held_pairs[:held]):
        direction = directions[i % len(directions)]
        background = backgrounds[(i + 1) % len(backgrounds)]
        prompts.append((text(colour, shape, direction, background), True))
    seen_pairs = [(c, s) for c in colours for s in shapes if (c, s) not in held_pairs]
    random.Random(0).shuffle(seen_pairs)
    for i in range(count - held):
        colour, shape = seen_pairs[i % len(seen_pairs)]
        direction = directions[i % len(directions)]
        background = backgrounds[(i // len(directions) + i) % len(backgrounds)]
        prompts.append((text(colour, shape, direction, background), False))
    # Seen first, then held out, numbered in that order.
    prompts.sort(key=lambda p: p[1])
    return [(f"p{i:02d}", p, h) for i, (p, h) in enumerate(prompts)]


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def run_one(args, setting, index, pid, prompt):
    """Generates and scores one video; returns its eval report (cached)."""
    folder = os.path.join(args.out, setting)
    os.makedirs(folder, exist_ok=True)
    video = os.path.join(folder, f"{pid}.y4m")
    stats = os.path.join(folder, f"{pid}.stats.json")
    report = os.path.join(folder, f"{pid}.eval.json")
    # What the cached result was made from: another prompt count, frame count, backend or model
    # gives the same file names different contents, so a result is reused only when all match.
    key = {"prompt": prompt, "seed": index, "frames": args.frames, "backend": args.backend,
           "weights": args.weights, "model": os.path.abspath(args.model), "flags": SETTINGS[setting]}
    key_path = os.path.join(folder, f"{pid}.key.json")
    if os.path.exists(report) and os.path.exists(key_path):
        with open(key_path) as f:
            if json.load(f) == key:
                return "cached", 0.0
    start = time.time()
    generate = [args.fifo, "generate", prompt, "--frames", str(args.frames), "--seed", str(index)]
    generate += ["--backend", args.backend, "--weights", args.weights, "--quiet"]
    generate += ["--model", args.model, "--out", video, "--stats", stats] + SETTINGS[setting]
    done = subprocess.run(generate, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(generate)}\n{done.stderr.strip()}")
    scored = subprocess.run(
        [args.fifo, "eval", video, "--prompt", prompt, "--json"], capture_output=True, text=True
    )
    if scored.returncode != 0:
        raise RuntimeError(f"fifo eval {video}: {scored.stderr.strip()}")
    write_json(report, json.loads(scored.stdout))
    write_json(key_path, key)
    return "ran", time.time() - start


def row(args, setting, pid, prompt, held_out):
    folder = os.path.join(args.out, setting)
    with open(os.path.join(folder, f"{pid}.eval.json")) as f:
        report = json.load(f)
    overall = report["overall"]
    stationarity = report.get("stationarity")
    worst = None
    if stationarity:
        deltas = [abs(v) for k, v in stationarity["delta"].items() if k in FRACTIONS and v is not None]
        worst = max(deltas) if deltas else None
    stats_path = os.path.join(folder, f"{pid}.stats.json")
    fps = None
    if os.path.exists(stats_path):
        with open(stats_path) as f:
            fps = json.load(f).get("frames_per_second")
    return {
        "setting": setting,
        "prompt_id": pid,
        "prompt": prompt,
        "held_out": held_out,
        "frames": report["frames"],
        "colour": overall["colour"],
        "shape": overall["shape"],
        "direction": overall["direction"],
        "present": overall["present"],
        "speed_cv": overall["speed_cv"],
        "stationarity_max_abs_delta": worst,
        "stationarity_delta": stationarity["delta"] if stationarity else None,
        "frames_per_second": fps,
    }


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def cell(value):
    return "-" if value is None else f"{value:.3f}"


# The goals for 1,000-frame videos at the default settings.
GOALS = {"colour": 0.95, "shape": 0.90, "direction": 0.90, "stationarity": 0.05}


def meets_goals(r):
    s = r["stationarity_max_abs_delta"]
    return (r["colour"] >= GOALS["colour"] and r["shape"] >= GOALS["shape"]
            and r["direction"] >= GOALS["direction"] and s is not None and s <= GOALS["stationarity"])


def table(setting, rows):
    """Means over each prompt group, with the worst prompt in brackets (the lowest adherence, the
    largest drift), and how many prompts meet every goal."""
    lines = [
        f"### {setting}: {DESCRIPTION[setting]}",
        "",
        "| prompts | n | colour | shape | direction | present | speed CV | stationarity max abs(late-early) | all goals met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    def summary(group, c, worst):
        values = [r[c] for r in group if r[c] is not None]
        if not values:
            return "-"
        return f"{cell(mean(values))} ({cell(worst(values))})"
    for name, held in (("seen", False), ("held-out", True)):
        group = [r for r in rows if r["held_out"] == held]
        if group:
            cells = [summary(group, c, min) for c in ("colour", "shape", "direction", "present")]
            cells.append(cell(mean(r["speed_cv"] for r in group)))
            cells.append(summary(group, "stationarity_max_abs_delta", max))
            cells.append(f"{sum(meets_goals(r) for r in group)}/{len(group)}")
            lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=20, help="prompts (default 20: 16 seen, 4 held out)")
    parser.add_argument("--frames", type=int, default=1000, help="frames per video (default 1000)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    parser.add_argument("--backend", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--weights", choices=["f32", "f16", "int8"], default="f32")
    parser.add_argument("--out", default="long-videos", help="folder for videos and JSON (resumable)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "shapes-t2v-tiny"))
    parser.add_argument("--fifo", default=os.path.join(ROOT, "target", "release", "fifo"))
    args = parser.parse_args()

    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    if args.prompts < 1 or args.frames < 1 or args.jobs < 1:
        parser.error("--prompts, --frames and --jobs must be at least 1")
    if not os.access(args.fifo, os.X_OK):
        parser.error(f"{args.fifo} is not an executable; cargo build --release -p fifo-cli")
    os.makedirs(args.out, exist_ok=True)
    prompts = prompt_set(args.model, args.prompts)
    write_json(os.path.join(args.out, "prompts.json"), [
        {"prompt_id": pid, "prompt": p, "held_out": h, "seed": i} for i, (pid, p, h) in enumerate(prompts)
    ])

    tasks = [(s, i, pid, p) for s in settings for i, (pid, p, _) in enumerate(prompts)]
    start = time.time()
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_one, args, *t): t for t in tasks}
        for n, future in enumerate(concurrent.futures.as_completed(futures), 1):
            setting, _, pid, prompt = futures[future]
            try:
                what, seconds = future.result()
                print(f"[{n}/{len(tasks)}] {setting} {pid} {what} {seconds:.1f} s: {prompt}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 (report every failure, keep the rest going)
                failures.append(f"{setting} {pid}: {e}")
                print(f"[{n}/{len(tasks)}] {setting} {pid} FAILED: {e}", file=sys.stderr)

    rows = []
    for setting in settings:
        for pid, prompt, held in prompts:
            if os.path.exists(os.path.join(args.out, setting, f"{pid}.eval.json")):
                rows.append(row(args, setting, pid, prompt, held))
    results = {
        "frames": args.frames,
        "backend": args.backend,
        "weights": args.weights,
        "settings": {s: {"flags": SETTINGS[s], "what": DESCRIPTION[s]} for s in settings},
        "rows": rows,
    }
    write_json(os.path.join(args.out, "results.json"), results)
    print(f"{len(prompts)} prompts x {args.frames} frames, backend {args.backend}, weights {args.weights}\n")
    for setting in settings:
        print(table(setting, [r for r in rows if r["setting"] == setting]) + "\n")
    print(f"per-prompt rows: {os.path.join(args.out, 'results.json')}; {time.time() - start:.1f} s", file=sys.stderr)
    if failures:
        print("\n".join(["failed:"] + failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
