"""A small reference FIFO-Diffusion sampler (see /work/shared/fifo-spec.md) to judge checkpoints
on long videos from Python. The project's real implementation is in Rust; this one follows the
same spec (diagonal queue, latent partitioning, lookahead, per-frame timesteps, Jacobi updates).

  python tools/model/fifo.py --frames 64 --partitions 4 --lookahead --pause-trainer
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detect  # noqa: E402
import diffusion  # noqa: E402
import imageio_png  # noqa: E402
import sample  # noqa: E402
import world  # noqa: E402


@torch.no_grad()
def fifo_generate(model, ae, prompts, n_out, partitions=4, lookahead=True, guidance=5.0, eta=1.0,
                  generator=None):
    """Long videos [B, n_out, 3, 64, 64] for B prompts (one prompt per video)."""
    f = model.unet.frames
    b = len(prompts)
    s_steps = f * partitions
    grid = diffusion.ddim_timesteps(s_steps)
    a = diffusion.ALPHABAR[grid]  # [S]
    a_prev = torch.cat([a[:1], a[:-1]])
    sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
    head = f // 2 if lookahead else 0  # context-only slots ahead of the cleanest written slot
    length = s_steps + head
    index = torch.tensor([max(0, q - head) for q in range(length)])  # DDIM index of every slot
    # The schedule goes where the run's tensors are (the default device: CUDA in the benchmark).
    a, a_prev, sigma = (v.to(index.device) for v in (a, a_prev, sigma))

    ctx_c = model.encode_prompts(prompts)
    ctx_u = model.encode_prompts([""]).expand(b, -1, -1)
    zshape = (model.unet.zc, 16, 16)

    def predict_eps(x, idx):
        """x [W, F, ...] windows of all B videos; idx [W, F] DDIM indices -> guided eps."""
        w = x.shape[0]
        reps = w // b
        ctx = torch.cat([ctx_c.repeat(reps, 1, 1), ctx_u.repeat(reps, 1, 1)])[:, None].expand(-1, f, -1, -1)
        t = torch.tensor(grid)[idx].float()
        v = model(torch.cat([x, x]), torch.cat([t, t]), ctx)
        vc, vu = v.chunk(2)
        v = vu + guidance * (vc - vu)
        aa = a[idx].view(w, f, 1, 1, 1)
        return (1 - aa).sqrt() * x + aa.sqrt() * v, aa.sqrt() * x - (1 - aa).sqrt() * v

    # Start (the official VideoCrafter path): one ordinary clip, forward-noised onto the diagonal.
    def clip_fn(x, t):
        ctx = torch.cat([ctx_c, ctx_u])[:, None].expand(-1, f, -1, -1)
        v = model(torch.cat([x, x]), torch.cat([t, t]), ctx)
        vc, vu = v.chunk(2)
        return vu + guidance * (vc - vu)

    base = diffusion.ddim_sample(clip_fn, (b, f) + zshape, s_steps, generator)
    queue = torch.empty((b, length) + zshape)
    for q in range(length):
        i = int(index[q])
        frame = base[:, max(0, i - (s_steps - f))]
        queue[:, q] = a[i].sqrt() * frame + (1 - a[i]).sqrt() * torch.randn((b,) + zshape, generator=generator)

    if lookahead:
        starts = [r * f // 2 for r in range(2 * partitions)]
        write = slice(f // 2, f)
    else:
        starts = [k * f for k in range(partitions)]
        write = slice(0, f)
    out = []
    for _ in range(n_out):
        snap = queue.clone()  # Jacobi: every window reads the queue as it was
        x = torch.cat([snap[:, s:s + f] for s in starts])  # [W*B, F, ...], window-major
        idx = torch.stack([index[s:s + f] for s in starts]).repeat_interleave(b, 0)
        eps, x0 = predict_eps(x, idx)
        ap, sg = a_prev[idx].view(*idx.shape, 1, 1, 1), sigma[idx].view(*idx.shape, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator)
        new = ap.sqrt() * x0 + (1 - ap - sg ** 2).clamp(min=0).sqrt() * eps + sg * noise
        for k, s in enumerate(starts):
            queue[:, s + write.start:s + write.stop] = new[k * b:(k + 1) * b, write]
        out.append(ae.decode(queue[:, head]))
        queue = torch.cat([queue[:, 1:], torch.randn((b, 1) + zshape, generator=generator)], dim=1)
    return torch.stack(out, dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state")
    ap.add_argument("--ckpt")
    ap.add_argument("--frames", type=int, default=64, help="output frames per video")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--lookahead", action="store_true")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--n-prompts", type=int, default=8)
    ap.add_argument("--split", default="train", choices=["train", "held_out"])
    ap.add_argument("--seed", type=int, default=321)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause-trainer", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, ae, step, _, _ = sample.load(args.state, args.ckpt)
    prompts = world.sample_prompts(args.n_prompts, torch.Generator().manual_seed(20_000 + args.seed), args.split)
    t0 = time.time()
    with sample.PausedTrainer(args.state, args.pause_trainer):
        video = fifo_generate(model, ae, prompts, args.frames, args.partitions, args.lookahead,
                              args.guidance, args.eta, torch.Generator().manual_seed(args.seed))
    record = {"step": step, "frames": args.frames, "partitions": args.partitions,
              "lookahead": args.lookahead, "guidance": args.guidance, "split": args.split,
              "scores": detect.score(prompts, video), "seconds": round(time.time() - t0, 1)}
    out_dir = os.path.join(args.state, "samples")
    os.makedirs(out_dir, exist_ok=True)
    tag = f"fifo-step-{step:07d}-n{args.partitions}{'-ld' if args.lookahead else ''}-{args.split}"
    imageio_png.write_png(os.path.join(out_dir, tag + ".png"),
                          imageio_png.grid(imageio_png.to_uint8(video[:8, :32])))
    print(json.dumps(record))
    with open(os.path.join(out_dir, "fifo-scores.jsonl"), "a") as fj:
        fj.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
