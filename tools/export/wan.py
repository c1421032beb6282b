"""Export Wan 2.1 T2V (diffusers `WanTransformer3DModel` + `AutoencoderKLWan` + umT5) as a
fifo-diffusion model package, with one timestep and one prompt per latent frame.

Wan 2.1 embeds one timestep per clip; diffusers' Wan 2.2 TI2V path takes one per token, which is
what FIFO needs at frame granularity. `PerFrameWan` embeds one timestep per latent frame and
modulates each frame's tokens with it (the block's forward pass is rewritten here for that, at
[B, F, 1, D] rather than one [6, D] vector per token; diffusers is not patched), and runs each
frame's cross-attention against that frame's prompt (prompt schedules). The export checks it
against diffusers twice: one timestep per clip (the Wan 2.1 path) and one per token (the TI2V
path, with the per-frame timesteps repeated over each frame's tokens).

Wan is trained with rectified flow: the model predicts the velocity `noise - x0` from
`x = (1 - s) x0 + s noise` at timestep `1000 s`; the package's schedule says so and the runtime
takes Euler steps on the shifted sigma grid.

The causal 3-D VAE packs 4 video frames into one latent frame (the first latent frame holds one).
FIFO runs on latent frames; the decoder is exported as two graphs with the causal convolutions'
caches as explicit state: `decoder_first` turns the first dequeued latent into 1 frame and the
initial state, `decoder` turns each following latent and the state into 4 frames and the next
state. Chaining them reproduces `AutoencoderKLWan.decode` of the whole latent video (checked at
export). The Wan pipeline's latent normalisation (per-channel mean and std) is inside the graphs,
so the package's latents are the diffusion latents (`scale_factor` 1).

  # a local diffusers checkpoint folder (transformer/, text_encoder/, tokenizer/, vae/):
  python tools/export/wan.py --checkpoint ~/Wan2.1-T2V-1.3B-Diffusers --out models/wan2.1-t2v-1.3b
  # the reduced config with random weights that CI tests (same code paths, tiny widths):
  python tools/export/wan.py --tiny --golden --out tests/fixtures/packages/wan-tiny
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def wan_block(block, x, context, mods, rotary, frames):
    """diffusers' WanTransformerBlock forward with one modulation per frame and per-frame
    cross-attention. x [B, F P, D]; context [B F, T, D]; mods [B, F, 1, 6, D]."""
    b, n, d = x.shape
    p = n // frames
    framewise = lambda t: t.reshape(b, frames, p, d)  # noqa: E731
    flat = lambda t: t.reshape(b, n, d)  # noqa: E731
    mod = block.scale_shift_table.float()[None, None] + mods.float()  # [B, F, 1, 6, D]
    shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = mod.unbind(3)
    h = flat(modulate(framewise(block.norm1(x.float())), shift_msa, scale_msa)).type_as(x)
    x = flat(framewise(x.float()) + framewise(block.attn1(h, None, None, rotary)) * gate_msa).type_as(x)
    h = block.norm2(x.float()).type_as(x)
    x = x + block.attn2(h.reshape(b * frames, p, d), context, None, None).reshape(b, n, d)
    h = flat(modulate(framewise(block.norm3(x.float())), c_shift, c_scale)).type_as(x)
    return flat(framewise(x.float()) + framewise(block.ffn(h).float()) * c_gate).type_as(x)


class PerFrameWan(torch.nn.Module):
    """`WanTransformer3DModel.forward` with timesteps [B, F] and one context per frame, in the
    package's frame-major layout; returns the velocity."""

    def __init__(self, transformer):
        super().__init__()
        self.m = transformer
        assert transformer.config.patch_size[0] == 1, "FIFO needs one latent frame per token frame"
        assert transformer.config.image_dim is None, "image-to-video variants are not supported"

    def forward(self, latents, timesteps, context):
        m, ce = self.m, self.m.condition_embedder
        b, f, c, h, w = latents.shape
        _, ph, pw = m.config.patch_size
        video = latents.permute(0, 2, 1, 3, 4)  # [B, C, F, H, W]
        rotary = m.rope(video)
        x = m.patch_embedding(video).flatten(2).transpose(1, 2).contiguous()  # [B, F P, D]
        d = x.shape[-1]
        temb = ce.time_embedder(ce.timesteps_proj(timesteps.reshape(b * f)).to(x.dtype)).type_as(x)  # [B F, D]
        mods = ce.time_proj(ce.act_fn(temb)).reshape(b, f, 1, 6, d)
        context = ce.text_embedder(context.reshape(b * f, context.shape[2], context.shape[3]))
        for block in m.blocks:
            x = wan_block(block, x, context, mods, rotary, f)
        shift, scale = (m.scale_shift_table[None] + temb.reshape(b, f, 1, d)).chunk(2, dim=2)  # [B, F, 1, D]
        hp, wp = h // ph, w // pw
        x = modulate(m.norm_out(x.float()).reshape(b, f, hp * wp, d), shift, scale).type_as(x)
        x = m.proj_out(x.reshape(b, f * hp * wp, d))
        oc = m.config.out_channels
        x = x.reshape(b, f, hp, wp, 1, ph, pw, oc).permute(0, 1, 7, 4, 2, 5, 3, 6)
        return x.reshape(b, f, oc, h, w)


def check_against_diffusers(transformer, wrapper, latents, t, ctx):
    """The wrapper against diffusers' own forward pass: with one timestep per clip (Wan 2.1's
    path) and with per-frame timesteps spread over the tokens (the TI2V path). Same prompt in
    every frame."""
    b, f, c, h, w = latents.shape
    _, ph, pw = transformer.config.patch_size
    ctx = ctx[:, :1].expand(ctx.shape).contiguous()
    video = latents.permute(0, 2, 1, 3, 4)
    errs = []
    with torch.no_grad():
        for per_token in (False, True):
            ts = t if per_token else t[:, :1].expand(b, f).contiguous()
            got = wrapper(latents, ts, ctx)
            step = ts.repeat_interleave((h // ph) * (w // pw), dim=1) if per_token else ts[:, 0]
            want = transformer(video, timestep=step, encoder_hidden_states=ctx[:, 0], return_dict=False)[0]
            err = float((got - want.permute(0, 2, 1, 3, 4)).abs().max())
            assert err < 1e-4 * max(1.0, float(want.abs().max())), f"per-frame wrapper != diffusers: {err}"
            errs.append(err)
    return errs


# --- the causal VAE decoder with explicit state --------------------------------------------------


class WanLatents(torch.nn.Module):
    """The pipeline's de-normalisation of diffusion latents: z * std + mean per channel."""

    def __init__(self, vae):
        super().__init__()
        c = vae.config.z_dim
        self.register_buffer("mean", torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, c, 1, 1, 1))
        self.register_buffer("std", torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, c, 1, 1, 1))

    def forward(self, latents):  # [B, C, H, W] -> [B, C, 1, H, W]
        return latents.unsqueeze(2) * self.std + self.mean


def state_shapes(vae, latent_hw):
    """Shapes (batch 1) of the decoder's causal caches after its second latent frame: from then
    on every cache holds the last 2 frames its convolution saw."""
    z = torch.zeros(1, vae.config.z_dim, 2, *latent_hw)
    vae.clear_cache()
    with torch.no_grad():
        x = vae.post_quant_conv(z)
        for i in range(2):
            vae._conv_idx = [0]
            vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0)
    cache = list(vae._feat_map)
    vae.clear_cache()
    # Slots no convolution fills (diffusers counts every CausalConv3d of the decoder) stay None.
    assert all(t is None or (torch.is_tensor(t) and t.shape[2] == 2) for t in cache), cache
    return [None if t is None else tuple(t.shape[1:]) for t in cache]


class WanDecoderFirst(torch.nn.Module):
    """The first latent frame -> 1 video frame [B, 1, 3, H, W] and the initial state."""

    def __init__(self, vae, shapes):
        super().__init__()
        self.vae, self.latents, self.shapes = vae, WanLatents(vae), shapes

    def forward(self, latents):
        b = latents.shape[0]
        cache = [None] * len(self.shapes)
        out = self.vae.decoder(self.vae.post_quant_conv(self.latents(latents)), feat_cache=cache, feat_idx=[0],
                               first_chunk=True)
        states = []
        for c, shape in zip(cache, self.shapes):
            if shape is None:
                continue
            # "Rep" (a time upsampler that has not run yet) behaves as 2 zero frames; a cache of 1
            # frame as that frame after a zero frame (the convolution pads with zeros in front).
            if not torch.is_tensor(c):
                c = latents.new_zeros((b,) + shape)
            elif c.shape[2] < 2:
                c = torch.cat([torch.zeros_like(c[:, :, :1]).expand(c.shape[0], c.shape[1], 2 - c.shape[2],
                                                                      c.shape[3], c.shape[4]), c], dim=2)
            states.append(c)
        return (out.clamp(-1.0, 1.0).permute(0, 2, 1, 3, 4), *states)


class WanDecoderNext(torch.nn.Module):
    """A following latent frame and the state -> 4 video frames [B, 4, 3, H, W] and the new state."""

    def __init__(self, vae, shapes):
        super().__init__()
        self.vae, self.latents, self.shapes = vae, WanLatents(vae), shapes

    def forward(self, latents, *states):
        given = iter(states)
        cache = [None if s is None else next(given) for s in self.shapes]
        out = self.vae.decoder(self.vae.post_quant_conv(self.latents(latents)), feat_cache=cache, feat_idx=[0])
        return (out.clamp(-1.0, 1.0).permute(0, 2, 1, 3, 4), *[c for c in cache if c is not None])


def check_decoder_chain(vae, first_path, next_path, shapes, z):
    """Our two graphs chained in onnxruntime over a latent video against `vae.decode` of all of it."""
    import onnxruntime as ort
    first = ort.InferenceSession(first_path, providers=["CPUExecutionProvider"])
    nxt = ort.InferenceSession(next_path, providers=["CPUExecutionProvider"])
    state_names = [f"state_{i}" for i, _ in enumerate(s for s in shapes if s is not None)]
    outs = first.run(None, {"latents": z[:, :, 0].numpy()})
    frames, states = [outs[0]], outs[1:]
    for i in range(1, z.shape[2]):
        outs = nxt.run(None, {"latents": z[:, :, i].numpy(), **dict(zip(state_names, states))})
        frames.append(outs[0])
        states = outs[1:]
    got = np.concatenate(frames, axis=1)  # [B, frames, 3, H, W]
    lat = WanLatents(vae)
    with torch.no_grad():
        want = vae.decode(z * lat.std + lat.mean, return_dict=False)[0].permute(0, 2, 1, 3, 4).numpy()
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max())


def tiny_models(seed, vocab, tokens, frames):
    """Reduced configs with Wan 2.1's block types, norms and activations."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel
    torch.manual_seed(seed)
    text = UMT5EncoderModel(UMT5Config(
        vocab_size=vocab, d_model=24, d_kv=8, d_ff=48, num_layers=2, num_heads=3,
        relative_attention_num_buckets=8, relative_attention_max_distance=tokens, feed_forward_proj="gated-gelu",
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=24, freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-6, rope_max_seq_len=64)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
                           temperal_downsample=[False, True, True],
                           latents_mean=[0.1, -0.2, 0.3, -0.4], latents_std=[1.5, 0.8, 1.2, 2.0])
    with torch.no_grad():
        for module in (transformer, text, vae):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return transformer.eval(), text.eval(), vae.eval()


TINY_TOKENS = 24
TINY_FRAMES = 4  # latent frames per window: 13 video frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="local diffusers folder (transformer/, text_encoder/, tokenizer/, vae/)")
    src.add_argument("--tiny", action="store_true", help="reduced config with random weights (tests)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, help="latent frames per window (Wan 2.1: 21 = 81 video frames; --tiny 4)")
    ap.add_argument("--height", type=int, help="video height in pixels (default 480, --tiny 32)")
    ap.add_argument("--width", type=int, help="video width in pixels (default 832, --tiny 32)")
    ap.add_argument("--max-tokens", type=int, help="umT5 context length (WanPipeline: 512; --tiny 24)")
    ap.add_argument("--shift", type=float, help="flow shift of the sigma grid (Wan: 3.0 at 480p, 5.0 at 720p)")
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--golden", action="store_true", help="also write golden I/O pairs for the Rust tests")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)  # noqa: E731

    if args.tiny:
        tok = common.tiny_t5_tokenizer(out("tokenizer.json"))
        max_tokens = args.max_tokens or TINY_TOKENS
        f = args.frames or TINY_FRAMES
        transformer, text, vae = tiny_models(args.seed, len(tok.get_vocab()), max_tokens, f)
        height, width = args.height or 32, args.width or 32
        name, shift = "wan-tiny", args.shift or 3.0
        description = "Wan 2.1 reduced config with random weights (export and parity tests only)"
    else:
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import AutoTokenizer, UMT5EncoderModel
        ck = args.checkpoint
        transformer = WanTransformer3DModel.from_pretrained(ck, subfolder="transformer").eval()
        text = UMT5EncoderModel.from_pretrained(ck, subfolder="text_encoder").eval()
        vae = AutoencoderKLWan.from_pretrained(ck, subfolder="vae").eval()
        tok = AutoTokenizer.from_pretrained(ck, subfolder="tokenizer")
        tok.backend_tokenizer.save(out("tokenizer.json"))
        max_tokens = args.max_tokens or 512
        f = args.frames or 21
        height, width = args.height or 480, args.width or 832
        name = os.path.basename(os.path.normpath(args.out))
        description = f"{os.path.basename(os.path.normpath(ck))} exported by tools/export/wan.py"
        shift = args.shift or (5.0 if height * width >= 720 * 1280 else 3.0)
    pad_id = tok.pad_token_id

    down = 2 ** sum(1 for _ in vae.config.dim_mult[1:])
    zc, zh, zw = vae.config.z_dim, height // down, width // down
    d = text.config.d_model
    g = torch.Generator().manual_seed(args.seed + 1)
    prompts = ["a red panda eating bamboo, 4k", ""]
    ids = torch.tensor([tok(p, padding="max_length", max_length=max_tokens, truncation=True)["input_ids"]
                        for p in prompts])
    text_wrapper, denoiser = common.MaskedT5Text(text, pad_id), PerFrameWan(transformer)
    x = torch.randn(2, f, zc, zh, zw, generator=g)
    t = torch.stack([torch.linspace(999, 1, f), torch.linspace(500, 20, f)])  # flow timesteps are not integers
    with torch.no_grad():
        ctx = text_wrapper(ids)[:, None].expand(2, f, max_tokens, d).contiguous()
    errs = check_against_diffusers(transformer, denoiser, x, t, ctx)
    print(f"per-frame wrapper vs WanTransformer3DModel: max abs {errs[0]:.2e} (one timestep per clip), "
          f"{errs[1]:.2e} (per-token timesteps)", flush=True)

    shapes = state_shapes(vae, (zh, zw))
    used = [s for s in shapes if s is not None]
    states = [f"state_{i}" for i in range(len(used))]
    new_states = [f"next_state_{i}" for i in range(len(used))]
    z = torch.randn(2, zc, zh, zw, generator=g)
    state_in = [torch.randn((2,) + s, generator=g) for s in used]
    graphs = [
        ("text_encoder", text_wrapper, (ids,), ["ids"], "context"),
        ("unet", denoiser, (x, t, ctx), ["latents", "timesteps", "context"], "velocity"),
        ("decoder_first", WanDecoderFirst(vae, shapes), (z,), ["latents"], ["rgb"] + new_states),
        ("decoder", WanDecoderNext(vae, shapes), (z, *state_in), ["latents"] + states, ["rgb"] + new_states),
    ]
    report = common.export_graphs(graphs, args.out, args.golden)
    video = torch.randn(1, zc, 3, zh, zw, generator=g)
    err = check_decoder_chain(vae, out("decoder_first.onnx"), out("decoder.onnx"), shapes, video)
    report["decoder_chain_vs_vae_decode"] = err
    print(f"decoder_first + decoder chained in onnxruntime vs AutoencoderKLWan.decode (3 latent frames): "
          f"max abs {err:.2e}", flush=True)
    state_bytes = sum(int(np.prod(s)) for s in used) * 4
    print(f"decoder state: {len(used)} tensors, {state_bytes} bytes per video (f32)")

    manifest = {
        "format": "fifo-diffusion-model/1",
        "name": name,
        "description": description,
        "family": "wan2.1-t2v",
        "frames": f,
        "fps": args.fps,
        "image": {"height": height, "width": width, "channels": 3, "range": [-1.0, 1.0]},
        "latent": {"channels": zc, "height": zh, "width": zw, "scale_factor": 1.0},
        "schedule": {"train_timesteps": 1000, "process": {"kind": "rectified_flow", "shift": shift}},
        "defaults": {"guidance": 5.0, "partitions": 4, "lookahead": True, "eta": 0.0, "init": "noise"},
        "text": {"tokenizer": "huggingface", "file": "tokenizer.json", "max_tokens": max_tokens, "dim": d,
                 "pad_id": pad_id},
        "graphs": {"text_encoder": {"file": "text_encoder.onnx", "input": "ids", "output": "context"},
                   "unet": {"file": "unet.onnx", "latents": "latents", "timesteps": "timesteps",
                            "context": "context", "output": "velocity"},
                   "decoder": {"file": "decoder.onnx", "input": "latents", "output": "rgb",
                               "first": "decoder_first.onnx", "state": states, "next_state": new_states,
                               "frames_per_latent": 4, "first_frames": 1}},
        "parameter_bytes_f32": {"unet": common.parameter_bytes(transformer),
                                "text_encoder": common.parameter_bytes(text), "vae": common.parameter_bytes(vae)},
        "decoder_state_bytes_per_video": state_bytes,
        "export_check_max_abs_error": report,
    }
    common.write_manifest(args.out, manifest)
    print(f"wrote {out('model.json')}")


if __name__ == "__main__":
    main()
