#!/usr/bin/env python3
"""Regenerate tests/fixtures/parity/*.json (deterministic: same bytes every run).

    /work/venv/bin/python tools/reference/make_parity_fixtures.py [--check] [--f32-report]

Runs the self-test (Philox KAT vectors, randomgen cross-check if installed, the spec's schedule
test vectors, DDIM identity at index 0, in-place tail-to-head == snapshot/Jacobi) first and
refuses to write anything if it fails.  --check: regenerate in memory and compare with the files
on disk instead of writing.  --f32-report: also run every case in float32 and print the max
deviation from the float64 fixture (information only).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import philox  # noqa: E402
import fifo_official as fo  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "parity")

FRAME_SHAPE = [2, 3, 4]
D = int(np.prod(FRAME_SHAPE))
T = 1000
BETA_START = 0.00085
BETA_END = 0.012
PROMPT_VALUE = 0.5
NUM_FRAMES = 12


def cases():
    out = []
    for n in (1, 4):
        for ld in (False, True):
            for init in ("clip", "noise"):
                out.append(dict(case=f"f4_n{n}_ld{int(ld)}_{init}", f=4, n=n, lookahead=ld,
                                init=init, eta=1.0, guidance=3.0, seed=321))
    out.append(dict(case="f4_n4_ld1_noise_eta0", f=4, n=4, lookahead=True, init="noise",
                    eta=0.0, guidance=3.0, seed=321))
    out.append(dict(case="f8_n2_ld1_clip_seed2p40", f=8, n=2, lookahead=True, init="clip",
                    eta=1.0, guidance=3.0, seed=2**40 + 7))
    return out


def noise_cases():
    seeds = [0, 321, 2**40 + 7, 2**64 - 1]
    ids = [0, 1, -1, -12, 2**31, 2**32, 2**32 + 5, -(2**32) - 1, 2**63 - 1, -(2**63)]
    out = []
    k = 0
    for seed in seeds:
        for fid in ids:
            purpose = (k % 5) + 1
            index = [0, 15, 63, 1, 65535][k % 5]
            out.append((seed, fid, index, purpose))
            k += 1
    # a few draws the fixtures actually use (f4_n1_ld0_noise: slot 0 start, frame 0 step)
    out += [(321, -4, 3, philox.ENQUEUE), (321, 0, 3, philox.STEP), (321, 0, 0, philox.RENOISE),
            (321, 3, 15, philox.CLIP_INIT), (321, 2, 7, philox.CLIP_STEP)]
    return out


# ------------------------------------------------------------------------------------------
# self-test
# ------------------------------------------------------------------------------------------

SPEC_GRID_64 = [0, 16, 32, 48, 63, 79, 95, 111, 127, 143, 159, 174, 190, 206, 222, 238, 254, 270,
                285, 301, 317, 333, 349, 365, 381, 396, 412, 428, 444, 460, 476, 492, 507, 523, 539,
                555, 571, 587, 603, 618, 634, 650, 666, 682, 698, 714, 729, 745, 761, 777, 793,
                809, 825, 840, 856, 872, 888, 904, 920, 936, 951, 967, 983, 999]


def self_test(verbose=True):
    philox.self_test(verbose)

    s = fo.Schedule(64, 1.0, T, BETA_START, BETA_END)
    assert s.ddim_timesteps.tolist() == SPEC_GRID_64
    assert round(float(s.alphas_cumprod[0]), 5) == 0.99915
    assert abs(float(s.alphas_cumprod[999]) - 0.0046601) < 5e-8
    want = {0: 0.0, 1: 0.02833, 2: 0.08748, 3: 0.10419, 63: 0.41680}
    for i, v in want.items():
        assert abs(float(s.ddim_sigmas[i]) - v) < 5e-6, (i, s.ddim_sigmas[i], v)
    # index 0 is an identity step: a = a_prev, sigma = 0
    assert s.ddim_alphas[0] == s.ddim_alphas_prev[0] and s.ddim_sigmas[0] == 0.0
    # grids used by the fixtures
    assert fo.make_ddim_timesteps(4, T).tolist() == [0, 333, 666, 999]
    if verbose:
        print("schedule: S=64 grid, alphabar[0]=%.5f alphabar[999]=%.7f" %
              (s.alphas_cumprod[0], s.alphas_cumprod[999]))
        print("schedule: sigma_0..3 = %s, sigma_63 = %.5f" %
              (", ".join("%.5f" % v for v in s.ddim_sigmas[:4]), s.ddim_sigmas[63]))
        print("schedule: spec test vectors OK")

    # in-place tail-to-head == snapshot (Jacobi), bit for bit, both starts, LD on and off
    for kw in (dict(f=4, n=2, lookahead=True, init="noise"),
               dict(f=4, n=2, lookahead=False, init="clip"),
               dict(f=4, n=2, lookahead=True, init="clip")):
        a = fo.fifo_sampling(eta=1.0, guidance=3.0, seed=7, D=D, prompt_value=PROMPT_VALUE,
                             num_frames=3, **kw)
        b = fo.fifo_sampling(eta=1.0, guidance=3.0, seed=7, D=D, prompt_value=PROMPT_VALUE,
                             num_frames=3, snapshot=True, **kw)
        assert np.array_equal(a["output"], b["output"]), kw
    if verbose:
        print("loop: in-place tail-to-head == snapshot (Jacobi) OK")

    # warm-up labels (Latte): f=4, n=1, LD -> L = 6, labels become diagonal at iteration L-1
    tr = []
    fo.fifo_sampling(f=4, n=1, lookahead=True, init="noise", eta=1.0, guidance=3.0, seed=1, D=D,
                     prompt_value=PROMPT_VALUE, num_frames=1, trace=tr)
    labels = [t["labels"].tolist() for t in tr]
    # plain labels (indices) are [0, 0, 0, 1, 2, 3]; at iteration i < L-1 every slot ahead of
    # slot L-1-i (head slots included) takes the label of slot L-1-i
    assert labels[0] == [3, 3, 3, 3, 3, 3]
    assert labels[1] == [2, 2, 2, 2, 2, 3]
    assert labels[2] == [1, 1, 1, 1, 2, 3]
    assert labels[3] == [0, 0, 0, 1, 2, 3]
    assert labels[4] == [0, 0, 0, 1, 2, 3]
    assert labels[5] == [0, 0, 0, 1, 2, 3]   # i = L-1: no override any more
    assert len(labels) == 7                  # E = L = 6, N = 1
    if verbose:
        print("loop: warm-up label override OK")


# ------------------------------------------------------------------------------------------
# fixture writing (hand-rolled JSON so that the layout is stable and diff-friendly)
# ------------------------------------------------------------------------------------------

def f32(v):
    """The float32 value, written as the shortest decimal that round-trips the (exactly
    representable) float64 of it; parses exactly as f32 or f64."""
    return repr(float(np.float32(v)))


def f64(v):
    return repr(float(v))


def dump(obj_items):
    """obj_items: list of (key, json_text) -> one key per line."""
    lines = ["{"]
    for i, (k, v) in enumerate(obj_items):
        comma = "," if i + 1 < len(obj_items) else ""
        lines.append(f"  {json.dumps(k)}: {v}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def rows(mat, fmt):
    return "[\n" + ",\n".join("    [" + ", ".join(fmt(x) for x in r) + "]" for r in mat) + "\n  ]"


def make_case(c):
    r = fo.fifo_sampling(c["f"], c["n"], c["lookahead"], c["init"], c["eta"], c["guidance"],
                         c["seed"], D, PROMPT_VALUE, NUM_FRAMES, T, BETA_START, BETA_END)
    sched = r["schedule"]
    items = [
        ("case", json.dumps(c["case"])),
        ("f", str(c["f"])),
        ("n", str(c["n"])),
        ("lookahead", json.dumps(c["lookahead"])),
        ("init", json.dumps(c["init"])),
        ("eta", f64(c["eta"])),
        ("guidance", f64(c["guidance"])),
        ("seed", str(c["seed"])),
        ("frame_shape", json.dumps(FRAME_SHAPE)),
        ("T", str(T)),
        ("beta_start", f64(BETA_START)),
        ("beta_end", f64(BETA_END)),
        ("beta_schedule", json.dumps("scaled_linear")),
        ("timestep_spacing", json.dumps("official_linspace")),
        ("prediction", json.dumps("epsilon")),
        ("prompt_value", f64(PROMPT_VALUE)),
        ("frames", str(NUM_FRAMES)),
        ("num_steps", str(r["S"])),
        ("head_slots", str(r["h"])),
        ("queue_length", str(r["L"])),
        ("first_emit_iteration", str(r["E"])),
        ("iterations", str(r["iterations"])),
        ("timesteps", json.dumps([int(t) for t in sched.ddim_timesteps])),
        ("sigmas", "[" + ", ".join(f64(s) for s in sched.ddim_sigmas) + "]"),
        ("alphas", "[" + ", ".join(f64(s) for s in sched.ddim_alphas) + "]"),
        ("initial_queue_ids", json.dumps([int(i) for i in r["initial_ids"]])),
        ("initial_queue", rows(r["initial_queue"], f32)),
    ]
    if c["init"] == "clip":
        items.append(("clip", rows(r["clip"], f32)))
    items.append(("output", rows(r["output"], f32)))
    return dump(items), r


def make_noise_fixture():
    lines = ["["]
    nc = noise_cases()
    for i, (seed, fid, index, purpose) in enumerate(nc):
        vals = philox.noise(seed, fid, index, purpose, 8)
        comma = "," if i + 1 < len(nc) else ""
        lines.append('  {"seed": %d, "frame_id": %d, "index": %d, "purpose": %d, "purpose_name": %s, '
                     '"values": [%s]}%s' % (seed, fid, index, purpose,
                                            json.dumps(philox.PURPOSE_NAMES[purpose]),
                                            ", ".join(f32(v) for v in vals), comma))
    lines.append("]")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare with files on disk, write nothing")
    ap.add_argument("--f32-report", action="store_true", help="print float32-vs-float64 drift")
    args = ap.parse_args()

    self_test()

    files = {"noise.json": make_noise_fixture()}
    results = {}
    for c in cases():
        text, r = make_case(c)
        files[c["case"] + ".json"] = text
        results[c["case"]] = (c, r)
        out = r["output"]
        print("case %-26s S=%2d h=%d L=%2d E=%2d iters=%2d  |out| max %.4f" %
              (c["case"], r["S"], r["h"], r["L"], r["E"], r["iterations"], np.abs(out).max()))

    if args.f32_report:
        fo.set_dtype(np.float32)
        try:
            for name, (c, r) in results.items():
                r32 = fo.fifo_sampling(c["f"], c["n"], c["lookahead"], c["init"], c["eta"],
                                       c["guidance"], c["seed"], D, PROMPT_VALUE, NUM_FRAMES,
                                       T, BETA_START, BETA_END)
                ref = r["output"].astype(np.float32).astype(np.float64)
                print("f32 drift %-26s max |f32 - f64| = %.2e" %
                      (name, np.abs(r32["output"].astype(np.float64) - ref).max()))
        finally:
            fo.set_dtype(np.float64)

    if args.check:
        bad = 0
        for name, text in files.items():
            path = os.path.join(OUT_DIR, name)
            if not os.path.exists(path) or open(path).read() != text:
                print("DIFFERS:", path)
                bad += 1
        print("check:", "OK" if not bad else f"{bad} file(s) differ")
        return 1 if bad else 0

    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for name, text in files.items():
        with open(os.path.join(OUT_DIR, name), "w", newline="\n") as fh:
            fh.write(text)
        total += len(text)
    print("wrote %d files to %s (%d bytes)" % (len(files), OUT_DIR, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
