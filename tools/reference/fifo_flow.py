#!/usr/bin/env python3
"""FIFO-Diffusion with a rectified-flow model (Wan 2.1): float64 numpy reference and fixtures.

    /work/venv/bin/python tools/reference/fifo_flow.py [--check]

Writes tests/fixtures/flow/fifo_<case>.json (deterministic) for tests/flow_matching.rs, after a
self-test (diffusers' FlowMatchEulerDiscreteScheduler grid when diffusers is installed, in-place
tail-to-head == snapshot, the Euler step with the exact velocity landing on x0). --check:
regenerate in memory and compare with the files on disk.

Self-contained on purpose (it does not import fifo_official.py): the loop is transcribed again
from the official structure (funcs.fifo_ddim_sampling / the Latte warm-up; see fifo_official.py
and /work/shared/fifo-spec.md), with the DDIM pieces replaced by rectified flow:

  * levels: diffusers' FlowMatchEulerDiscreteScheduler grid for S steps and `shift` (see
    flow_sigmas), ascending: index 0 = cleanest, index S-1 = sigma 1 (pure noise); index i steps
    to sigma_prev[i] = sigma[i-1], and index 0 to 0 (a clean x0).
  * the model is told t = sigma * T, as float32 (the project's Denoiser takes f32 timesteps).
  * one step: x' = x + (sigma_prev - sigma) v, no noise (eta 0: the Euler step is deterministic).
  * forward noising (clip start): x = (1 - sigma) x0 + sigma z.
  * toy model: a velocity predictor (toy_velocity), guided v_u + s (v_c - v_u).

Noise, frame ids, first emitting iteration, warm-up labels and emission are as in
fifo_official.py (README.md decisions 1-3, 7, 8): philox.noise(seed, frame id, index, purpose).
"""

import argparse
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import philox  # noqa: E402
from philox import ENQUEUE, RENOISE, CLIP_INIT  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "flow")

FRAME_SHAPE = [2, 3, 4]
D = int(np.prod(FRAME_SHAPE))
T = 1000
PROMPT_VALUE = 0.5
NUM_FRAMES = 8


def cases():
    return [
        dict(case="fifo_f4_n2_ld1_noise_shift3", f=4, n=2, lookahead=True, init="noise", guidance=3.0,
             seed=321, shift=3.0),
        dict(case="fifo_f4_n2_ld0_clip_shift5", f=4, n=2, lookahead=False, init="clip", guidance=3.0,
             seed=321, shift=5.0),
        dict(case="fifo_f4_n4_ld1_clip_shift3", f=4, n=4, lookahead=True, init="clip", guidance=5.0,
             seed=2**40 + 7, shift=3.0),
        dict(case="fifo_f4_n1_ld0_noise_shift1_noguidance", f=4, n=1, lookahead=False, init="noise",
             guidance=1.0, seed=9, shift=1.0),
    ]


# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------

def flow_sigmas(S, T, shift):
    """diffusers FlowMatchEulerDiscreteScheduler (use_dynamic_shifting False), in float64:
    __init__: training sigmas shift(t/T) for t = 1..T, so sigma_max = shift(1), sigma_min =
    shift(1/T); set_timesteps(S): linspace(sigma_max*T, sigma_min*T, S) / T, shifted AGAIN,
    descending (the final 0 that diffusers appends is not included)."""
    def shifted(s):
        return shift * s / (1 + (shift - 1) * s)
    ts = np.linspace(shifted(1.0) * T, shifted(1.0 / T) * T, S)
    return shifted(ts / T)


class FlowSchedule:
    def __init__(self, S, T, shift):
        self.S, self.T, self.shift = S, T, shift
        self.sigmas = flow_sigmas(S, T, shift)[::-1].copy()                # ascending
        self.sigmas_prev = np.concatenate([[0.0], self.sigmas[:-1]])
        self.timesteps = self.sigmas * T


# --------------------------------------------------------------------------------------------
# Toy velocity model and guidance
# --------------------------------------------------------------------------------------------

def toy_velocity(x, t, c):
    """x: [f, D], t: [f] (float32 values), c: [f].
      m[d]    = (x[0][d] + ... + x[f-1][d]) / f                     (sequential sum, then divide)
      v[j][d] = (0.5 + 0.0003 * t_j) * x[j][d]
                + 0.2 * tanh(0.5*m[d] + 0.3*x[(j+1) % f][d] + 0.05*j + c[j] + 0.001*t_j + 0.01*d)
    (the tanh argument summed left to right in that order)."""
    f, Dx = x.shape
    m = x[0].copy()
    for j in range(1, f):
        m = m + x[j]
    m = m / f
    d = np.arange(Dx, dtype=np.float64)
    v = np.empty_like(x)
    for j in range(f):
        tj = float(np.float32(t[j]))
        arg = 0.5 * m + 0.3 * x[(j + 1) % f] + 0.05 * j + float(c[j]) + 0.001 * tj + 0.01 * d
        v[j] = (0.5 + 0.0003 * tj) * x[j] + 0.2 * np.tanh(arg)
    return v


def guided(x, t, prompt_value, guidance):
    f = x.shape[0]
    v_c = toy_velocity(x, t, np.full(f, prompt_value))
    if guidance == 1.0:
        return v_c
    v_u = toy_velocity(x, t, np.zeros(f))
    return v_u + guidance * (v_c - v_u)


def euler(sched, x, v, indices):
    """Per frame with its own index k: x + (sigma_prev[k] - sigma[k]) v."""
    dt = sched.sigmas_prev[indices] - sched.sigmas[indices]
    return x + dt[:, None] * v


# --------------------------------------------------------------------------------------------
# Queue start, shift, loop
# --------------------------------------------------------------------------------------------

def frame_id(slot, it, h, E):
    return it + slot - h - E


def clip_sampling(sched, f, model, seed, dim=D):
    """Ordinary f-frame clip: noise(seed, j, S-1, CLIP_INIT), then S Euler steps, k = S-1..0."""
    img = np.stack([philox.noise(seed, j, sched.S - 1, CLIP_INIT, dim).astype(np.float64)
                    for j in range(f)])
    for k in reversed(range(sched.S)):
        idx = np.full(f, k)
        img = euler(sched, img, model(img, sched.timesteps[idx]), idx)
    return img


def prepare_latents(sched, clip, f, lookahead, seed, E, dim=D):
    """Head slots p < h: (1-s_0) clip[0] + s_0 noise(seed, id, 0, RENOISE); slot h+i:
    (1-s_i) clip[max(0, i-(S-f))] + s_i noise(seed, id, i, RENOISE)."""
    S, h = sched.S, (f // 2 if lookahead else 0)
    out = []
    for p in range(h):
        s = sched.sigmas[0]
        z = philox.noise(seed, frame_id(p, 0, h, E), 0, RENOISE, dim).astype(np.float64)
        out.append((1 - s) * clip[0] + s * z)
    for i in range(S):
        s = sched.sigmas[i]
        z = philox.noise(seed, frame_id(h + i, 0, h, E), i, RENOISE, dim).astype(np.float64)
        out.append((1 - s) * clip[max(0, i - (S - f))] + s * z)
    return np.stack(out)


def fifo_flow(f, n, lookahead, init, guidance, seed, shift, num_frames, snapshot=False, model=None, dim=D):
    """model: optional `model(x [f, dim], t [f]) -> guided velocity [f, dim]` replacing the toy
    model (tools/reference/package_fifo.py passes a package's graphs)."""
    if model is None:
        model = lambda x, t: guided(x, t, PROMPT_VALUE, guidance)  # noqa: E731
    S = f * n
    sched = FlowSchedule(S, T, shift)
    h = f // 2 if lookahead else 0
    L = S + h
    E = S - f if init == "clip" else L
    indices = np.concatenate([np.zeros(h, dtype=np.int64), np.arange(S)])
    clip = None
    if init == "clip":
        clip = clip_sampling(sched, f, model, seed, dim)
        latents = prepare_latents(sched, clip, f, lookahead, seed, E, dim)
    else:
        latents = np.stack([philox.noise(seed, frame_id(p, 0, h, E), S - 1, ENQUEUE, dim)
                            .astype(np.float64) for p in range(L)])
    ids = np.array([frame_id(p, 0, h, E) for p in range(L)], dtype=np.int64)
    initial_queue = latents.copy()
    outputs = []
    for i in range(E + num_frames):
        curr = indices.copy()
        if init == "noise" and i < L - 1:          # Latte warm-up
            curr[:-i - 1] = curr[-i - 1]
        source = latents.copy() if snapshot else latents
        written = np.zeros(L, dtype=np.int64)
        for rank in reversed(range(2 * n if lookahead else n)):   # tail to head, in place
            start = rank * (f // 2) if lookahead else rank * f
            mid, end = start + f // 2, start + f
            idx = curr[start:end]
            x = source[start:end].copy()
            out = euler(sched, x, model(x, sched.timesteps[idx]), idx)
            if lookahead:
                latents[mid:end] = out[f // 2:]
                written[mid:end] += 1
            else:
                latents[start:end] = out
                written[start:end] += 1
        assert np.all(written[h:] == 1) and np.all(written[:h] == 0)
        if i >= E:
            assert ids[h] == i - E
            outputs.append(latents[h].copy())
        latents[:-1] = latents[1:].copy()
        ids[:-1] = ids[1:].copy()
        ids[-1] = ids[-2] + 1
        latents[-1] = philox.noise(seed, int(ids[-1]), S - 1, ENQUEUE, dim).astype(np.float64)
    return dict(sched=sched, S=S, h=h, L=L, E=E, clip=clip, initial_queue=initial_queue,
                output=np.stack(outputs))


# --------------------------------------------------------------------------------------------
# Self-test and fixtures
# --------------------------------------------------------------------------------------------

def self_test():
    try:
        from diffusers import FlowMatchEulerDiscreteScheduler
    except ImportError:
        print("self-test: diffusers not installed, grid cross-check skipped")
    else:
        for S, shift in ((8, 3.0), (16, 5.0), (5, 1.0)):
            ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=shift)
            ref.set_timesteps(S)
            got = flow_sigmas(S, T, shift)
            want = ref.sigmas.numpy().astype(np.float64)[:-1]
            assert np.allclose(got, want, rtol=1e-6, atol=0), (S, shift, got, want)
        print("self-test: grid == diffusers FlowMatchEulerDiscreteScheduler (rtol 1e-6) OK")
    # The exact velocity z - x0 walks the straight path: S Euler steps from z land on x0.
    sched = FlowSchedule(8, T, 3.0)
    x0, z = np.linspace(-1, 1, D), np.cos(np.arange(D))
    x = z.copy()
    for k in reversed(range(8)):
        assert np.allclose(x, (1 - sched.sigmas[k]) * x0 + sched.sigmas[k] * z)
        x = euler(sched, x[None], (z - x0)[None], np.array([k]))[0]
    assert np.allclose(x, x0, atol=1e-12)
    # in-place tail-to-head == snapshot (Jacobi), bit for bit
    for c in cases():
        kw = dict(f=c["f"], n=c["n"], lookahead=c["lookahead"], init=c["init"],
                  guidance=c["guidance"], seed=c["seed"], shift=c["shift"], num_frames=2)
        assert np.array_equal(fifo_flow(**kw)["output"], fifo_flow(snapshot=True, **kw)["output"])
    print("self-test: Euler on the straight path, in-place == snapshot OK")


def f32(v):
    return repr(float(np.float32(v)))


def f64(v):
    return repr(float(v))


def rows(mat):
    return "[\n" + ",\n".join("    [" + ", ".join(f32(x) for x in r) + "]" for r in mat) + "\n  ]"


def make_case(c):
    r = fifo_flow(c["f"], c["n"], c["lookahead"], c["init"], c["guidance"], c["seed"], c["shift"],
                  NUM_FRAMES)
    sched = r["sched"]
    items = [("case", '"%s"' % c["case"]), ("f", str(c["f"])), ("n", str(c["n"])),
             ("lookahead", "true" if c["lookahead"] else "false"), ("init", '"%s"' % c["init"]),
             ("guidance", f64(c["guidance"])), ("seed", str(c["seed"])), ("shift", f64(c["shift"])),
             ("frame_shape", str(FRAME_SHAPE)), ("T", str(T)), ("prompt_value", f64(PROMPT_VALUE)),
             ("frames", str(NUM_FRAMES)), ("queue_length", str(r["L"])),
             ("first_emit_iteration", str(r["E"])),
             ("sigmas", "[" + ", ".join(f64(s) for s in sched.sigmas) + "]"),
             ("timesteps", "[" + ", ".join(f64(s) for s in sched.timesteps) + "]"),
             ("initial_queue", rows(r["initial_queue"]))]
    if r["clip"] is not None:
        items.append(("clip", rows(r["clip"])))
    items.append(("output", rows(r["output"])))
    body = ",\n".join('  "%s": %s' % kv for kv in items)
    return "{\n" + body + "\n}\n", r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare with files on disk, write nothing")
    args = ap.parse_args()
    self_test()
    files = {}
    for c in cases():
        text, r = make_case(c)
        files[c["case"] + ".json"] = text
        print("case %-40s S=%2d L=%2d E=%2d |out| max %.4f" %
              (c["case"], r["S"], r["L"], r["E"], np.abs(r["output"]).max()))
    if args.check:
        bad = [n for n, t in files.items()
               if not os.path.exists(os.path.join(OUT_DIR, n)) or open(os.path.join(OUT_DIR, n)).read() != t]
        print("check:", "OK" if not bad else "DIFFERS: " + ", ".join(bad))
        return 1 if bad else 0
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(OUT_DIR, name), "w", newline="\n") as fh:
            fh.write(text)
    print("wrote %d files to %s" % (len(files), OUT_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
