"""One denoiser block of each real model family at the REAL width, window and resolution, random
weights: PyTorch vs onnxruntime vs our CPU backend, in one run, with the executor's planned memory
and the tensors a browser cannot bind, then a FLOP-proportional extrapolation per window and per
output frame.

  cargo build --release -p fifo-cli
  /work/venv/bin/python tools/export/full_size.py            # all three families (~20 min on 2 cores)
  /work/venv/bin/python tools/export/full_size.py --family latte --keep /tmp/fs

What "one block" is (the wrappers' own per-frame timestep path, batch 1 = one half of the CFG pair):
  modelscope  PerFrameUNet3D's embedding path, conv_in, transformer_in, then down_blocks[0] with one
              of its two layers (ResBlock + temporal conv + spatial transformer + temporal
              transformer) and its downsampler; 16 frames x 40x72 latents (320x576 video)
  latte       PerFrameLatte with num_layers=1: patch embed, one spatial + one temporal block, the
              final layer; 16 frames x 64x64 latents (512x512), 120 T5 tokens
  wan         PerFrameWan with num_layers=1: patch embed, rope, one transformer block, the head;
              21 latent frames x 60x104 latents (81 frames of 480x832), 512 umT5 tokens
Where a block at the real size cannot run in onnxruntime or our executor within ~12 GB (their
attention materialises the scores), those two run a reduced window, said in the table; PyTorch
(SDPA, no score tensor) runs the real size as well.

Per window = the block's time x (the whole denoiser's FLOPs / the block's FLOPs), both counted by
torch's FlopCounterMode on the meta device at the real size: an extrapolation, not a measurement.
Per output frame: FIFO with lookahead runs 2n windows (n = 4 partitions) per emitted latent frame,
each twice for classifier-free guidance (docs/generate.md, /work/shared/fifo-spec.md); Wan's latent
frame is 4 video frames.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import common  # noqa: E402
import sizes  # noqa: E402

BINDING_LIMIT = sizes.BINDING_LIMIT  # WebGPU's default maxStorageBufferBindingSize, 128 MiB
THREADS = 2
WINDOWS_PER_LATENT = 2 * 4 * 2  # lookahead: 2n windows (n = 4), x2 for the CFG pair
MiB, GiB = 1 << 20, 1 << 30


# --- the blocks -------------------------------------------------------------------------------


def real_denoiser(family):
    """The real config's denoiser constructor from sizes.py (the one table of real configs)."""
    for name, parts in sizes.families():
        if name.lower().startswith(family):
            return parts[0][1]
    raise KeyError(family)


class ModelScopeBlock(torch.nn.Module):
    """PerFrameUNet3D's forward up to and including the first down block."""

    def __init__(self, unet):
        super().__init__()
        self.time_proj, self.time_embedding = unet.time_proj, unet.time_embedding
        self.conv_in, self.transformer_in, self.block = unet.conv_in, unet.transformer_in, unet.down_blocks[0]

    def forward(self, latents, timesteps, context):
        b, f = latents.shape[0], latents.shape[1]
        emb = self.time_embedding(self.time_proj(timesteps.reshape(b * f)).to(latents.dtype))
        context = context.reshape(b * f, context.shape[2], context.shape[3])
        sample = self.conv_in(latents.reshape(b * f, latents.shape[2], latents.shape[3], latents.shape[4]))
        sample = self.transformer_in(sample, num_frames=f, return_dict=False)[0]
        sample, _ = self.block(hidden_states=sample, temb=emb, encoder_hidden_states=context, num_frames=f)
        return sample.reshape(b, f, sample.shape[1], sample.shape[2], sample.shape[3])


def modelscope(device):
    import modelscope as ms
    from diffusers import UNet3DConditionModel
    with torch.device("meta"):
        full = real_denoiser("modelscope")()
    cfg = dict(full.config)
    with torch.device(device):
        # Same widths, heads and norms; one layer per block and only two levels, of which the
        # block uses the first (the second only makes down_blocks[0] a non-final, downsampling one).
        small = UNet3DConditionModel.from_config({**cfg, "layers_per_block": 1,
                                                  "down_block_types": cfg["down_block_types"][:2],
                                                  "up_block_types": cfg["up_block_types"][-2:],
                                                  "block_out_channels": cfg["block_out_channels"][:2]})
    a, b = small.down_blocks[0].attentions[0], full.down_blocks[0].attentions[0]
    assert a.transformer_blocks[0].attn1.heads == b.transformer_blocks[0].attn1.heads
    return dict(block=ModelScopeBlock(small), full=ms.PerFrameUNet3D(full),
                channels=4, tokens=77, dim=cfg["cross_attention_dim"], output="sample",
                describe="conv_in + transformer_in + down_blocks[0] with 1 of its 2 layers (ResBlock, temporal conv, "
                         "spatial + temporal transformer) + downsampler, 320 ch")


def latte(device):
    import latte as lt
    from diffusers import LatteTransformer3DModel
    with torch.device("meta"):
        full = real_denoiser("latte")()  # the whole denoiser only on the meta device (FLOPs)
    with torch.device(device):
        small = LatteTransformer3DModel.from_config({**dict(full.config), "num_layers": 1})
    return dict(block=lt.PerFrameLatte(small, 4), full=lt.PerFrameLatte(full, 4), channels=4, tokens=120, dim=4096,
                output="epsilon", layers=full.config.num_layers,
                describe="num_layers=1: patch embed + 1 spatial + 1 temporal block + final layer, 1152 wide")


def wan(device):
    import wan as wn
    from diffusers import WanTransformer3DModel
    with torch.device("meta"):
        full = real_denoiser("wan")()  # the whole denoiser only on the meta device (FLOPs)
    with torch.device(device):
        small = WanTransformer3DModel.from_config({**dict(full.config), "num_layers": 1})
    return dict(block=wn.PerFrameWan(small), full=wn.PerFrameWan(full), channels=16, tokens=512, dim=4096,
                output="velocity", layers=full.config.num_layers,
                describe="num_layers=1: patch embed + rope + 1 transformer block + head, 1536 wide")


# family: builder, real window (frames, latent h, w), video frames per latent frame, the window
# onnxruntime and our executor run (None: the real one) and why.
FAMILIES = {
    "modelscope": (modelscope, (16, 40, 72), 1, None, None),
    "latte": (latte, (16, 64, 64), 1, None, None),
    "wan": (wan, (21, 60, 104), 4, (4, 60, 104),
            "attention scores at 21x30x52 = 32760 tokens are 12 x 32760^2 x 4 B = 48 GiB: onnxruntime "
            "materialises them, so it runs 4 latent frames (13 video frames, 6240 tokens) at the real "
            "resolution; our executor streams them (fused attention on both backends) and runs the real "
            "window as well"),
}


def inputs_for(spec, shape, seed=0):
    f, h, w = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, f, spec["channels"], h, w, generator=g)
    t = torch.linspace(999, 1, f).round()[None]
    ctx = torch.randn(1, f, spec["tokens"], spec["dim"], generator=g)
    ctx[:, :, 20:] = 0  # a 20-token prompt, padding zeroed as MaskedT5Text does
    return x, t, ctx


def randomise(module, seed=0):
    """Random weights; parameters diffusers initialises to zero (output projections of the
    temporal layers, adaLN tables) get small noise so every path computes something."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    return module.eval()


# --- counting on the meta device --------------------------------------------------------------


ALIASES = ("view", "_unsafe_view", "expand", "t", "transpose", "permute", "slice", "select", "unsqueeze",
           "squeeze", "as_strided", "detach", "alias", "unbind", "split", "chunk")


class Activations(TorchDispatchMode):
    """Every new op output over a limit (views left out). On the meta device SDPA takes its math
    path, so attention shows its scores: the softmax outputs are labelled "attention scores" (the
    bmm feeding each one is the same tensor before the softmax)."""

    def __init__(self, limit):
        super().__init__()
        self.limit, self.largest, self.over = limit, (0, "", ()), {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name not in ALIASES:
            what = "attention scores" if "softmax" in name else name
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    b = t.numel() * t.element_size()
                    if b > self.largest[0]:
                        self.largest = (b, what, tuple(t.shape))
                    if b > self.limit:
                        key = (what, tuple(t.shape))
                        self.over[key] = self.over.get(key, 0) + 1
        return out


def count(module, x, t, ctx):
    meta = lambda a: torch.empty(a.shape, dtype=a.dtype, device="meta")  # noqa: E731
    acts = Activations(BINDING_LIMIT)
    with torch.no_grad(), FlopCounterMode(display=False) as fc, acts:
        module(meta(x), meta(t), meta(ctx))
    return fc.get_total_flops(), acts


# --- the engines ------------------------------------------------------------------------------


def torch_time(module, inputs, budget_s=30.0):
    """Seconds per call: the second call when the first is short, else the first."""
    with torch.no_grad():
        start = time.perf_counter()
        out = module(*inputs)
        first = time.perf_counter() - start
        if first > budget_s:
            return first, out, 1
        start = time.perf_counter()
        out = module(*inputs)
        return time.perf_counter() - start, out, 2


def ort_child(model, folder, output):
    """Run in a child process (own memory): one warm-up call, one timed call."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feeds = {n: np.load(os.path.join(folder, f"{n}.npy")) for n in ("latents", "timesteps", "context")}
    start = time.perf_counter()
    out = sess.run([output], feeds)[0]
    first = time.perf_counter() - start
    start = time.perf_counter()
    sess.run([output], feeds)
    second = time.perf_counter() - start
    np.save(os.path.join(folder, "ort.npy"), out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"first_s": first, "s": second, "rss": rss}))


def run_ort(model, folder, output):
    r = subprocess.run([sys.executable, __file__, "--ort-child", model, folder, output], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def fifo_bin():
    return os.path.join(ROOT, "target", "release", "fifo")


def run_inspect(model, shapes):
    cmd = [fifo_bin(), "onnx", "inspect", model, "--json"]
    for n, s in shapes.items():
        cmd += ["--input", f"{n}={','.join(map(str, s))}"]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"build_error": r.stderr.strip()[-300:]}, time.perf_counter() - start
    return json.loads(r.stdout), time.perf_counter() - start


def run_ours(model, folder):
    """`fifo onnx run --repeat 1`: the mean of one call after a warm-up, and the process' peak RSS."""
    out_dir = os.path.join(folder, "fifo-out")
    cmd = ["/usr/bin/time", "-f", "maxrss_kb %M", fifo_bin(), "onnx", "run", model, "--output-dir", out_dir,
           "--backend", "cpu", "--repeat", "1"]
    for n in ("latents", "timesteps", "context"):
        cmd += ["--input", f"{n}={os.path.join(folder, n + '.npy')}"]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAYON_NUM_THREADS": str(THREADS)})
    wall = time.perf_counter() - start
    rss = re.search(r"maxrss_kb (\d+)", r.stderr)
    res = {"wall_s": wall, "rss": int(rss.group(1)) * 1024 if rss else None}
    m = re.search(r"run: ([0-9.]+) ms", r.stdout)
    if r.returncode != 0 or not m:
        lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("maxrss_kb")]
        res["error"] = (lines[-1] if lines else f"exit {r.returncode}")[:300]
        return res
    res["s"] = float(m.group(1)) / 1e3
    files = [f for f in os.listdir(out_dir) if f.endswith(".npy")]
    res["out"] = np.load(os.path.join(out_dir, files[0]))
    return res


def export(block, inputs, output, path):
    """common.export_graph with a batch-2 example (traced at batch 1, torch specialises the
    symbolic batch of PerFrameWan to <= 2 and refuses); nothing run here."""
    pair = tuple(torch.cat([a, a]) for a in inputs)
    common.export_graph(block, pair, ["latents", "timesteps", "context"], output, path, check_batches=())


def rel_l2(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


# --- one family ---------------------------------------------------------------------------------


def measure(family, work, log):
    build, real, video_per_latent, reduced, why = FAMILIES[family]
    folder = os.path.join(work, family)
    os.makedirs(folder, exist_ok=True)
    row = {"family": family, "real": real, "reduced": reduced, "why": why}

    meta = build("meta")
    row["describe"] = meta["describe"]
    row["block_flops_real"], acts_real = count(meta["block"], *inputs_for(meta, real))
    row["model_flops_real"], acts_model = count(meta["full"], *inputs_for(meta, real))
    row["largest_real"], row["largest_model"] = acts_real.largest, acts_model.largest
    row["over_model"] = [[what, list(shape), n] for (what, shape), n in acts_model.over.items()]
    shape = reduced or real
    row["block_flops_measured"] = count(meta["block"], *inputs_for(meta, shape))[0] if reduced else row["block_flops_real"]
    del meta

    spec = build("cpu")
    block = randomise(spec["block"])
    row["block_params"] = sum(p.numel() for p in block.parameters())
    row["layers"] = spec.get("layers")
    log(f"[{family}] block: {row['block_params'] / 1e6:.0f} M parameters; {row['describe']}")

    # Export at the size onnxruntime and ours run (the graph's only free dim is the batch).
    x, t, ctx = inputs_for(spec, shape)
    path = os.path.join(folder, "block.onnx")
    start = time.perf_counter()
    export(block, (x, t, ctx), spec["output"], path)
    row["export_s"] = time.perf_counter() - start
    nodes, ops = common.op_summary(path)
    log(f"[{family}] exported {path} in {row['export_s']:.0f} s: {nodes} nodes, ops {' '.join(ops)}")
    for n, a in zip(("latents", "timesteps", "context"), (x, t, ctx)):
        np.save(os.path.join(folder, f"{n}.npy"), a.numpy())

    torch.set_num_threads(THREADS)
    row["torch_s"], want, calls = torch_time(block, (x, t, ctx))
    log(f"[{family}] PyTorch {shape}: {row['torch_s']:.1f} s per call ({calls} calls)")
    want = want.numpy()

    shapes = {"latents": list(x.shape), "timesteps": list(t.shape), "context": list(ctx.shape)}
    row["inspect"], row["inspect_s"] = run_inspect(path, shapes)
    log(f"[{family}] fifo onnx inspect: peak {row['inspect'].get('planned_peak_bytes')} B, largest "
        f"{row['inspect'].get('largest_value')}, unsupported {row['inspect'].get('unsupported')}, "
        f"build error {row['inspect'].get('build_error')}")

    row["ort"] = run_ort(path, folder, spec["output"])
    if "error" not in row["ort"]:
        row["ort"]["rel_l2"] = rel_l2(np.load(os.path.join(folder, "ort.npy")), want)
    log(f"[{family}] onnxruntime: {row['ort']}")

    ours = run_ours(path, folder)
    if "out" in ours:
        ours["rel_l2"] = rel_l2(ours.pop("out"), want)
    row["ours"] = ours
    log(f"[{family}] fifo cpu: {ours}")

    if reduced:
        # PyTorch (SDPA never materialises the scores) at the real window, and what our build says.
        xr, tr, cr = inputs_for(spec, real)
        row["torch_real_s"], want_real, calls = torch_time(block, (xr, tr, cr), budget_s=0)
        log(f"[{family}] PyTorch at the real window {real}: {row['torch_real_s']:.1f} s per call ({calls} call)")
        path_real = os.path.join(folder, "block_real.onnx")
        export(block, (xr, tr, cr), spec["output"], path_real)
        shapes_real = {"latents": list(xr.shape), "timesteps": list(tr.shape), "context": list(cr.shape)}
        row["inspect_real"], _ = run_inspect(path_real, shapes_real)
        log(f"[{family}] fifo onnx inspect at the real window: peak {row['inspect_real'].get('planned_peak_bytes')}, "
            f"build error {row['inspect_real'].get('build_error')}")
        folder_real = os.path.join(folder, "real")
        os.makedirs(folder_real, exist_ok=True)
        for n, a in zip(("latents", "timesteps", "context"), (xr, tr, cr)):
            np.save(os.path.join(folder_real, f"{n}.npy"), a.numpy())
        ours_real = run_ours(path_real, folder_real)
        if "out" in ours_real:
            ours_real["rel_l2"] = rel_l2(ours_real.pop("out"), want_real.numpy())
        row["ours_real"] = ours_real
        log(f"[{family}] fifo cpu at the real window: {ours_real}")
        os.remove(path_real)
        os.remove(path_real + ".data") if os.path.exists(path_real + ".data") else None
    else:
        row["torch_real_s"] = row["torch_s"]
    row["video_per_latent"] = video_per_latent
    return row


# --- the report ---------------------------------------------------------------------------------


def fmt_bytes(b):
    return "-" if b is None else (f"{b / GiB:.2f} GiB" if b >= GiB else f"{b / MiB:.0f} MiB")


def fmt_s(s):
    return "-" if s is None else (f"{s:.1f} s" if s < 600 else f"{s / 60:.0f} min")


def report(rows):
    lines = []
    p = lines.append
    p("Measured (batch 1 = one half of the CFG pair, 2 threads each; PyTorch: torch.set_num_threads(2); "
      "onnxruntime: 2 intra-op threads, one warm-up; fifo: `fifo onnx run --backend cpu --repeat 1`, "
      "RAYON_NUM_THREADS=2):\n")
    p("| family | window measured (F x latent h x w) | PyTorch | onnxruntime | fifo cpu | fifo / ort | fifo / torch "
      "| fifo peak RSS | ort peak RSS | planned peak (inspect) | largest value (inspect) | rel. L2 vs torch: ort / fifo |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, h, w = r["reduced"] or r["real"]
        o, u, i = r["ort"], r["ours"], r["inspect"]
        lv = i.get("largest_value") or {}
        ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
        p(f"| {r['family']} | {f}x{h}x{w}{' (reduced)' if r['reduced'] else ''} | {fmt_s(r['torch_s'])} "
          f"| {fmt_s(o.get('s')) if 'error' not in o else 'failed'} | {fmt_s(u.get('s')) if 'error' not in u else 'failed'} "
          f"| {ratio(u.get('s'), o.get('s'))} | {ratio(u.get('s'), r['torch_s'])} | {fmt_bytes(u.get('rss'))} "
          f"| {fmt_bytes(o.get('rss'))} | {fmt_bytes(i.get('planned_peak_bytes'))} "
          f"| {fmt_bytes(lv.get('bytes'))} {lv.get('shape', '')} "
          f"| {o.get('rel_l2', float('nan')):.1e} / {u.get('rel_l2', float('nan')):.1e} |")
    for r in rows:
        for k in ("ort", "ours"):
            if "error" in r[k]:
                p(f"\n{r['family']} {k} failed: {r[k]['error']}")
        if r["inspect"].get("build_error"):
            p(f"\n{r['family']} inspect build error: {r['inspect']['build_error']}")
        if r["reduced"]:
            p(f"\n{r['family']}: reduced because {r['why']}. PyTorch at the real window "
              f"{'x'.join(map(str, r['real']))}: {fmt_s(r['torch_real_s'])} per call; `fifo onnx inspect` at the "
              f"real window: {r['inspect_real'].get('build_error') or fmt_bytes(r['inspect_real'].get('planned_peak_bytes'))}")
            u = r.get("ours_real") or {}
            if "error" in u:
                p(f"fifo cpu at the real window failed: {u['error']}")
            elif u:
                p(f"fifo cpu at the real window: {fmt_s(u.get('s'))} per call ({u['s'] / r['torch_real_s']:.2f}x "
                  f"PyTorch), peak RSS {fmt_bytes(u.get('rss'))}, relative L2 vs PyTorch {u.get('rel_l2', float('nan')):.1e}")
    p("\nExtrapolated (not measured): per window = block time x (denoiser FLOPs / block FLOPs at that window, "
      "FlopCounterMode on the meta device); per latent frame = 16 window calls at batch 1 (lookahead: 2n = 8 "
      "windows, x2 for guidance), per video frame a quarter of that for Wan (4 frames per latent); fifo per window = the fifo time at the measured window x (denoiser FLOPs at the "
      "real window / block FLOPs at the measured window; Wan: measured at the real window).\n")
    p("| family | block | block TFLOP (real window) | denoiser TFLOP per window call | x | PyTorch per window "
      "| PyTorch per output video frame | fifo cpu per window | fifo cpu per output video frame |")
    p("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        k = r["model_flops_real"] / r["block_flops_real"]
        tw = r["torch_real_s"] * k
        us, measured_flops = r["ours"].get("s"), r["block_flops_measured"]
        if (r.get("ours_real") or {}).get("s"):  # measured at the real window: no window scaling
            us, measured_flops = r["ours_real"]["s"], r["block_flops_real"]
        uw = us * r["model_flops_real"] / measured_flops if us else None
        per = lambda s: None if s is None else s * WINDOWS_PER_LATENT / r["video_per_latent"]  # noqa: E731
        layers = f" (x{r['layers']} layers by count)" if r.get("layers") else ""
        p(f"| {r['family']} | {r['describe']} | {r['block_flops_real'] / 1e12:.2f} | {r['model_flops_real'] / 1e12:.1f} "
          f"| {k:.1f}{layers} | {fmt_s(tw)} | {fmt_s(per(tw))} | {fmt_s(uw)} | {fmt_s(per(uw))} |")
    p("\nActivations over WebGPU's default 128 MiB storage binding, whole denoiser at the real window, batch 1 "
      "(PyTorch ops on the meta device; \"attention scores\" = the [.., heads, Lq, Lk] tensor an unfused "
      "attention would hold: our GPU backend's streaming FusedAttention never materialises it):\n")
    for r in rows:
        over = {(what, tuple(shape)): n for what, shape, n in r["over_model"]}
        scores = {k: v for k, v in over.items() if k[0] == "attention scores"}
        sizes_ = {int(np.prod(k[1])) for k in scores}
        other = {k: v for k, v in over.items() if k[0] != "attention scores"
                 and not (k[0] == "bmm" and int(np.prod(k[1])) in sizes_)}
        mb = lambda k: fmt_bytes(int(np.prod(k[1])) * 4)  # noqa: E731
        desc = ("attention scores " + ", ".join(f"{list(k[1])} {mb(k)} (x{n})" for k, n in
                                                sorted(scores.items(), key=lambda kv: -np.prod(kv[0][1])))
                if scores else "no attention scores over the limit")
        top = sorted(other.items(), key=lambda kv: -np.prod(kv[0][1]))[:3]
        desc += ("; others, largest first: " + ", ".join(f"{k[0]} {list(k[1])} {mb(k)}" for k, _ in top)
                 + f" ({len(other)} shapes in all)" if top else "; nothing else over the limit")
        p(f"- {r['family']}: {desc}")
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--ort-child":
        return ort_child(*sys.argv[2:5])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", action="append", choices=list(FAMILIES), help="default: all")
    ap.add_argument("--keep", help="export into this folder and keep it (default: a temp dir, removed)")
    ap.add_argument("--json", help="also write the raw measurements here")
    args = ap.parse_args()
    assert os.path.exists(fifo_bin()), "cargo build --release -p fifo-cli first"
    work = args.keep or tempfile.mkdtemp(prefix="fifo-full-size-")
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    try:
        for family in args.family or list(FAMILIES):
            rows.append(measure(family, work, log))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1, default=str)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(report(rows))


if __name__ == "__main__":
    main()
