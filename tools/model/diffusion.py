"""The diffusion schedule and the DDIM sampler shared by training and sampling.

1000 training steps, cosine schedule (Nichol & Dhariwal, s = 0.008, betas clipped at 0.999),
v-prediction: v = sqrt(a) * eps - sqrt(1 - a) * x0 with a = alphabar[t].
"""
import math

import torch

STEPS = 1000
PREDICTION = "v"
SCHEDULE = "cosine"


def alphas_cumprod(steps=STEPS, s=0.008):
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(steps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


ALPHABAR = alphas_cumprod()


def add_noise(x0, noise, t):
    """x0, noise [B, F, ...]; t int [B, F] -> x_t and the v target."""
    a = ALPHABAR.to(t.device)[t].view(*t.shape, *([1] * (x0.dim() - t.dim())))
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    return xt, v


def min_snr_weight(t, gamma=5.0):
    """Min-SNR-gamma loss weight for v-prediction: min(snr, gamma) / (snr + 1)."""
    a = ALPHABAR.to(t.device)[t]
    snr = a / (1 - a)
    return torch.clamp(snr, max=gamma) / (snr + 1)


def loss_weight(t, kind, gamma=5.0):
    """Per-clip weight of the v-prediction MSE: "min_snr" (min(snr, gamma) / (snr + 1), which
    fades out the noisiest levels like an epsilon loss does) or "v" (1 everywhere: the noisiest
    levels, where only the prompt says where the object goes, keep their full weight)."""
    if kind == "min_snr":
        return min_snr_weight(t, gamma)
    if kind == "v":
        return torch.ones(t.shape, device=t.device)
    raise ValueError(f"unknown loss weighting {kind!r} (min_snr or v)")


def ddim_timesteps(n):
    """The authors' grid (fifo-spec): t_i = round(i * 999 / (n - 1)), ascending."""
    return [round(i * (STEPS - 1) / (n - 1)) for i in range(n)]


def v_to_x0_eps(xt, v, a):
    x0 = a.sqrt() * xt - (1 - a).sqrt() * v
    eps = (1 - a).sqrt() * xt + a.sqrt() * v
    return x0, eps


@torch.no_grad()
def ddim_sample(model_fn, shape, steps, generator, eta=0.0):
    """Ordinary clip sampling: every frame at the same timestep. model_fn(x, t[B, F]) -> v.

    Goes down the grid from the noisiest step; the last update lands on t = 0 and then x0 is
    taken from the final prediction.
    """
    grid = ddim_timesteps(steps)
    b, f = shape[0], shape[1]
    x = torch.randn(shape, generator=generator)
    for i in reversed(range(len(grid))):
        t = grid[i]
        a = ALPHABAR[t]
        v = model_fn(x, torch.full((b, f), float(t)))
        x0, eps = v_to_x0_eps(x, v, a)
        if i == 0:
            return x0
        a_prev = ALPHABAR[grid[i - 1]]
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x = x + sigma * torch.randn(shape, generator=generator)
    return x
