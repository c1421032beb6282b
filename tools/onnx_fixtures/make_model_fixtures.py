#!/usr/bin/env python3
"""Writes the whole-model fixtures: a tiny UNet-like denoiser (convolutions, GroupNorm, SiLU,
sinusoidal time embedding, self-attention in both the MatMul and the Einsum form, a temporal
Conv1d, nearest upsampling, a skip Concat) exported by both torch exporters, with inputs and
onnxruntime's outputs in the ONNX backend-test layout under tests/fixtures/models/<name>/.

  unet_torchscript_op17   torch.onnx.export(dynamo=False, opset_version=17)
  unet_dynamo_op18        torch.onnx.export(dynamo=True, opset_version=18)
  unet_external_data      the opset-17 model with its weights in a separate file

Run: /work/venv/bin/python tools/onnx_fixtures/make_model_fixtures.py   (needs torch, onnxscript)
"""
import math
import pathlib
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, ch, heads, use_einsum):
        super().__init__()
        self.heads, self.use_einsum = heads, use_einsum
        self.norm = nn.LayerNorm(ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.out = nn.Linear(ch, ch)

    def forward(self, x):
        b, c, h, w = x.shape
        seq = x.flatten(2).transpose(1, 2)  # [B, N, C]
        q, k, v = self.qkv(self.norm(seq)).chunk(3, dim=-1)
        split = lambda z: z.reshape(b, h * w, self.heads, c // self.heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        scale = 1.0 / math.sqrt(c // self.heads)
        if self.use_einsum:
            p = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * scale, dim=-1)
            o = torch.einsum("bhij,bhjd->bhid", p, v)
        else:
            p = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
            o = p @ v
        o = o.transpose(1, 2).reshape(b, h * w, c)
        return x + self.out(o).transpose(1, 2).reshape(b, c, h, w)


class ResBlock(nn.Module):
    def __init__(self, ch, tdim):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(4, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.time = nn.Linear(tdim, 2 * ch)
        self.norm2, self.conv2 = nn.GroupNorm(4, ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, temb):
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.time(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.conv2(nn.functional.silu(h))


class TinyUNet(nn.Module):
    def __init__(self, ch=8, tdim=16):
        super().__init__()
        self.tdim = tdim
        self.time_mlp = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(4, ch, 3, padding=1)
        self.block1 = ResBlock(ch, tdim)
        self.down = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.block2 = ResBlock(2 * ch, tdim)
        self.attn1 = Attention(2 * ch, 2, use_einsum=False)
        self.attn2 = Attention(2 * ch, 2, use_einsum=True)
        self.temporal = nn.Conv1d(2 * ch, 2 * ch, 3, padding=1)
        self.up = nn.Conv2d(2 * ch, ch, 3, padding=1)
        self.conv_out = nn.Conv2d(2 * ch, 4, 3, padding=1)

    def forward(self, x, t):
        temb = self.time_mlp(timestep_embedding(t, self.tdim))
        h1 = self.block1(self.conv_in(x), temb)
        h = self.attn2(self.attn1(self.block2(self.down(h1), temb)))
        b, c, hh, ww = h.shape
        # A temporal-style Conv1d along the width, rows folded into the batch.
        rows = h.permute(0, 2, 1, 3).reshape(b * hh, c, ww)
        h = h + self.temporal(rows).reshape(b, hh, c, ww).permute(0, 2, 1, 3)
        h = self.up(nn.functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(nn.functional.silu(torch.cat([h, h1], dim=1)))


def write_case(name, model_path, inputs):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    outputs = sess.run(None, inputs)
    data = model_path.parent / "test_data_set_0"
    data.mkdir(exist_ok=True)
    for k, (n, v) in enumerate(inputs.items()):
        (data / f"input_{k}.pb").write_bytes(numpy_helper.from_array(v, n).SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    for k, v in enumerate(outputs):
        (data / f"output_{k}.pb").write_bytes(numpy_helper.from_array(v, names[k]).SerializeToString())
    ops = sorted({n.op_type for n in onnx.load(str(model_path), load_external_data=False).graph.node})
    print(f"{name}: {len(ops)} op types: {' '.join(ops)}")
    return outputs[0]


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    torch.manual_seed(0)
    model = TinyUNet().eval()
    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([37.0])
    with torch.no_grad():
        want = model(x, t).numpy()
    inputs = {"x": x.numpy(), "t": t.numpy()}
    names = dict(input_names=["x", "t"], output_names=["y"])

    ts = ROOT / "unet_torchscript_op17" / "model.onnx"
    ts.parent.mkdir(parents=True)
    torch.onnx.export(model, (x, t), str(ts), opset_version=17, dynamo=False, **names)
    got = write_case("unet_torchscript_op17", ts, inputs)
    print("  torch vs onnxruntime max |diff|", float(np.abs(got - want).max()))

    dyn = ROOT / "unet_dynamo_op18" / "model.onnx"
    dyn.parent.mkdir(parents=True)
    torch.onnx.export(model, (x, t), str(dyn), opset_version=18, dynamo=True, **names)
    got = write_case("unet_dynamo_op18", dyn, inputs)
    print("  torch vs onnxruntime max |diff|", float(np.abs(got - want).max()))

    ext = ROOT / "unet_external_data" / "model.onnx"
    ext.parent.mkdir(parents=True)
    onnx.save_model(onnx.load(str(ts)), str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    write_case("unet_external_data", ext, inputs)


if __name__ == "__main__":
    main()
