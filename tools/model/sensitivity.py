"""Which prompt words does the denoiser use? For ground-truth world clips noised to one level,
compare the conditional v-prediction error with the true prompt against the same prompt with one
word swapped (every other colour, shape, direction or background) and against the empty prompt.

A word the model uses makes the true prompt's error lower than the swapped ones' (ratio > 1)
and picks the true word among the alternatives more often than chance. Found the step-7918
checkpoint ignoring the direction word entirely (ratio 1.000 at every level), see MODEL_CARD.md.

  python tools/model/sensitivity.py                        # newest checkpoint, EMA weights
  python tools/model/sensitivity.py --weights model --ckpt /work/train-state/ckpt-0007918.pt
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402
import nets  # noqa: E402
import train  # noqa: E402
import world  # noqa: E402

SLOTS = {"colour": (1, world.COLOUR_NAMES), "shape": (2, world.SHAPES),
         "direction": (4, world.DIR_NAMES), "background": (7, world.BG_NAMES)}


def swap(prompt, slot, word):
    words = prompt.split()
    words[SLOTS[slot][0]] = word
    return " ".join(words)


@torch.no_grad()
def sensitivity(model, ae, clips=24, levels=(100, 300, 500, 700, 900, 950, 990), seed=5):
    g = torch.Generator().manual_seed(seed)
    c = world.sample_clips(clips, g, "train")
    f = model.unet.frames
    z = ae.encode(c.render(range(f)).flatten(0, 1)).view(clips, f, model.unet.zc, 16, 16)
    prompts = c.prompts()

    def error(xt, t, target, texts):
        ctx = model.encode_prompts(texts)[:, None].expand(clips, f, -1, -1)
        return (model(xt, t.float(), ctx) - target).pow(2).mean(dim=(1, 2, 3, 4))

    out = {}
    for level in levels:
        t = torch.full((clips, f), level, dtype=torch.long)
        xt, target = diffusion.add_noise(z, torch.randn(z.shape, generator=g), t)
        true = error(xt, t, target, prompts)
        row = {"true": true.mean().item(), "empty_ratio": (error(xt, t, target, [""] * clips) / true).mean().item()}
        for slot, (pos, names) in SLOTS.items():
            errs = torch.stack([error(xt, t, target, [swap(p, slot, w) for p in prompts]) for w in names], 1)
            truth = torch.tensor([names.index(p.split()[pos]) for p in prompts])
            others = errs.sum(1) - errs[torch.arange(clips), truth]
            row[slot] = {"swapped_ratio": (others / (len(names) - 1) / true).mean().item(),
                         "true_best": (errs.argmin(1) == truth).float().mean().item(),
                         "chance": 1 / len(names)}
        out[level] = row
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state")
    ap.add_argument("--ckpt", help="a checkpoint file (default: the newest in --state)")
    ap.add_argument("--weights", choices=["ema", "model"], default="ema")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--levels", default="100,300,500,700,900,950,990",
                    help="comma-separated noise levels (fewer levels, less time)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = args.ckpt or train.checkpoints(args.state)[-1]
    state = torch.load(path, weights_only=False, map_location="cpu")
    model = nets.TextToVideo(dict(state["config"]["model"], pooled_text=any(".text_pool." in f".{k}" for k in state[args.weights])))
    model.load_state_dict(state[args.weights])
    model.eval()
    ae = train.load_autoencoder(args.state)
    res = sensitivity(model, ae, args.clips, tuple(int(v) for v in args.levels.split(",")))
    print(f"{os.path.basename(path)} ({args.weights}), {args.clips} clips; swapped/true error ratio "
          "(true word picked, chance)")
    for level, row in res.items():
        cells = "  ".join(f"{s} {row[s]['swapped_ratio']:.3f} ({row[s]['true_best']:.2f}/{row[s]['chance']:.2f})"
                          for s in SLOTS)
        print(f"t={level:4d}  v-mse {row['true']:.4f}  empty {row['empty_ratio']:.2f}  {cells}")
    print(json.dumps({"ckpt": os.path.basename(path), "weights": args.weights, "levels": res}))


if __name__ == "__main__":
    main()
