"""Export Latte (diffusers `LatteTransformer3DModel`, the model of FIFO-Diffusion's UCF-101 and
Latte results) as a fifo-diffusion model package, with one timestep per frame.

Latte conditions every block on the timestep through adaLN-single: one shift/scale/gate vector
per clip, repeated over the frames (spatial blocks) and over the patches (temporal blocks).
FIFO's window holds frames at different noise levels, so `PerFrameLatte` embeds one timestep per
frame: the spatial blocks take it as their per-(batch, frame) row, the temporal blocks, whose
tokens are the frames of one patch, modulate each token with its own frame's vectors (their
forward pass is rewritten here for that; diffusers is not patched), and the final layer modulates
each frame with its own embedding. With equal timesteps it is diffusers' forward pass exactly (the
export checks this against `LatteTransformer3DModel` itself).

Text: the T5 encoder runs with the prompt's attention mask and zeroes the padding positions; the
denoiser turns all-zero context rows into a cross-attention mask. That is LattePipeline's
`mask_feature=True` (the embeddings cut to the prompt's tokens) at a fixed context length. One
difference: the pipeline cuts the negative prompt's embeddings to the positive prompt's length
(its padding positions included); here each prompt is masked to its own tokens.
Latte learns the variance (8 output channels); the package's denoiser returns the epsilon half.

  # a local diffusers checkpoint folder (transformer/, text_encoder/, tokenizer/, vae/, scheduler/):
  python tools/export/latte.py --checkpoint ~/Latte-1 --out models/latte-1
  # the reduced config with random weights that CI tests (same code paths, tiny widths):
  python tools/export/latte.py --tiny --golden --out tests/fixtures/packages/latte-tiny

The T5-XXL text encoder is 19 GB in f32: `fifo quantize --weights int8 DIR/text_encoder.onnx
DIR/text_encoder.int8.onnx` and pointing `graphs.text_encoder.file` at it cuts it to a quarter.
`fifo quantize` on the denoiser adds the int8 and f16 variants (docs/model-package.md).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# Cross-attention bias of a masked key: exp(-10000) underflows to 0, as cutting the key would.
MASKED = -10000.0


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def temporal_block(block, x, t6):
    """diffusers' BasicTransformerBlock forward (norm_type "ada_norm_single", no cross-attention)
    with one modulation per token: x [N, S, D], t6 [N, S, 6 D] (the block itself takes one per
    row, [N, 6 D])."""
    assert block.attn2 is None and block.pos_embed is None and block.norm_type == "ada_norm_single"
    n, s, d = x.shape
    mod = block.scale_shift_table[None, None] + t6.reshape(n, s, 6, d)
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.unbind(2)
    x = x + gate_msa * block.attn1(modulate(block.norm1(x), shift_msa, scale_msa))
    return x + gate_mlp * block.ff(modulate(block.norm2(x), shift_mlp, scale_mlp))


class PerFrameLatte(torch.nn.Module):
    """`LatteTransformer3DModel.forward` with timesteps [B, F] and one context per frame, in the
    package's frame-major layout; returns the epsilon channels."""

    def __init__(self, transformer, latent_channels):
        super().__init__()
        self.m = transformer
        self.latent_channels = latent_channels

    def forward(self, latents, timesteps, context):
        m = self.m
        b, f, c, h, w = latents.shape
        p = m.config.patch_size
        x = m.pos_embed(latents.reshape(b * f, c, h, w))  # [B F, P, D], positions added
        patches, d = x.shape[1], x.shape[2]
        t6, t_emb = m.adaln_single(timesteps.reshape(b * f), batch_size=b * f, hidden_dtype=x.dtype)
        # Each temporal token (a patch of one frame) gets its frame's modulation.
        t6_temporal = t6.reshape(b, 1, f, -1).expand(b, patches, f, t6.shape[-1]).reshape(b * patches, f, -1)
        tokens, dim = context.shape[2], context.shape[3]
        context = context.reshape(b * f, tokens, dim)
        bias = (context.abs().amax(-1) == 0).to(x.dtype).unsqueeze(1) * MASKED  # [B F, 1, T]
        context = m.caption_projection(context)
        for i, (spatial, temporal) in enumerate(zip(m.transformer_blocks, m.temporal_transformer_blocks)):
            x = spatial(x, None, context, bias, t6, None, None)
            x = x.reshape(b, f, patches, d).permute(0, 2, 1, 3).reshape(b * patches, f, d)
            if i == 0 and f > 1:
                x = x + m.temp_pos_embed.to(x.dtype)
            x = temporal_block(temporal, x, t6_temporal)
            x = x.reshape(b, patches, f, d).permute(0, 2, 1, 3).reshape(b * f, patches, d)
        shift, scale = (m.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)
        x = m.proj_out(modulate(m.norm_out(x), shift, scale))
        oc = m.out_channels
        x = x.reshape(b * f, h // p, w // p, p, p, oc).permute(0, 5, 1, 3, 2, 4).reshape(b * f, oc, h, w)
        return x[:, : self.latent_channels].reshape(b, f, self.latent_channels, h, w)


def check_against_diffusers(transformer, wrapper, latents, t, ctx, keep_tokens):
    """With one timestep per clip and the first row's context (its first `keep_tokens` tokens
    real), the wrapper must be diffusers' forward pass on the cut context (its epsilon half)."""
    b, f, c = latents.shape[:3]
    ts = t[:, :1].expand(b, f).contiguous()
    ctx = ctx[:1].expand(ctx.shape).contiguous()
    with torch.no_grad():
        got = wrapper(latents, ts, ctx)
        want = transformer(latents.permute(0, 2, 1, 3, 4), timestep=t[:, 0], encoder_hidden_states=ctx[:, 0, :keep_tokens],
                           return_dict=False)[0][:, :c].permute(0, 2, 1, 3, 4)
    err = float((got - want).abs().max())
    assert err < 1e-4 * max(1.0, float(want.abs().max())), f"per-frame wrapper != diffusers: {err}"
    return err


def tiny_models(seed, vocab, tokens):
    """Reduced configs with Latte-1's block types, norms and activations."""
    from diffusers import AutoencoderKL, LatteTransformer3DModel
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(seed)
    text = T5EncoderModel(T5Config(
        vocab_size=vocab, d_model=24, d_kv=8, d_ff=48, num_layers=2, num_heads=3,
        relative_attention_num_buckets=8, relative_attention_max_distance=tokens, feed_forward_proj="gated-gelu",
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, is_encoder_decoder=False))
    transformer = LatteTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=16, attention_bias=True, sample_size=16, patch_size=2, activation_fn="gelu-approximate",
        norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=24,
        video_length=TINY_FRAMES)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=32)
    # Random init leaves some projections at zero and norms at identity: perturb every parameter
    # so each path matters.
    with torch.no_grad():
        for module in (transformer, text, vae):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return transformer.eval(), text.eval(), vae.eval()


TINY_FRAMES = 4
TINY_TOKENS = 24


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="local diffusers folder (transformer/, text_encoder/, tokenizer/, vae/)")
    src.add_argument("--tiny", action="store_true", help="reduced config with random weights (tests)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--height", type=int, help="video height in pixels (default 512, --tiny 32)")
    ap.add_argument("--width", type=int, help="video width in pixels (default 512, --tiny 32)")
    ap.add_argument("--max-tokens", type=int, help="T5 context length (LattePipeline: 120; --tiny 24)")
    ap.add_argument("--fps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--golden", action="store_true", help="also write golden I/O pairs for the Rust tests")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)

    if args.tiny:
        tok = common.tiny_t5_tokenizer(out("tokenizer.json"))
        max_tokens = args.max_tokens or TINY_TOKENS
        transformer, text, vae = tiny_models(args.seed, len(tok.get_vocab()), max_tokens)
        height, width = args.height or 32, args.width or 32
        name = "latte-tiny"
        description = "Latte reduced config with random weights (export and parity tests only)"
        betas, scale_factor = {"kind": "linear", "start": 0.0001, "end": 0.02}, 0.18215
    else:
        from diffusers import AutoencoderKL, LatteTransformer3DModel
        from transformers import T5EncoderModel, T5TokenizerFast
        ck = args.checkpoint
        transformer = LatteTransformer3DModel.from_pretrained(ck, subfolder="transformer").eval()
        text = T5EncoderModel.from_pretrained(ck, subfolder="text_encoder").eval()
        vae = AutoencoderKL.from_pretrained(ck, subfolder="vae").eval()
        tok = T5TokenizerFast.from_pretrained(ck, subfolder="tokenizer")
        tok.backend_tokenizer.save(out("tokenizer.json"))
        with open(os.path.join(ck, "scheduler", "scheduler_config.json")) as fj:
            sc = json.load(fj)
        assert sc.get("prediction_type", "epsilon") == "epsilon", sc
        betas = {"kind": sc.get("beta_schedule", "linear"), "start": sc["beta_start"], "end": sc["beta_end"]}
        max_tokens = args.max_tokens or 120
        height, width = args.height or 512, args.width or 512
        name = os.path.basename(os.path.normpath(args.out))
        description = f"{os.path.basename(os.path.normpath(ck))} exported by tools/export/latte.py"
        scale_factor = float(vae.config.scaling_factor)
    pad_id = tok.pad_token_id
    f = transformer.config.video_length  # the temporal position embedding's length

    down = 2 ** (len(vae.config.block_out_channels) - 1)
    zc, zh, zw = vae.config.latent_channels, height // down, width // down
    assert transformer.config.in_channels == zc, (transformer.config.in_channels, zc)
    d = text.config.d_model
    g = torch.Generator().manual_seed(args.seed + 1)
    prompts = ["a red panda eating bamboo, 4k", ""]
    ids = torch.tensor([tok(p, padding="max_length", max_length=max_tokens, truncation=True)["input_ids"]
                        for p in prompts])
    text_wrapper, denoiser = common.MaskedT5Text(text, pad_id), PerFrameLatte(transformer, zc)
    x = torch.randn(2, f, zc, zh, zw, generator=g)
    t = torch.stack([torch.linspace(999, 1, f), torch.linspace(500, 20, f)]).round()
    with torch.no_grad():
        ctx = text_wrapper(ids)[:, None].expand(2, f, max_tokens, d).contiguous()
    keep = int((ids[0] != pad_id).sum())
    err = check_against_diffusers(transformer, denoiser, x, t, ctx, keep)
    print(f"per-frame wrapper vs LatteTransformer3DModel (one timestep per clip): max abs {err:.2e}", flush=True)
    z = torch.randn(2, zc, zh, zw, generator=g)
    rgb = torch.rand(2, 3, height, width, generator=g) * 2 - 1
    graphs = [
        ("text_encoder", text_wrapper, (ids,), ["ids"], "context"),
        ("unet", denoiser, (x, t, ctx), ["latents", "timesteps", "context"], "epsilon"),
        ("decoder", common.VaeDecoder(vae), (z,), ["latents"], "rgb"),
        ("encoder", common.VaeEncoder(vae), (rgb,), ["rgb"], "latents"),
    ]
    report = common.export_graphs(graphs, args.out, args.golden)

    manifest = {
        "format": "fifo-diffusion-model/1",
        "name": name,
        "description": description,
        "family": "latte",
        "frames": f,
        "fps": args.fps,
        "image": {"height": height, "width": width, "channels": 3, "range": [-1.0, 1.0]},
        "latent": {"channels": zc, "height": zh, "width": zw, "scale_factor": scale_factor},
        # The training betas are the checkpoint's; the DDIM grid is the official FIFO one.
        "schedule": {"train_timesteps": 1000, "betas": betas, "prediction": "epsilon",
                     "spacing": {"kind": "official_linspace"}, "final_alpha": "first_train_step"},
        # init "noise": the official code's Latte path (a pure-noise queue warmed up diagonally).
        "defaults": {"guidance": 7.5, "partitions": 4, "lookahead": True, "eta": 1.0, "init": "noise"},
        "text": {"tokenizer": "huggingface", "file": "tokenizer.json", "max_tokens": max_tokens, "dim": d,
                 "pad_id": pad_id},
        "graphs": {"text_encoder": {"file": "text_encoder.onnx", "input": "ids", "output": "context"},
                   "unet": {"file": "unet.onnx", "latents": "latents", "timesteps": "timesteps",
                            "context": "context", "output": "epsilon"},
                   "decoder": {"file": "decoder.onnx", "input": "latents", "output": "rgb"},
                   "encoder": {"file": "encoder.onnx", "input": "rgb", "output": "latents"}},
        "parameter_bytes_f32": {"unet": common.parameter_bytes(transformer),
                                "text_encoder": common.parameter_bytes(text), "vae": common.parameter_bytes(vae)},
        "export_check_max_abs_error": report,
    }
    common.write_manifest(args.out, manifest)
    print(f"wrote {out('model.json')}")


if __name__ == "__main__":
    main()
