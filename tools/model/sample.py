"""Sample ordinary f-frame clips from a checkpoint (EMA weights, DDIM, classifier-free guidance),
save a PNG grid and print the quick detector's colour / shape / direction accuracy on random
seen prompts and on the held-out colour/shape pairs.

  python tools/model/sample.py                      # newest checkpoint in /work/train-state
  python tools/model/sample.py --pause-trainer      # SIGSTOP the trainer meanwhile (2 cores only)
  python tools/model/sample.py --prompt "a red circle moving right on a black background"
"""
import argparse
import json
import os
import signal
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detect  # noqa: E402
import diffusion  # noqa: E402
import imageio_png  # noqa: E402
import nets  # noqa: E402
import train  # noqa: E402
import world  # noqa: E402


def load(state_dir, ckpt=None, weights="ema"):
    """Text-to-video model (EMA weights, or the raw ones), frozen autoencoder, step and config of a
    checkpoint."""
    path = ckpt or train.checkpoints(state_dir)[-1]
    state = torch.load(path, weights_only=False, map_location="cpu")
    model = nets.TextToVideo(state["config"]["model"])
    model.load_state_dict(state[weights])
    model.eval()
    return model, train.load_autoencoder(state_dir), state["step"], state["config"], path


@torch.no_grad()
def sample_clips(model, ae, prompts, steps, guidance, generator, batch=32):
    """Decoded clips [N, F, 3, 64, 64] for the prompts, in batches."""
    cfg_f = model.unet.frames
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        b = len(chunk)
        cond = model.encode_prompts(chunk)
        uncond = model.encode_prompts([""]).expand(b, -1, -1)
        ctx = torch.cat([cond, uncond])[:, None].expand(-1, cfg_f, -1, -1)

        def model_fn(x, t):
            v = model(torch.cat([x, x]), torch.cat([t, t]), ctx)
            vc, vu = v.chunk(2)
            return vu + guidance * (vc - vu)

        z = diffusion.ddim_sample(model_fn, (b, cfg_f, model.unet.zc, 16, 16), steps, generator)
        out.append(ae.decode(z.flatten(0, 1)).view(b, cfg_f, 3, world.SIZE, world.SIZE))
    return torch.cat(out)


class PausedTrainer:
    """SIGSTOP the background trainer while sampling so that at most 2 cores are busy."""

    def __init__(self, state_dir, enabled):
        self.pid = None
        path = os.path.join(state_dir, "train.pid")
        if enabled and os.path.exists(path):
            pid = int(open(path).read())
            try:
                os.kill(pid, 0)
                self.pid = pid
            except OSError:
                pass

    def __enter__(self):
        if self.pid:
            # A SIGTERM (e.g. from `timeout`) must still reach __exit__ and continue the trainer.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc):
        if self.pid:
            os.kill(self.pid, signal.SIGCONT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state")
    ap.add_argument("--ckpt", help="a checkpoint file (default: the newest)")
    ap.add_argument("--prompt", action="append", help="sample these prompts instead of the test set")
    ap.add_argument("--n-seen", type=int, default=32)
    ap.add_argument("--n-held-out", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause-trainer", action="store_true")
    ap.add_argument("--weights", choices=["ema", "model"], default="ema",
                    help="the checkpoint's EMA weights (what ships) or the raw ones (a short fine-tune's EMA lags)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, ae, step, cfg, path = load(args.state, args.ckpt, args.weights)
    g = torch.Generator().manual_seed(args.seed)
    if args.prompt:
        sets = {"given": args.prompt}
    else:  # fixed test prompts, independent of the training stream
        pg = torch.Generator().manual_seed(10_000 + args.seed)
        sets = {"seen": world.sample_prompts(args.n_seen, pg, "train"),
                "held_out": world.sample_prompts(args.n_held_out, pg, "held_out")}
    out_dir = os.path.join(args.state, "samples")
    os.makedirs(out_dir, exist_ok=True)
    record = {"ckpt": os.path.basename(path), "step": step, "weights": args.weights, "ddim_steps": args.steps,
              "guidance": args.guidance, "seed": args.seed}
    t0 = time.time()
    with PausedTrainer(args.state, args.pause_trainer):
        for name, prompts in sets.items():
            video = sample_clips(model, ae, prompts, args.steps, args.guidance, g)
            record[name] = detect.score(prompts, video)
            grid = imageio_png.grid(imageio_png.to_uint8(video[:16]))
            png = os.path.join(out_dir, f"step-{step:07d}-{name}{'-raw' if args.weights == 'model' else ''}.png")
            imageio_png.write_png(png, grid)
            d = detect.detect(video)
            for i, p in enumerate(prompts[:8]):
                print(f"  {p!r}: detected {d['colour'][i]} {d['shape'][i]} {d['direction'][i]}")
            print(f"{name}: {json.dumps(record[name])} -> {png}")
    record["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(record))
    if not args.prompt:
        with open(os.path.join(out_dir, "scores.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
