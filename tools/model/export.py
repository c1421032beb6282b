"""Package a checkpoint (EMA weights) and its autoencoder as a model package: ONNX graphs with a
symbolic batch dimension (the runtime builds them for the batch sizes it needs), each checked
against PyTorch with onnxruntime at two batch sizes, and the package's model.json
(docs/model-package.md describes the format).

Graphs (opset 18, torch.onnx.export(dynamo=True), weights in .onnx.data files beside them):
  text_encoder.onnx   ids int64 [B, T]                                   -> context [B, T, D]
  unet.onnx           latents [B, F, 4, 16, 16] float32 (frame-major)
                      timesteps [B, F] float32 (one per frame, 0..999)
                      context [B, F, T, D] float32 (one prompt per frame) -> v [B, F, 4, 16, 16]
  decoder.onnx        latents [B, 4, 16, 16] (UNscaled: divide by scale_factor first) -> rgb [B, 3, 64, 64]
  encoder.onnx        rgb [B, 3, 64, 64] in [-1, 1] -> latents [B, 4, 16, 16] (multiply by scale_factor)

  python tools/model/export.py --out models/shapes-t2v-tiny
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export"))
import common  # noqa: E402  (export checked against PyTorch, shared with the family exporters)
import diffusion  # noqa: E402
import sample  # noqa: E402
import world  # noqa: E402


class TextGraph(torch.nn.Module):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def forward(self, ids):
        return self.text(ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state")
    ap.add_argument("--ckpt")
    ap.add_argument("--out", default="models/shapes-t2v-tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    model, ae, step, cfg, ckpt = sample.load(args.state, args.ckpt)
    mc = cfg["model"]
    f, zc, size = mc["frames"], mc["latent_channels"], mc["latent_size"]
    tokens, d = mc["max_tokens"], mc["text_dim"]
    g = torch.Generator().manual_seed(0)
    report = {}
    out = lambda name: os.path.join(args.out, name)

    ids = model.tokenizer(["a red circle moving right on a black background", ""])
    report["text_encoder.onnx"] = common.export_graph(TextGraph(model.text), (ids,), ["ids"], "context",
                                                      out("text_encoder.onnx"))
    x = torch.randn(2, f, zc, size, size, generator=g)
    t = torch.randint(0, 1000, (2, f), generator=g).float()
    ctx = torch.randn(2, f, tokens, d, generator=g)
    names = ["latents", "timesteps", "context"]
    report["unet.onnx"] = common.export_graph(model.unet, (x, t, ctx), names, "v", out("unet.onnx"))
    z = torch.randn(2, zc, size, size, generator=g) / ae.scale
    report["decoder.onnx"] = common.export_graph(ae.decoder, (z,), ["latents"], "rgb", out("decoder.onnx"))
    rgb = world.sample_clips(2, g).render([0])[:, 0]
    report["encoder.onnx"] = common.export_graph(ae.encoder, (rgb,), ["rgb"], "latents", out("encoder.onnx"))
    for name, err in report.items():
        nodes, ops = common.op_summary(out(name))
        print(f"{name}: max abs error vs torch {err:.2e}; {nodes} nodes, ops {' '.join(ops)}")

    unet = {"file": "unet.onnx", "latents": "latents", "timesteps": "timesteps", "context": "context",
            "output": "v"}
    if os.path.exists(out("unet.int8.onnx")):  # made by `fifo quantize`, kept across re-exports
        unet["int8"] = "unet.int8.onnx"
    if os.path.exists(out("unet.f16.onnx")):  # likewise (`fifo quantize --weights f16`)
        unet["f16"] = "unet.f16.onnx"
    manifest = {
        "format": "fifo-diffusion-model/1",
        "name": os.path.basename(os.path.normpath(args.out)),
        "description": "Small text-to-video model trained by the project on the procedural shapes world "
                       "(tools/model); see MODEL_CARD.md.",
        "frames": f,
        "fps": args.fps,
        "image": {"height": world.SIZE, "width": world.SIZE, "channels": 3, "range": [-1.0, 1.0]},
        "latent": {"channels": zc, "height": size, "width": size, "scale_factor": float(ae.scale)},
        # fifo_diffusion::schedule::DiffusionSchedule, serde form.
        "schedule": {"train_timesteps": diffusion.STEPS, "betas": {"kind": diffusion.SCHEDULE},
                     "prediction": {"v": "v_prediction", "eps": "epsilon"}[diffusion.PREDICTION],
                     "spacing": {"kind": "official_linspace"}, "final_alpha": "first_train_step"},
        "defaults": {"guidance": 5.0, "partitions": 4, "lookahead": True, "eta": 1.0, "init": "clip"},
        "text": {"tokenizer": "words", "vocabulary": model.tokenizer.words, "max_tokens": tokens, "dim": d,
                 "pad_id": 0, "empty_id": 1,
                 "grammar": "a {colour} {shape} moving {direction} on a {background} background"},
        "graphs": {"text_encoder": {"file": "text_encoder.onnx", "input": "ids", "output": "context"},
                   "unet": unet,
                   "decoder": {"file": "decoder.onnx", "input": "latents", "output": "rgb"},
                   "encoder": {"file": "encoder.onnx", "input": "rgb", "output": "latents"}},
        "training": {"checkpoint": os.path.basename(ckpt), "step": step, "config": cfg,
                     "noise_levels": "one per clip (the standard way)",
                     "alphas_cumprod": [round(float(a), 9) for a in diffusion.ALPHABAR]},
        "held_out_pairs": world.HELD_OUT,
        "export_check_max_abs_error": report,
    }
    with open(out("model.json"), "w") as fj:
        json.dump(manifest, fj, indent=1)
        fj.write("\n")
    print(f"wrote {out('model.json')} (checkpoint {os.path.basename(ckpt)}, step {step})")


if __name__ == "__main__":
    main()
