#!/usr/bin/env python3
"""Write tests/fixtures/flow/flow_match_euler.json from diffusers' FlowMatchEulerDiscreteScheduler.

    /work/venv/bin/python tools/reference/flow_schedule_fixtures.py [--check]

The independent reference for the Rust rectified-flow step table (model.json schedule
`"process": {"kind": "rectified_flow", "shift": ..}`; tests/flow_matching.rs): for a few (steps, shift) pairs it records diffusers'
`sigmas` (S + 1 values, descending, the appended final 0 included) and `timesteps` (S values,
sigma * 1000), both float32 as diffusers keeps them, and `scheduler.step` on a fixed x and v at
a few step positions (k counts diffusers' steps: k = 0 is the noisiest). The scheduler is built
exactly as for Wan 2.1 at 480p/720p (num_train_timesteps 1000, use_dynamic_shifting False,
shift 3.0 / 5.0); shift 1.0 and 0.5 and odd step counts cover the formula's other corners.
--check: compare with the file on disk, write nothing.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(REPO, "tests", "fixtures", "flow", "flow_match_euler.json")

CASES = [(4, 1.0), (16, 3.0), (50, 5.0), (64, 3.0), (7, 0.5), (64, 5.0)]
D = 8


def f32(v):
    return repr(float(np.float32(v)))


def arr(values):
    return "[" + ", ".join(f32(v) for v in values) + "]"


def case(steps, shift):
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    sched.set_timesteps(steps)
    sigmas = sched.sigmas.numpy()
    timesteps = sched.timesteps.numpy()
    assert sigmas.dtype == np.float32 and timesteps.dtype == np.float32
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0.0 and len(timesteps) == steps
    x = torch.tensor([np.sin(0.7 * i + 0.3) * 1.5 for i in range(D)], dtype=torch.float32)
    v = torch.tensor([np.cos(1.3 * i) - 0.2 for i in range(D)], dtype=torch.float32)
    step_items = []
    for k in sorted({0, steps // 2, steps - 1}):
        s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        s.set_timesteps(steps)
        s.set_begin_index(k)
        prev = s.step(v, s.timesteps[k], x).prev_sample
        step_items.append('{"k": %d, "x": %s, "v": %s, "prev": %s}'
                          % (k, arr(x.numpy()), arr(v.numpy()), arr(prev.numpy())))
    return ('    {"steps": %d, "shift": %s, "train_timesteps": 1000,\n'
            '     "sigmas": %s,\n     "timesteps": %s,\n     "euler": [\n       %s\n     ]}'
            % (steps, repr(float(shift)), arr(sigmas), arr(timesteps), ",\n       ".join(step_items)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    import diffusers
    text = ('{\n  "generator": "tools/reference/flow_schedule_fixtures.py",\n'
            '  "diffusers": %s,\n  "cases": [\n%s\n  ]\n}\n'
            % (json.dumps(diffusers.__version__), ",\n".join(case(s, sh) for s, sh in CASES)))
    if args.check:
        same = os.path.exists(OUT) and open(OUT).read() == text
        print("check:", "OK" if same else "DIFFERS: " + OUT)
        return 0 if same else 1
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", newline="\n") as fh:
        fh.write(text)
    print("wrote %s (%d bytes)" % (OUT, len(text)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
