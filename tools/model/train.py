"""Train the default text-to-video model on the shapes world, on the CPU, resumably.

Phase A trains the per-frame autoencoder (minutes) and freezes it (state/ae.pt). Phase B trains
the text encoder and the video UNet on latents encoded on the fly, the standard way: ONE noise
level shared by all frames of a clip, v-prediction, cosine schedule, min-SNR-5 weighting, 10%
empty-prompt dropout for classifier-free guidance, AdamW with warmup, EMA, gradient clipping.

Full checkpoints (model, EMA, optimiser, step, RNG states, config) are written atomically every
few minutes to the state directory; the newest two are kept. `--resume` continues from the newest.

  OMP_WAIT_POLICY=PASSIVE python tools/model/train.py --resume   (see run-training.sh)
"""
import argparse
import copy
import glob
import json
import os
import re
import signal
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402
import nets  # noqa: E402
import world  # noqa: E402

TRAIN_CONFIG = {
    "seed": 1234,
    # phase A: autoencoder
    "ae_steps": 4000,
    "ae_batch": 16,
    "ae_lr": 1e-3,
    "ae_latent_penalty": 1e-4,  # light L2 on latents keeps their scale tame
    "ae_latent_noise": 0.1,  # decoder sees slightly noisy latents, like a diffusion model's output
    # phase B: diffusion
    "batch": 16,
    "lr": 2e-4,
    "warmup": 500,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "cfg_dropout": 0.1,
    "min_snr_gamma": 5.0,
    "loss_weight": "min_snr",  # or "v" (see diffusion.loss_weight)
    "t_min": 0,  # training timesteps are drawn from [t_min, 1000)
    "t_high_share": 0.0,  # ... except this share of clips, drawn from [t_high_min, 1000)
    "t_high_min": 900,
    "train_only": None,  # a regex: only parameters whose name matches train (None: all)
    "dir_contrast": 0.0,  # weight of the paired direction-contrast term (see direction_contrast)
    "dir_margin": 0.05,
    "diffusion_steps": diffusion.STEPS,
    "prediction": diffusion.PREDICTION,
    "schedule": diffusion.SCHEDULE,
    "noise_levels": "one per clip",
    "checkpoint_every_s": 300,
    "keep_checkpoints": 2,
    "log_every": 20,
}


def log(state_dir, msg):
    line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
    print(line, flush=True)
    with open(os.path.join(state_dir, "train.log"), "a") as f:
        f.write(line + "\n")


def atomic_save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def render_frames(n, g, split="train"):
    """n random single frames [n, 3, 64, 64] (a random start is as good as a random frame)."""
    return world.sample_clips(n, g, split).render([0])[:, 0]


# ------------------------------------------------------------------------------ phase A

def train_autoencoder(cfg, state_dir):
    g = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    ae = nets.AutoEncoder()
    opt = torch.optim.Adam(ae.parameters(), lr=cfg["ae_lr"])
    steps = cfg["ae_steps"]
    t0 = time.time()
    for step in range(1, steps + 1):
        for group in opt.param_groups:  # step decay: the last 30% refines at lower rates
            group["lr"] = cfg["ae_lr"] * (1.0 if step < 0.7 * steps else 0.3 if step < 0.9 * steps else 0.1)
        x = render_frames(cfg["ae_batch"], g, "all")
        z = ae.encoder(x)
        zn = z + cfg["ae_latent_noise"] * z.detach().std() * torch.randn(z.shape, generator=g)
        y = ae.decoder(zn)
        rec = (y - x).pow(2).mean() + (y - x).abs().mean()
        loss = rec + cfg["ae_latent_penalty"] * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            log(state_dir, f"ae step {step} rec {rec.item():.5f} z_std {z.std().item():.3f} "
                f"{step / (time.time() - t0):.2f} steps/s")
    ae.eval()
    with torch.no_grad():
        z = torch.cat([ae.encoder(render_frames(128, g, "all")) for _ in range(8)])
        ae.scale.fill_(1.0 / z.std().item())
    err, s = evaluate_autoencoder(ae)
    log(state_dir, f"ae done: scale {ae.scale.item():.4f} mean abs err {err:.4f} "
        f"detector on reconstructions {json.dumps(s)}")
    atomic_save({"model": ae.state_dict(), "config": cfg, "scale": ae.scale.item()},
                os.path.join(state_dir, "ae.pt"))
    return ae


def evaluate_autoencoder(ae, n=64):
    """Mean abs reconstruction error and the detector's scores on reconstructed clips."""
    import detect
    clips = world.sample_clips(n, torch.Generator().manual_seed(7), "all")
    x = clips.render(range(8))
    with torch.no_grad():
        y = ae.decode(ae.encode(x.flatten(0, 1))).view_as(x)
    return (y - x).abs().mean().item(), detect.score(clips.prompts(), y)


def load_autoencoder(state_dir):
    ae = nets.AutoEncoder()
    ae.load_state_dict(torch.load(os.path.join(state_dir, "ae.pt"), weights_only=False)["model"])
    ae.eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    return ae


# ------------------------------------------------------------------------------ phase B

def checkpoints(state_dir):
    return sorted(glob.glob(os.path.join(state_dir, "ckpt-*.pt")))


def save_checkpoint(state_dir, step, model, ema, opt, g, cfg, keep):
    path = os.path.join(state_dir, f"ckpt-{step:07d}.pt")
    atomic_save({"step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                 "opt": opt.state_dict(), "rng": torch.get_rng_state(), "data_rng": g.get_state(),
                 "config": cfg, "time": time.time()}, path)
    for old in checkpoints(state_dir)[:-keep]:
        os.remove(old)
    return path


def lr_at(step, cfg):
    return cfg["lr"] * min(1.0, max(0, step - cfg.get("warmup_from", 0)) / cfg["warmup"])


def draw_timesteps(cfg, b, g):
    """One timestep per clip [b, 1]: uniform on [t_min, 1000), except that a share t_high_share
    of the clips (a coin per clip) draw from [t_high_min, 1000) instead, so a fine-tune can
    focus on the noisiest levels while the rest keep being trained. With no share the generator
    is used exactly as before the mixture existed (old runs resume bit-identically)."""
    t = torch.randint(cfg.get("t_min", 0), diffusion.STEPS, (b, 1), generator=g)
    share = cfg.get("t_high_share", 0.0)
    if share > 0:
        high = torch.rand((b, 1), generator=g) < share
        t = torch.where(high, torch.randint(cfg.get("t_high_min", 900), diffusion.STEPS, (b, 1), generator=g), t)
    return t


def split_trainable(model, pattern):
    """Freezes every parameter whose name (model.named_parameters()) does not match the regex
    `pattern` (re.search; None: all train). Returns the trainable parameters' names."""
    names = []
    for name, p in model.named_parameters():
        keep = pattern is None or re.search(pattern, name) is not None
        p.requires_grad_(keep)
        if keep:
            names.append(name)
    if not names:
        raise ValueError(f"--train-only {pattern!r} matches no parameter")
    return names


def swap_direction(prompt):
    """The prompt with its direction word replaced by another one (torch's global RNG, which the
    checkpoints carry)."""
    words = prompt.split()
    others = [w for w in world.DIR_NAMES if w != words[4]]
    words[4] = others[int(torch.randint(len(others), ()))]
    return " ".join(words)


def direction_contrast(model, xt, t, target, per_clip, prompts, cfg):
    """The paired direction-contrast term: for the clips of the high band (t >= t_high_min, with a
    prompt), the same noisy input and target once more with another direction word, and a hinge
    on the log error ratio, relu(log err_true - log err_swapped + margin): zero once the swapped
    word's error is at least e^margin times the true one's. Same input, same noise, so the
    irreducible error cancels and the gradient is the part that depends on the word, which the
    plain loss buries in noise at the noisiest levels. Returns (term, clips used)."""
    levels = t[:, 0].tolist()  # one device sync, not one per clip
    sel = [i for i, p in enumerate(prompts) if p and levels[i] >= cfg.get("t_high_min", 900)]
    if not sel:
        return per_clip.new_zeros(()), 0
    idx = torch.tensor(sel, device=xt.device)
    b, f = len(sel), xt.shape[1]
    ctx = model.encode_prompts([swap_direction(prompts[i]) for i in sel])[:, None]
    pred = model(xt[idx], t[idx].float(), ctx.expand(b, f, ctx.shape[2], ctx.shape[3]))
    swapped = (pred - target[idx]).pow(2).mean(dim=(1, 2, 3, 4))
    term = torch.relu(per_clip[idx].log() - swapped.log() + cfg.get("dir_margin", 0.05))
    return term.mean(), len(sel)


class ClipStream(torch.utils.data.IterableDataset):
    """Training batches rendered in worker processes (for an accelerator that outruns one CPU core):
    frames [b, f, 3, 64, 64], prompts with CFG dropout, one timestep per clip, noise. Each worker
    draws from its own generator seeded by (seed, resume step, worker)."""

    def __init__(self, cfg, step):
        super().__init__()
        self.cfg, self.step = cfg, step

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(self.cfg["seed"] * 1_000_003 + self.step * 101 + wid)
        b, f = self.cfg["batch"], self.cfg["model"]["frames"]
        zc, size = self.cfg["model"]["latent_channels"], self.cfg["model"]["latent_size"]
        while True:
            clips = world.sample_clips(b, g, "train")
            prompts = [p if torch.rand((), generator=g).item() >= self.cfg["cfg_dropout"] else ""
                       for p in clips.prompts()]
            t = draw_timesteps(self.cfg, b, g).expand(b, f).contiguous()
            yield clips.render(range(f)), prompts, t, torch.randn((b, f, zc, size, size), generator=g)


def local_batches(cfg, g):
    """The single-process stream (the CPU run's original order, so its resumes stay exact)."""
    b, f = cfg["batch"], cfg["model"]["frames"]
    zc, size = cfg["model"]["latent_channels"], cfg["model"]["latent_size"]
    while True:
        clips = world.sample_clips(b, g, "train")
        x = clips.render(range(f))
        prompts = [p if torch.rand((), generator=g).item() >= cfg["cfg_dropout"] else ""
                   for p in clips.prompts()]
        t = draw_timesteps(cfg, b, g).expand(b, f)  # one per clip
        yield x, prompts, t, torch.randn((b, f, zc, size, size), generator=g)


def train_diffusion(cfg, state_dir, ae, max_steps, max_seconds, device="cpu", workers=0,
                    reset_optimizer=False):
    torch.manual_seed(cfg["seed"])
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    model = nets.TextToVideo(cfg["model"])
    ema = copy.deepcopy(model).requires_grad_(False)
    trainable = split_trainable(model, cfg.get("train_only"))
    params = [p for p in model.parameters() if p.requires_grad]  # the EMA still follows all
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    step = 0
    state, ck = None, checkpoints(state_dir)
    while ck and state is None:  # newest first; a damaged file falls back to the one before
        try:
            state = torch.load(ck[-1], weights_only=False, map_location="cpu")
        except Exception as e:  # noqa: BLE001
            log(state_dir, f"cannot read {ck[-1]} ({e}); renamed to .bad, trying the previous one")
            os.replace(ck[-1], ck[-1] + ".bad")  # out of the way of step ordering and pruning
            ck.pop()
    if state is not None:
        grown = nets.load_grown(model, state["model"])
        nets.load_grown(ema, state["ema"])
        if grown:
            log(state_dir, f"grew the model: {len(grown)} new zero-initialised tensors ({', '.join(grown)})")
        saved = [len(gr["params"]) for gr in state["opt"]["param_groups"]] if "opt" in state else None
        other_set = saved != [len(params)] or state.get("config", {}).get("train_only") != cfg.get("train_only")
        if reset_optimizer or saved is None or grown or other_set:
            if saved is not None and other_set and not reset_optimizer:
                log(state_dir, f"the optimizer state is for another set of tensors ({saved}; {len(params)} "
                    "train now): fresh moments")
            cfg["warmup_from"] = state["step"]  # fresh moments: warm the learning rate up again
        else:
            opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        g.set_state(state["data_rng"])
        step = state["step"]
        log(state_dir, f"resumed from {ck[-1]} at step {step}")
    else:
        log(state_dir, f"fresh start: unet {nets.count_params(model.unet) / 1e6:.3f} M params, "
            f"text {nets.count_params(model.text) / 1e6:.3f} M, "
            f"{nets.unet_gflop(model.unet, frames=cfg['model']['frames']):.3f} GFLOP per UNet call (B=1)")

    if cfg.get("train_only") is not None:
        log(state_dir, f"training only {len(trainable)} tensors "
            f"({sum(p.numel() for p in params) / 1e6:.3f} M of {nets.count_params(model) / 1e6:.3f} M params) "
            f"matching {cfg['train_only']!r}: {', '.join(trainable)}")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))

    b, f = cfg["batch"], cfg["model"]["frames"]
    tokens, d = cfg["model"]["max_tokens"], cfg["model"]["text_dim"]
    dev = torch.device(device)
    model.to(dev)
    ema.to(dev)
    ae.to(dev)
    for st in opt.state.values():  # resumed moments follow their parameters
        for k, v in st.items():
            if torch.is_tensor(v) and k != "step":
                st[k] = v.to(dev)
    if dev.type == "cpu" and workers == 0:
        batches = local_batches(cfg, g)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        batches = iter(torch.utils.data.DataLoader(ClipStream(cfg, step), batch_size=None,
                                                   num_workers=workers, pin_memory=dev.type == "cuda",
                                                   prefetch_factor=4 if workers else None,
                                                   persistent_workers=workers > 0))
    t_start = last_ck = last_log = time.time()
    start_step = log_step = step
    loss_sum = aux_sum = 0.0
    while step < max_steps and not stop["now"] and time.time() - t_start < max_seconds:
        frames, prompts, t, noise = next(batches)
        frames, t, noise = (v.to(dev, non_blocking=True) for v in (frames, t, noise))
        with torch.no_grad():
            z = ae.encode(frames.flatten(0, 1)).view(b, f, -1, 16, 16)
        xt, target = diffusion.add_noise(z, noise, t)
        ctx = model.encode_prompts(prompts)[:, None].expand(b, f, tokens, d)
        pred = model(xt, t.float(), ctx)
        per_clip = (pred - target).pow(2).mean(dim=(1, 2, 3, 4))
        weight = diffusion.loss_weight(t[:, 0], cfg.get("loss_weight", "min_snr"), cfg["min_snr_gamma"])
        loss = (weight * per_clip).mean()
        total = loss
        if cfg.get("dir_contrast", 0.0) > 0:
            term, used = direction_contrast(model, xt, t, target, per_clip, prompts, cfg)
            total = loss + cfg["dir_contrast"] * term
            aux_sum = aux_sum + term.detach()

        step += 1
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        opt.step()
        decay = min(cfg["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        loss_sum = loss_sum + loss.detach()  # no device sync per step

        if step % cfg["log_every"] == 0:
            now = time.time()
            aux = f" dir-contrast {float(aux_sum) / (step - log_step):.5f}" if cfg.get("dir_contrast", 0.0) > 0 else ""
            log(state_dir, f"step {step} loss {float(loss_sum) / (step - log_step):.5f}{aux} "
                f"{(step - log_step) / (now - last_log):.3f} steps/s lr {lr_at(step, cfg):.2e}")
            loss_sum, aux_sum, log_step, last_log = 0.0, 0.0, step, now
        if time.time() - last_ck > cfg["checkpoint_every_s"]:
            path = save_checkpoint(state_dir, step, model, ema, opt, g, cfg, cfg["keep_checkpoints"])
            log(state_dir, f"checkpoint {path}")
            last_ck = time.time()
    model.cpu()
    ema.cpu()
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v):
                st[k] = v.cpu()
    path = save_checkpoint(state_dir, step, model, ema, opt, g, cfg, cfg["keep_checkpoints"])
    log(state_dir, f"stopped at step {step} ({step - start_step} steps in {time.time() - t_start:.0f} s); "
        f"checkpoint {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state", help="checkpoints, logs, ae.pt")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=10 ** 9)
    ap.add_argument("--max-seconds", type=float, default=float("inf"))
    ap.add_argument("--ae-steps", type=int, help="override the autoencoder's step count (tests)")
    ap.add_argument("--batch", type=int, help="batch size (a new run's, or from now on when resuming)")
    ap.add_argument("--lr", type=float, help="peak learning rate (a new run's, or from now on when resuming)")
    ap.add_argument("--warmup", type=int, help="learning-rate warm-up steps (from now on when resuming)")
    ap.add_argument("--loss-weight", choices=["min_snr", "v"],
                    help="per-clip loss weighting (from now on when resuming; see diffusion.loss_weight)")
    ap.add_argument("--t-min", type=int, help="draw training timesteps from [T_MIN, 1000) (from now on when resuming)")
    ap.add_argument("--t-high-share", type=float,
                    help="a share P of the clips draw their timestep from [T_HIGH_MIN, 1000) instead "
                    "(from now on when resuming; 0 turns the mixture off)")
    ap.add_argument("--t-high-min", type=int, help="the high band's lower bound for --t-high-share (default 900)")
    ap.add_argument("--train-only", metavar="REGEX",
                    help="freeze every parameter whose name does not match REGEX (re.search over "
                    "model.named_parameters(), e.g. 'spatial\\.(norm2|q|kv|out2)\\.|text_pool'); the "
                    "optimizer gets only the rest, the EMA still covers all; '' trains all again "
                    "(from now on when resuming; a changed set starts fresh optimizer moments)")
    ap.add_argument("--dir-contrast", type=float, metavar="W",
                    help="add W x the paired direction-contrast hinge (train.direction_contrast) on the clips "
                    "with t >= T_HIGH_MIN: one more UNet pass for those clips with another direction word "
                    "(from now on when resuming; 0 turns it off)")
    ap.add_argument("--dir-margin", type=float, help="the hinge's log-ratio margin (default 0.05)")
    ap.add_argument("--pooled-text", action="store_true",
                    help="grow the UNet's pooled-text path (nets.UNet.text_pool; zero-initialised) when resuming")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (an accelerator, when one is lent)")
    ap.add_argument("--workers", type=int, default=0, help="processes rendering training clips")
    ap.add_argument("--reset-optimizer", action="store_true",
                    help="resume the weights with fresh AdamW moments (and a new warm-up)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.state, exist_ok=True)
    with open(os.path.join(args.state, "train.pid"), "w") as fpid:
        fpid.write(str(os.getpid()))
    cfg_path = os.path.join(args.state, "config.json")
    if args.resume and os.path.exists(cfg_path):
        with open(cfg_path) as fcfg:
            cfg = json.load(fcfg)  # a run keeps the configuration it started with, except:
        train_only = None if args.train_only == "" else args.train_only
        changes = {k: v for k, v in (("batch", args.batch), ("lr", args.lr), ("warmup", args.warmup),
                                     ("loss_weight", args.loss_weight), ("t_min", args.t_min),
                                     ("t_high_share", args.t_high_share), ("t_high_min", args.t_high_min),
                                     ("dir_contrast", args.dir_contrast), ("dir_margin", args.dir_margin))
                   if v is not None}
        if args.train_only is not None and train_only != cfg.get("train_only"):
            changes["train_only"] = train_only
        if args.pooled_text and not cfg["model"].get("pooled_text"):
            changes["pooled_text"] = True
            cfg["model"]["pooled_text"] = True
        if changes:  # a new phase (e.g. on an accelerator): recorded in the config's history
            cfg.setdefault("phases", []).append({"from_checkpoint": os.path.basename(
                (checkpoints(args.state) or ["none"])[-1]), "device": args.device, **changes})
            cfg.update({k: v for k, v in changes.items() if k != "pooled_text"})
            with open(cfg_path, "w") as fcfg:
                json.dump(cfg, fcfg, indent=1)
    else:
        if checkpoints(args.state) or os.path.exists(os.path.join(args.state, "ae.pt")):
            sys.exit(f"{args.state} already holds a run; pass --resume or use another --state")
        cfg = dict(TRAIN_CONFIG, model=dict(nets.DEFAULT_CONFIG))
        if args.ae_steps is not None:
            cfg["ae_steps"] = args.ae_steps
        if args.batch is not None:
            cfg["batch"] = args.batch
        cfg["model"]["pooled_text"] = args.pooled_text
        if args.train_only:
            cfg["train_only"] = args.train_only
        for key in ("lr", "warmup", "loss_weight", "t_min", "t_high_share", "t_high_min", "dir_contrast",
                    "dir_margin"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        with open(cfg_path, "w") as fcfg:
            json.dump(cfg, fcfg, indent=1)
    log(args.state, f"start pid {os.getpid()} threads {args.threads} config {json.dumps(cfg)}")

    if os.path.exists(os.path.join(args.state, "ae.pt")):
        ae = load_autoencoder(args.state)
    else:
        train_autoencoder(cfg, args.state)
        ae = load_autoencoder(args.state)
    train_diffusion(cfg, args.state, ae, args.max_steps, args.max_seconds, args.device, args.workers,
                    args.reset_optimizer)


if __name__ == "__main__":
    main()
