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
import inspect
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402
import sample  # noqa: E402
import world  # noqa: E402


class TextGraph(torch.nn.Module):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def forward(self, ids):
        return self.text(ids)


def export_one(module, inputs, names, outputs, path, dyn_names, check_batches=(1, 3)):
    """Export with a symbolic batch dim on the inputs named in dyn_names, then run the graph in
    onnxruntime at two batch sizes and return the max abs error against torch."""
    import onnxruntime as ort
    module.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    params = list(inspect.signature(module.forward).parameters)
    dynamic = {params[i]: ({0: batch} if n in dyn_names else {}) for i, n in enumerate(names)}
    torch.onnx.export(module, inputs, path, input_names=names, output_names=outputs, opset_version=18,
                      dynamo=True, external_data=True, optimize=True, dynamic_shapes=dynamic)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    err = 0.0
    for b in check_batches:
        xs = [torch.cat([x] * b)[:b] if n in dyn_names else x for n, x in zip(names, inputs)]
        with torch.no_grad():
            want = module(*xs)
        got = sess.run(None, {n: x.numpy() for n, x in zip(names, xs)})[0]
        err = max(err, float(np.abs(got - want.numpy()).max()))
    return err


def op_types(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return len(m.graph.node), sorted({n.op_type for n in m.graph.node})


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
    report["text_encoder.onnx"] = export_one(TextGraph(model.text), (ids,), ["ids"], ["context"],
                                             out("text_encoder.onnx"), {"ids"})
    x = torch.randn(2, f, zc, size, size, generator=g)
    t = torch.randint(0, 1000, (2, f), generator=g).float()
    ctx = torch.randn(2, f, tokens, d, generator=g)
    names = ["latents", "timesteps", "context"]
    report["unet.onnx"] = export_one(model.unet, (x, t, ctx), names, ["v"], out("unet.onnx"), set(names))
    z = torch.randn(2, zc, size, size, generator=g) / ae.scale
    report["decoder.onnx"] = export_one(ae.decoder, (z,), ["latents"], ["rgb"], out("decoder.onnx"), {"latents"})
    rgb = world.sample_clips(2, g).render([0])[:, 0]
    report["encoder.onnx"] = export_one(ae.encoder, (rgb,), ["rgb"], ["latents"], out("encoder.onnx"), {"rgb"})
    for name, err in report.items():
        nodes, ops = op_types(out(name))
        print(f"{name}: max abs error vs torch {err:.2e}; {nodes} nodes, ops {' '.join(ops)}")

    unet = {"file": "unet.onnx", "latents": "latents", "timesteps": "timesteps", "context": "context",
            "output": "v"}
    if os.path.exists(out("unet.int8.onnx")):  # made by `fifo quantize`, kept across re-exports
        unet["int8"] = "unet.int8.onnx"
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
