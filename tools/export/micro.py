#!/usr/bin/env python3
"""A micro text-to-video package with random weights, for tests of the FIFO loop itself (the
device-resident loop against the host loop) where a real UNet on a software adapter would spend
minutes per iteration. Small but not trivial: the UNet mixes space (3x3 conv), time (a temporal
mean), the per-frame timestep (sinusoidal embedding) and the per-frame prompt context, so a wrong
row, timestep, prompt blend or slot in the loop changes its output. Same interfaces as every
exporter (common.py); words tokenizer like the shipped model.

  /work/venv/bin/python tools/export/micro.py --out tests/fixtures/loop/micro-t2v
"""
import argparse
import math
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VOCAB = ["<pad>", "<empty>", "a", "red", "green", "blue", "circle", "square", "moving", "left", "right"]
FRAMES, C, H, W, T, D = 4, 4, 8, 8, 6, 8


class Text(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), D)
        self.position = nn.Parameter(torch.randn(T, D) * 0.1)
        self.mix = nn.Linear(D, D)

    def forward(self, ids):
        x = self.embed(ids) + self.position
        return torch.tanh(self.mix(x))


class Unet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(C, C, 3, padding=1)
        self.time = nn.Linear(8, C)
        self.context = nn.Linear(D, C)
        self.temporal = nn.Parameter(torch.tensor(0.3))

    def forward(self, latents, timesteps, context):
        b, f = latents.shape[:2]
        x = self.conv(latents.reshape(b * f, C, H, W)).reshape(b, f, C, H, W)
        x = x + self.temporal * latents.mean(dim=1, keepdim=True)
        freqs = torch.exp(torch.arange(4, dtype=torch.float32) * (-math.log(1000.0) / 4))
        angle = timesteps.unsqueeze(-1) * freqs
        temb = self.time(torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1))
        ctx = self.context(context.mean(dim=2))
        return torch.tanh(x + (temb + ctx).reshape(b, f, C, 1, 1))


class Decoder(nn.Module):
    """Wider in the middle than at the output, so the output shares a larger pooled buffer on the
    GPU backend (what must not be read back whole)."""

    def __init__(self):
        super().__init__()
        self.widen = nn.Conv2d(C, 8, 1)
        self.out = nn.Conv2d(8, 3, 1)

    def forward(self, latents):
        x = nn.functional.interpolate(self.widen(latents), scale_factor=2, mode="nearest")
        return torch.tanh(self.out(torch.relu(x)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    errors = {}
    ids = torch.tensor([[2, 3, 6, 8, 10, 0]])
    errors["text_encoder.onnx"] = common.export_graph(
        Text(), (ids,), ["ids"], "context", os.path.join(args.out, "text_encoder.onnx"))
    inputs = (torch.randn(1, FRAMES, C, H, W), torch.rand(1, FRAMES) * 999, torch.randn(1, FRAMES, T, D))
    errors["unet.onnx"] = common.export_graph(
        Unet(), inputs, ["latents", "timesteps", "context"], "epsilon", os.path.join(args.out, "unet.onnx"))
    errors["decoder.onnx"] = common.export_graph(
        Decoder(), (torch.randn(1, C, H, W),), ["latents"], "rgb", os.path.join(args.out, "decoder.onnx"))
    common.write_manifest(args.out, {
        "format": "fifo-diffusion-model/1",
        "name": "micro-t2v",
        "description": "Micro package with random weights for tests of the FIFO loop (tools/export/micro.py)",
        "frames": FRAMES,
        "fps": 8,
        "image": {"height": 2 * H, "width": 2 * W, "channels": 3, "range": [-1.0, 1.0]},
        "latent": {"channels": C, "height": H, "width": W, "scale_factor": 0.5},
        "schedule": {
            "train_timesteps": 1000,
            "betas": {"kind": "scaled_linear", "start": 0.00085, "end": 0.012},
            "prediction": "epsilon",
            "spacing": {"kind": "official_linspace"},
            "final_alpha": "first_train_step",
        },
        "defaults": {"guidance": 7.5, "partitions": 2, "lookahead": True, "eta": 1.0, "init": "clip"},
        "text": {"tokenizer": "words", "vocabulary": VOCAB, "max_tokens": T, "dim": D, "pad_id": 0,
                 "empty_id": 1},
        "graphs": {
            "text_encoder": {"file": "text_encoder.onnx", "input": "ids", "output": "context"},
            "unet": {"file": "unet.onnx", "latents": "latents", "timesteps": "timesteps",
                     "context": "context", "output": "epsilon"},
            "decoder": {"file": "decoder.onnx", "input": "latents", "output": "rgb"},
        },
        "export_check_max_abs_error": errors,
    })
    for name in os.listdir(args.out):  # graphs whose weights are all inline leave an empty file
        path = os.path.join(args.out, name)
        if name.endswith(".data") and os.path.getsize(path) == 0:
            os.remove(path)
    print(errors)


if __name__ == "__main__":
    main()
