"""Float64 numpy transcription of the official FIFO-Diffusion sampling loop.

This is the INDEPENDENT REFERENCE for the Rust scheduler's parity tests.  It mirrors the
structure of the authors' code line by line:

  VideoCrafter2 path  (github jjihwan/FIFO-Diffusion_public)
    lvdm/models/utils_diffusion.py   make_beta_schedule("linear"), make_ddim_timesteps("uniform"),
                                     make_ddim_sampling_parameters
    lvdm/models/samplers/ddim.py     DDIMSampler.unet, .fifo_onestep, .ddim_step,
                                     .ddim_sampling / .p_sample_ddim (the base clip sampler)
    scripts/evaluation/funcs.py      prepare_latents, shift_latents, fifo_ddim_sampling
    videocrafter_main.py             keeps video_frames[-new_video_length:]
  Latte path           (github jjihwan/Latte-FIFO-UCF101)
    diffusion/gaussian_diffusion.py  ddim_sample_loop_progressive_fifo (pure-noise warm-up with
                                     `curr_indices[:,:-i-1] = curr_indices[:,[-i-1]]`, emission
                                     only for i >= max_queue_length), shift_latents

with the project-defined replacements (see README.md):
  * torch.randn / randn_like  ->  philox.noise(seed, frame_id, index, purpose, D)  (float32,
    promoted exactly to float64)
  * the UNet                  ->  toy_model() below (deterministic epsilon predictor)
  * everything computed in float64 (the official keeps the schedule in float32 buffers).

Latents are stored as [slot, D] arrays (D = prod(frame_shape), C-order flattening), i.e. the
official [b, c, F, h, w] tensor with b = 1 and the frame axis moved first.
"""

import numpy as np

import philox
from philox import ENQUEUE, STEP, RENOISE, CLIP_INIT, CLIP_STEP

# Working precision.  float64 for the fixtures; make_parity_fixtures.py re-runs the cases with
# float32 only to REPORT how far a float32 implementation drifts (not written anywhere).
DTYPE = np.float64


def set_dtype(dtype):
    global DTYPE
    DTYPE = dtype


# --------------------------------------------------------------------------------------------
# Schedule  (lvdm/models/utils_diffusion.py, lvdm/models/ddpm3d.py register_schedule)
# --------------------------------------------------------------------------------------------

def make_beta_schedule(n_timestep, linear_start, linear_end, kind="scaled_linear"):
    if kind == "linear":  # diffusers "linear" (the original DDPM's, Latte's): linspace of the betas
        return np.linspace(linear_start, linear_end, n_timestep, dtype=np.float64)
    assert kind == "scaled_linear", kind
    # utils_diffusion.make_beta_schedule("linear"):
    #   torch.linspace(linear_start ** 0.5, linear_end ** 0.5, n_timestep, dtype=float64) ** 2
    # (diffusers calls this "scaled_linear").  numpy linspace here; it may differ from torch's
    # linspace in the last ulp, far below the parity tolerance.
    return np.linspace(linear_start ** 0.5, linear_end ** 0.5, n_timestep, dtype=np.float64) ** 2


def make_alphas_cumprod(betas):
    # ddpm3d.register_schedule: alphas = 1 - betas; alphas_cumprod = np.cumprod(alphas)
    # (sequential float64 product).
    return np.cumprod(1.0 - betas, axis=0)


def make_ddim_timesteps(num_ddim_timesteps, num_ddpm_timesteps):
    # utils_diffusion.make_ddim_timesteps, ddim_discr_method == 'uniform' (the authors' variant):
    #   np.linspace(0, num_ddpm_timesteps-1, num_ddim_timesteps).round().astype(np.int64)
    # np.round is round-half-to-even.  Ascending: index 0 -> t = 0, index S-1 -> t = T-1.
    return (np.linspace(0, num_ddpm_timesteps - 1, num_ddim_timesteps)
            .round().copy().astype(np.int64))


def make_ddim_sampling_parameters(alphacums, ddim_timesteps, eta):
    # utils_diffusion.make_ddim_sampling_parameters, verbatim (one sqrt of the product, as in
    # the official code; the spec writes it as a product of two sqrts, equal up to an ulp).
    alphas = alphacums[ddim_timesteps]
    alphas_prev = np.asarray([alphacums[0]] + alphacums[ddim_timesteps[:-1]].tolist())
    sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    return sigmas, alphas, alphas_prev


class Schedule:
    """DDIMSampler.make_schedule (ddim.py), float64 instead of float32 buffers."""

    def __init__(self, S, eta, T=1000, beta_start=0.00085, beta_end=0.012, beta_kind="scaled_linear"):
        self.T = T
        self.S = S
        self.eta = eta
        self.betas = make_beta_schedule(T, beta_start, beta_end, beta_kind)
        self.alphas_cumprod = make_alphas_cumprod(self.betas)
        self.ddim_timesteps = make_ddim_timesteps(S, T)
        self.ddim_sigmas, self.ddim_alphas, self.ddim_alphas_prev = make_ddim_sampling_parameters(
            self.alphas_cumprod, self.ddim_timesteps, eta)
        # ddim.py: self.ddim_sqrt_one_minus_alphas = np.sqrt(1. - ddim_alphas)
        self.ddim_sqrt_one_minus_alphas = np.sqrt(1.0 - self.ddim_alphas)
        for name in ("alphas_cumprod", "ddim_sigmas", "ddim_alphas", "ddim_alphas_prev",
                     "ddim_sqrt_one_minus_alphas"):
            setattr(self, name, getattr(self, name).astype(DTYPE))


# --------------------------------------------------------------------------------------------
# Toy denoiser (replaces model.apply_model) and classifier-free guidance (DDIMSampler.unet)
# --------------------------------------------------------------------------------------------

def toy_model(x, t, c, alphas_cumprod):
    """Deterministic epsilon prediction for one window.

    x: [f, D] latents, t: int [f] model timesteps (each frame its own), c: float [f].
      m[d]    = (x[0][d] + x[1][d] + ... + x[f-1][d]) / f          (sequential sum, then divide)
      e[j][d] = 0.9 * sqrt(1 - alphabar[t_j]) * x[j][d]
                + 0.2 * tanh(0.5*m[d] + 0.3*x[(j+1) % f][d] + 0.05*j + c[j] + 0.001*t_j + 0.01*d)
    (the tanh argument is summed left to right in exactly that order).
    """
    f, D = x.shape
    m = x[0].copy()
    for j in range(1, f):
        m = m + x[j]
    m = m / f
    d = np.arange(D, dtype=DTYPE)
    e = np.empty_like(x)
    for j in range(f):
        tj = int(t[j])
        arg = 0.5 * m + 0.3 * x[(j + 1) % f] + 0.05 * j + float(c[j]) + 0.001 * tj + 0.01 * d
        e[j] = 0.9 * np.sqrt(1 - alphas_cumprod[tj]) * x[j] + 0.2 * np.tanh(arg)
    return e


def unet(x, t, prompt_value, guidance, alphas_cumprod):
    """DDIMSampler.unet (ddim.py): conditional pass c = prompt_value, unconditional pass c = 0.0,
    e_t = e_t_uncond + scale * (e_t - e_t_uncond); a single conditional pass if scale == 1."""
    f = x.shape[0]
    c_cond = np.full(f, prompt_value, dtype=DTYPE)
    if guidance == 1.0:
        return toy_model(x, t, c_cond, alphas_cumprod)
    e_t = toy_model(x, t, c_cond, alphas_cumprod)
    e_t_uncond = toy_model(x, t, np.zeros(f, dtype=DTYPE), alphas_cumprod)
    return e_t_uncond + guidance * (e_t - e_t_uncond)


# --------------------------------------------------------------------------------------------
# DDIM step (DDIMSampler.ddim_step and p_sample_ddim without use_scale)
# --------------------------------------------------------------------------------------------

def ddim_step(sched, sample, noise_pred, indices, frame_ids, seed, purpose):
    """DDIMSampler.ddim_step: per frame i with its own DDIM index:
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt  = (1. - a_prev - sigma_t**2).sqrt() * e_t
        noise   = sigma_t * noise_like(x.shape)            -> philox noise(seed, id, index, purpose)
        x_prev  = a_prev.sqrt() * pred_x0 + dir_xt + noise
    """
    D = sample.shape[1]
    x_prevs = []
    for i, index in enumerate(indices):
        index = int(index)
        x = sample[i]
        e_t = noise_pred[i]
        a_t = sched.ddim_alphas[index]
        a_prev = sched.ddim_alphas_prev[index]
        sigma_t = sched.ddim_sigmas[index]
        sqrt_one_minus_at = sched.ddim_sqrt_one_minus_alphas[index]
        pred_x0 = (x - sqrt_one_minus_at * e_t) / np.sqrt(a_t)
        dir_xt = np.sqrt(1.0 - a_prev - sigma_t ** 2) * e_t
        z = philox.noise(seed, int(frame_ids[i]), index, purpose, D).astype(DTYPE)
        noise = sigma_t * z
        x_prev = np.sqrt(a_prev) * pred_x0 + dir_xt + noise
        x_prevs.append(x_prev)
    return np.stack(x_prevs, axis=0)


def fifo_onestep(sched, latents, timesteps, indices, frame_ids, prompt_value, guidance, seed, model=None):
    """DDIMSampler.fifo_onestep: one model call on a window with per-frame timesteps, then
    ddim_step with per-frame DDIM indices. `model(x, t)`, when given, replaces the toy UNet and
    its guidance (a real package's guided epsilon, see package_fifo.py)."""
    noise_pred = model(latents, timesteps) if model else unet(latents, timesteps, prompt_value, guidance,
                                                               sched.alphas_cumprod)
    return ddim_step(sched, latents, noise_pred, indices, frame_ids, seed, STEP)


# --------------------------------------------------------------------------------------------
# Base clip sampler (base_ddim_sampling -> DDIMSampler.sample -> ddim_sampling -> p_sample_ddim)
# --------------------------------------------------------------------------------------------

def base_ddim_sampling(sched, f, D, prompt_value, guidance, seed, model=None):
    """Ordinary f-frame clip with S DDIM steps, all frames at the same index.

    ddim_sampling: img = torch.randn(shape)  -> noise(seed, j, S-1, CLIP_INIT) per clip frame j
      time_range = np.flip(timesteps); for i, step: index = total_steps - i - 1
      p_sample_ddim(img, cond, ts=full(step), index)  (CFG as in unet(); DDIM update as ddim_step
      with step noise noise(seed, j, index, CLIP_STEP)).
    NOTE: VideoCrafter2 has use_scale=True, so the official p_sample_ddim additionally divides
    pred_x0 by scale_arr[index] and multiplies by scale_arr_prev; per the project spec the
    reference (and the Rust side) uses the plain DDIM update here, like the FIFO step.
    """
    S = sched.S
    img = np.stack([philox.noise(seed, j, S - 1, CLIP_INIT, D).astype(DTYPE)
                    for j in range(f)], axis=0)
    timesteps = sched.ddim_timesteps
    total_steps = timesteps.shape[0]
    clip_ids = np.arange(f)
    for i, step in enumerate(np.flip(timesteps)):
        index = total_steps - i - 1
        ts = np.full(f, step, dtype=np.int64)
        e_t = model(img, ts) if model else unet(img, ts, prompt_value, guidance, sched.alphas_cumprod)
        img = ddim_step(sched, img, e_t, np.full(f, index), clip_ids, seed, CLIP_STEP)
    return img


# --------------------------------------------------------------------------------------------
# Queue start and shift (funcs.py prepare_latents / shift_latents; Latte initial z)
# --------------------------------------------------------------------------------------------

def frame_id(slot, it, h, E):
    """Absolute id of the frame in `slot` at iteration `it` (first emitted frame = id 0)."""
    return it + slot - h - E


def prepare_latents(sched, video, f, lookahead, seed, E):
    """funcs.prepare_latents (VideoCrafter2, re-noise start):
        LD head slots (f//2 of them): sqrt(a_0) video[0] + sqrt(1-a_0) randn
        slot h+i, i = 0..S-1:  frame_idx = max(0, i-(S-f));
                               sqrt(a_i) video[frame_idx] + sqrt(1-a_i) randn
    randn -> noise(seed, id of that slot at iteration 0, DDIM index (0 for head slots), RENOISE)
    """
    S = sched.S
    D = video.shape[1]
    h = f // 2 if lookahead else 0
    latents_list = []
    if lookahead:
        for p in range(h):
            alpha = sched.ddim_alphas[0]
            beta = 1 - alpha
            z = philox.noise(seed, frame_id(p, 0, h, E), 0, RENOISE, D).astype(DTYPE)
            latents_list.append(alpha ** 0.5 * video[0] + beta ** 0.5 * z)
    for i in range(S):
        alpha = sched.ddim_alphas[i]
        beta = 1 - alpha
        frame_idx = max(0, i - (S - f))
        z = philox.noise(seed, frame_id(h + i, 0, h, E), i, RENOISE, D).astype(DTYPE)
        latents_list.append(alpha ** 0.5 * video[frame_idx] + (1 - alpha) ** 0.5 * z)
    return np.stack(latents_list, axis=0)


def initial_noise(L, D, h, E, S, seed):
    """Latte: z = th.randn([b, max_queue_length, c, h, w]) -> slot p gets
    noise(seed, p - h - E, S-1, ENQUEUE) (every slot, LD head slots included)."""
    return np.stack([philox.noise(seed, frame_id(p, 0, h, E), S - 1, ENQUEUE, D).astype(DTYPE)
                     for p in range(L)], axis=0)


def shift_latents(latents, ids, seed, S):
    """funcs.shift_latents / gaussian_diffusion.shift_latents:
        latents[:-1] = latents[1:].clone();  latents[-1] = randn_like(latents[-1])
    randn -> noise(seed, id of the new tail frame, S-1, ENQUEUE).  `ids` is shifted alongside."""
    latents[:-1] = latents[1:].copy()
    ids[:-1] = ids[1:].copy()
    ids[-1] = ids[-2] + 1
    latents[-1] = philox.noise(seed, int(ids[-1]), S - 1, ENQUEUE, latents.shape[1]).astype(DTYPE)
    return latents, ids


# --------------------------------------------------------------------------------------------
# The FIFO loop (funcs.fifo_ddim_sampling  /  gaussian_diffusion.ddim_sample_loop_progressive_fifo)
# --------------------------------------------------------------------------------------------

def fifo_sampling(f, n, lookahead, init, eta, guidance, seed, D, prompt_value, num_frames,
                  T=1000, beta_start=0.00085, beta_end=0.012, snapshot=False, trace=None, model=None,
                  beta_kind="scaled_linear"):
    """Run FIFO-Diffusion and return a dict with the emitted frames (float64 [N, D]) etc.

    init = "clip"  : VideoCrafter2 path, E = S - f (the official loop runs
                     new_video_length + S - f iterations, emits every one, and
                     videocrafter_main.py keeps the last new_video_length).
    init = "noise" : Latte path, E = L (max_queue_length); pure-noise queue + label warm-up;
                     runs new_video_length + L iterations, emits for i >= L.
    snapshot=True reads every window from a copy of the queue taken at the start of the
    iteration (the official multi-GPU variant / a batched Jacobi update) instead of the in-place
    tail-to-head order; the two must agree bit for bit (checked in the self-test).
    trace: optional list; per iteration a dict of the labels used and the slots written.
    model: optional `model(x [f, D], t [f]) -> guided epsilon [f, D]` replacing the toy UNet.
    beta_kind: "scaled_linear" (VideoCrafter's "linear") or "linear" (diffusers' linear betas).
    """
    assert init in ("clip", "noise")
    S = f * n                                  # videocrafter_main: num_inference_steps = f * n
    sched = Schedule(S, eta, T, beta_start, beta_end, beta_kind)
    h = f // 2 if lookahead else 0
    L = S + h                                  # queue length (max_queue_length in Latte)
    E = S - f if init == "clip" else L         # first emitting iteration
    num_frames_per_gpu = f

    # funcs.fifo_ddim_sampling: timesteps / indices, with f//2 head slots labelled index 0 for LD
    timesteps = sched.ddim_timesteps
    indices = np.arange(S)
    if lookahead:
        timesteps = np.concatenate([np.full((f // 2,), timesteps[0]), timesteps])
        indices = np.concatenate([np.full((f // 2,), 0), indices])
    assert np.array_equal(timesteps, sched.ddim_timesteps[indices])

    clip = None
    if init == "clip":
        clip = base_ddim_sampling(sched, f, D, prompt_value, guidance, seed, model)
        latents = prepare_latents(sched, clip, f, lookahead, seed, E)
    else:
        latents = initial_noise(L, D, h, E, S, seed)
    ids = np.array([frame_id(p, 0, h, E) for p in range(L)], dtype=np.int64)
    initial_queue = latents.copy()
    initial_ids = ids.copy()

    max_queue_length = L
    num_iterations = num_frames + E            # clip: N + S - f ; noise: N + L
    outputs = []
    for i in range(num_iterations):
        # Latte: curr_indices = indices.clone(); if i < max_queue_length-1:
        #            curr_indices[:,:-i-1] = curr_indices[:,[-i-1]]
        # Every slot ahead of slot L-1-i (LD head slots included) takes slot L-1-i's label.
        curr_indices = indices.copy()
        if init == "noise" and i < max_queue_length - 1:
            curr_indices[:-i - 1] = curr_indices[-i - 1]
        curr_timesteps = sched.ddim_timesteps[curr_indices]   # the model sees t of its own label
        assert np.array_equal(ids, [frame_id(p, i, h, E) for p in range(L)])

        source = latents.copy() if snapshot else latents
        written = np.zeros(L, dtype=np.int64)
        for rank in reversed(range(2 * n if lookahead else n)):   # tail to head, in place
            start_idx = rank * (num_frames_per_gpu // 2) if lookahead else rank * num_frames_per_gpu
            midpoint_idx = start_idx + num_frames_per_gpu // 2
            end_idx = start_idx + num_frames_per_gpu

            t = curr_timesteps[start_idx:end_idx]
            idx = curr_indices[start_idx:end_idx]
            input_latents = source[start_idx:end_idx].copy()
            output_latents = fifo_onestep(sched, input_latents, t, idx, ids[start_idx:end_idx],
                                          prompt_value, guidance, seed, model)
            if lookahead:
                latents[midpoint_idx:end_idx] = output_latents[-(num_frames_per_gpu // 2):]
                written[midpoint_idx:end_idx] += 1
            else:
                latents[start_idx:end_idx] = output_latents
                written[start_idx:end_idx] += 1
        # every slot h..L-1 written exactly once, head slots never
        assert np.all(written[h:] == 1) and np.all(written[:h] == 0)
        if trace is not None:
            trace.append({"labels": curr_indices.copy(), "ids": ids.copy()})

        # emit the head latent (slot f//2 with LD, else 0)
        first_frame_idx = num_frames_per_gpu // 2 if lookahead else 0
        if i >= E:
            assert ids[first_frame_idx] == i - E
            outputs.append(latents[first_frame_idx].copy())

        latents, ids = shift_latents(latents, ids, seed, S)

    assert len(outputs) == num_frames
    return {
        "schedule": sched, "S": S, "h": h, "L": L, "E": E, "iterations": num_iterations,
        "clip": clip, "initial_queue": initial_queue, "initial_ids": initial_ids,
        "output": np.stack(outputs, axis=0),
    }
