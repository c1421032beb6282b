"""Export a checkpoint (EMA weights) and its autoencoder to ONNX, check every graph against
PyTorch with onnxruntime, and write a draft model.json.

Graphs (opset 18, torch.onnx.export(dynamo=True), static shapes, weights in .onnx.data files):
  text_encoder.onnx   ids int64 [B_text, T]                         -> context [B_text, T, D]
  unet_b{B}.onnx      latents [B, F, 4, 16, 16] float32 (frame-major)
                      timesteps [B, F] float32 (one per frame, 0..999)
                      context [B, F, T, D] float32 (one prompt per frame)  -> v [B, F, 4, 16, 16]
  decoder.onnx        latents [1, 4, 16, 16] (UNscaled: divide by latent_scale first) -> rgb [1, 3, 64, 64]
  encoder.onnx        rgb [1, 3, 64, 64] in [-1, 1] -> latents [1, 4, 16, 16] (multiply by latent_scale)

  python tools/model/export.py --out /work/train-state/export --unet-batch 2 --unet-batch 16
"""
import argparse
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


def export_one(module, inputs, names, outputs, path):
    """Export, then run the graph in onnxruntime and return the max abs error against torch."""
    import onnxruntime as ort
    module.eval()
    with torch.no_grad():
        want = module(*inputs)
    torch.onnx.export(module, inputs, path, input_names=names, output_names=outputs,
                      opset_version=18, dynamo=True, external_data=True, optimize=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0]
    return float(np.abs(got - want.numpy()).max())


def op_types(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return len(m.graph.node), sorted({n.op_type for n in m.graph.node})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state")
    ap.add_argument("--ckpt")
    ap.add_argument("--out", default="/work/train-state/export")
    ap.add_argument("--unet-batch", type=int, action="append", help="static UNet batch sizes")
    ap.add_argument("--text-batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = args.unet_batch or [2]
    os.makedirs(args.out, exist_ok=True)

    model, ae, step, cfg, ckpt = sample.load(args.state, args.ckpt)
    mc = cfg["model"]
    f, zc, size = mc["frames"], mc["latent_channels"], mc["latent_size"]
    tokens, d = mc["max_tokens"], mc["text_dim"]
    g = torch.Generator().manual_seed(0)
    report = {}

    ids = model.tokenizer(["a red circle moving right on a black background"] * args.text_batch)
    report["text_encoder.onnx"] = export_one(TextGraph(model.text), (ids,), ["ids"], ["context"],
                                             os.path.join(args.out, "text_encoder.onnx"))
    unet_files = {}
    for b in batches:
        name = f"unet_b{b}.onnx"
        x = torch.randn(b, f, zc, size, size, generator=g)
        t = torch.randint(0, 1000, (b, f), generator=g).float()
        ctx = torch.randn(b, f, tokens, d, generator=g)
        report[name] = export_one(model.unet, (x, t, ctx), ["latents", "timesteps", "context"], ["v"],
                                  os.path.join(args.out, name))
        unet_files[str(b)] = name
    z = torch.randn(1, zc, size, size, generator=g) / ae.scale
    report["decoder.onnx"] = export_one(ae.decoder, (z,), ["latents"], ["rgb"], os.path.join(args.out, "decoder.onnx"))
    rgb = world.sample_clips(1, g).render([0])[:, 0]
    report["encoder.onnx"] = export_one(ae.encoder, (rgb,), ["rgb"], ["latents"], os.path.join(args.out, "encoder.onnx"))
    for name, err in report.items():
        nodes, ops = op_types(os.path.join(args.out, name))
        print(f"{name}: max abs error vs torch {err:.2e}; {nodes} nodes, ops {' '.join(ops)}")

    manifest = {
        "name": "shapes-t2v-tiny",
        "description": "Small text-to-video model trained on the procedural shapes world (tools/model).",
        "checkpoint_step": step,
        "frames": f,
        "image": {"height": world.SIZE, "width": world.SIZE, "channels": 3, "range": [-1.0, 1.0]},
        "latent": {"channels": zc, "height": size, "width": size, "scale_factor": float(ae.scale),
                   "note": "multiply encoder output by scale_factor; divide by it before the decoder"},
        "schedule": {"type": diffusion.SCHEDULE, "train_steps": diffusion.STEPS, "cosine_s": 0.008,
                     "max_beta": 0.999, "alphas_cumprod": [round(float(a), 9) for a in diffusion.ALPHABAR]},
        "prediction": diffusion.PREDICTION,
        "trained_with": "one noise level shared by all frames of a clip",
        "defaults": {"guidance_scale": 5.0, "partitions": 4, "lookahead": True, "ddim_eta": 1.0},
        "text": {"vocabulary": model.tokenizer.words, "max_tokens": tokens, "dim": d,
                 "pad_id": 0, "empty_id": 1, "tokenize": "split on spaces; ids padded with pad_id; the empty prompt is [empty_id, pad...]",
                 "grammar": "a {colour} {shape} moving {direction} on a {background} background"},
        "files": {"text_encoder": "text_encoder.onnx", "unet": unet_files,
                  "decoder": "decoder.onnx", "encoder": "encoder.onnx"},
        "io": {"unet": {"latents": "[B, F, C, H, W] float32", "timesteps": "[B, F] float32",
                        "context": "[B, F, T, D] float32", "output": "v [B, F, C, H, W]"},
               "text_encoder": {"ids": f"[{args.text_batch}, T] int64", "output": "context [B, T, D]"}},
        "held_out_pairs": world.HELD_OUT,
        "export_check_max_abs_error": report,
    }
    with open(os.path.join(args.out, "model.json"), "w") as fj:
        json.dump(manifest, fj, indent=1)
    print(f"wrote {args.out}/model.json (checkpoint {os.path.basename(ckpt)}, step {step})")


if __name__ == "__main__":
    main()
