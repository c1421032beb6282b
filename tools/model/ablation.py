"""The paper's ablation on our model, as a Python reference: the relative noise-prediction error
of diagonal inputs (each frame of a window at its own FIFO noise level) versus the same frames
with the whole window at that frame's level. Below 1 means the cleaner frames ahead help.

For n partitions (S = f n DDIM levels on the authors' grid), a diagonal window holds f
consecutive levels; without lookahead windows start at k f and every frame is scored, with
lookahead they start at r f / 2 and only the noisier second half is scored. Errors are on eps
(converted from v), averaged over ground-truth world clips, conditional prediction.

  python tools/model/ablation.py --clips 16 --pause-trainer
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402
import sample  # noqa: E402
import world  # noqa: E402


@torch.no_grad()
def eps_error(model, z, t, ctx, noise):
    """Per-frame squared eps error [B, F] for latents z noised at per-frame levels t [B, F]."""
    xt, _ = diffusion.add_noise(z, noise, t)
    v = model(xt, t.float(), ctx)
    a = diffusion.ALPHABAR[t].view(*t.shape, 1, 1, 1)
    eps = (1 - a).sqrt() * xt + a.sqrt() * v
    return (eps - noise).pow(2).mean(dim=(2, 3, 4))


@torch.no_grad()
def ablation(model, ae, partitions, lookahead, clips=32, seed=0):
    f = model.unet.frames
    g = torch.Generator().manual_seed(seed)
    c = world.sample_clips(clips, g, "train")
    z = ae.encode(c.render(range(f)).flatten(0, 1)).view(clips, f, -1, 16, 16)
    ctx = model.encode_prompts(c.prompts())[:, None].expand(-1, f, -1, -1)
    grid = torch.tensor(diffusion.ddim_timesteps(f * partitions))
    head = f // 2 if lookahead else 0
    starts = [r * f // 2 for r in range(2 * partitions)] if lookahead else [k * f for k in range(partitions)]
    rows = []  # (timestep, diagonal error, same-level error) per scored frame and clip
    for s in starts:
        idx = torch.tensor([max(0, q - head) for q in range(s, s + f)])  # levels of the window's slots
        t_diag = grid[idx][None].expand(clips, f)
        noise = torch.randn(z.shape, generator=g)
        e_diag = eps_error(model, z, t_diag, ctx, noise)
        scored = range(f // 2, f) if lookahead else range(f)
        for j in scored:
            t_same = t_diag[:, j:j + 1].expand(clips, f)
            e_same = eps_error(model, z, t_same, ctx, noise)[:, j]
            for b in range(clips):
                rows.append((int(t_diag[b, j]), float(e_diag[b, j]), float(e_same[b])))
    buckets = {}
    for lo in range(0, 1000, 250):
        sel = [r for r in rows if lo <= r[0] < lo + 250]
        if sel:
            buckets[f"{lo}-{lo + 249}"] = sum(r[1] for r in sel) / sum(r[2] for r in sel)
    total = sum(r[1] for r in rows) / sum(r[2] for r in rows)
    return {"partitions": partitions, "lookahead": lookahead, "ratio": total, "by_timestep": buckets}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state")
    ap.add_argument("--ckpt")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause-trainer", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, ae, step, _, _ = sample.load(args.state, args.ckpt)
    with sample.PausedTrainer(args.state, args.pause_trainer):
        for n in (1, 2, 4):
            for ld in (False, True):
                r = ablation(model, ae, n, ld, args.clips)
                r["step"] = step
                print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
