"""Export ModelScope T2V / zeroscope v2 (diffusers `UNet3DConditionModel`, the FIFO-Diffusion
paper's baseline family) as a fifo-diffusion model package, with one timestep per frame.

FIFO denoises a window whose frames sit at different noise levels. diffusers' UNet3D embeds one
timestep per clip and repeats it over the frames; `PerFrameUNet3D` below embeds one timestep per
frame instead (the ResBlocks already take one embedding per batch*frame row, so nothing else
changes). The patch lives in this wrapper, not in diffusers.

  # a local diffusers checkpoint folder (unet/, text_encoder/, tokenizer/, vae/, scheduler/):
  python tools/export/modelscope.py --checkpoint ~/zeroscope_v2_576w --out models/zeroscope-v2-576w
  # the reduced config with random weights that CI tests (same code paths, tiny widths):
  python tools/export/modelscope.py --tiny --out tests/fixtures/models/modelscope-tiny

Then `fifo quantize --model DIR --weights int8` (and f16) adds the quantized UNets.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class PerFrameUNet3D(torch.nn.Module):
    """`UNet3DConditionModel.forward` with timesteps [B, F] (and one context per frame) in the
    package's frame-major layout; the rest of the forward pass is diffusers' own."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, latents, timesteps, context):
        u = self.unet
        b, f = latents.shape[0], latents.shape[1]
        # Rows are (batch, frame) pairs in the order diffusers' permute+reshape gives them.
        emb = u.time_embedding(u.time_proj(timesteps.reshape(b * f)).to(latents.dtype))
        context = context.reshape(b * f, context.shape[2], context.shape[3])
        sample = latents.reshape(b * f, latents.shape[2], latents.shape[3], latents.shape[4])

        sample = u.conv_in(sample)
        sample = u.transformer_in(sample, num_frames=f, return_dict=False)[0]
        skips = (sample,)
        for block in u.down_blocks:
            if getattr(block, "has_cross_attention", False):
                sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=context,
                                    num_frames=f)
            else:
                sample, res = block(hidden_states=sample, temb=emb, num_frames=f)
            skips += res
        if u.mid_block is not None:
            sample = u.mid_block(sample, emb, encoder_hidden_states=context, num_frames=f)
        for i, block in enumerate(u.up_blocks):
            res = skips[-len(block.resnets):]
            skips = skips[:-len(block.resnets)]
            # Odd latent sizes need the skip's size to undo a rounding downsample.
            size = skips[-1].shape[2:] if i < len(u.up_blocks) - 1 else None
            if getattr(block, "has_cross_attention", False):
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                               encoder_hidden_states=context, upsample_size=size, num_frames=f)
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                               upsample_size=size, num_frames=f)
        if u.conv_norm_out is not None:
            sample = u.conv_act(u.conv_norm_out(sample))
        sample = u.conv_out(sample)
        return sample.reshape(b, f, sample.shape[1], sample.shape[2], sample.shape[3])


class ClipText(torch.nn.Module):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def forward(self, ids):
        return self.text(input_ids=ids).last_hidden_state


def tiny_models(seed):
    """Reduced configs with the real configs' block types and code paths."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=24, attention_head_dim=8)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=TINY_VOCAB, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=TINY_TOKENS, hidden_act="gelu",
        projection_dim=24, bos_token_id=TINY_BOS, eos_token_id=TINY_EOS, pad_token_id=0))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=16)
    # Random init leaves GroupNorm/LayerNorm at identity and some projections at zero (diffusers
    # zero-inits proj_out of the temporal layers): perturb every parameter so each path matters.
    with torch.no_grad():
        for m in (unet, text, vae):
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return unet.eval(), text.eval(), vae.eval()


TINY_TOKENS = 16
TINY_VOCAB = 0  # set from the tokenizer in main()
TINY_BOS = TINY_EOS = 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="local diffusers folder (unet/, text_encoder/, tokenizer/, vae/)")
    src.add_argument("--tiny", action="store_true", help="reduced config with random weights (tests)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, help="window f the model was trained with (ModelScope T2V 16, "
                    "zeroscope v2 576w 24; default 16, --tiny 4)")
    ap.add_argument("--height", type=int, help="video height in pixels (default 320, --tiny 32)")
    ap.add_argument("--width", type=int, help="video width in pixels (default 576, --tiny 32)")
    ap.add_argument("--fps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-json", help="--tiny: the tokenizer.json to ship (default: a reduced CLIP BPE)")
    ap.add_argument("--golden", action="store_true", help="also write golden I/O pairs for the Rust tests")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)
    global TINY_VOCAB, TINY_BOS, TINY_EOS

    from transformers import PreTrainedTokenizerFast
    if args.tiny:
        import clip_bpe
        tok_path = args.tokenizer_json or clip_bpe.write_tokenizer_json(out("tokenizer.json"), 2000, TINY_TOKENS)
        if tok_path != out("tokenizer.json"):
            import shutil
            shutil.copy(tok_path, out("tokenizer.json"))
        tok = PreTrainedTokenizerFast(tokenizer_file=out("tokenizer.json"), pad_token="<|endoftext|>")
        TINY_VOCAB = len(tok.get_vocab())
        TINY_BOS, TINY_EOS = tok.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
        unet, text, vae = tiny_models(args.seed)
        f, height, width = args.frames or 4, args.height or 32, args.width or 32
        max_tokens, pad_id, name = TINY_TOKENS, TINY_EOS, "modelscope-tiny"
        description = "ModelScope T2V reduced config with random weights (export and parity tests only)"
        scale_factor, betas = 0.18215, {"kind": "scaled_linear", "start": 0.00085, "end": 0.012}
    else:
        from diffusers import AutoencoderKL, UNet3DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizerFast
        ck = args.checkpoint
        unet = UNet3DConditionModel.from_pretrained(ck, subfolder="unet").eval()
        text = CLIPTextModel.from_pretrained(ck, subfolder="text_encoder").eval()
        vae = AutoencoderKL.from_pretrained(ck, subfolder="vae").eval()
        tok = CLIPTokenizerFast.from_pretrained(ck, subfolder="tokenizer")
        tok.backend_tokenizer.save(out("tokenizer.json"))
        with open(os.path.join(ck, "scheduler", "scheduler_config.json")) as fj:
            sc = json.load(fj)
        assert sc.get("prediction_type", "epsilon") == "epsilon", sc
        betas = {"kind": sc.get("beta_schedule", "scaled_linear"), "start": sc["beta_start"], "end": sc["beta_end"]}
        f, height, width = args.frames or 16, args.height or 320, args.width or 576
        max_tokens, pad_id = tok.model_max_length, tok.pad_token_id
        name = os.path.basename(os.path.normpath(args.out))
        description = f"{os.path.basename(os.path.normpath(ck))} exported by tools/export/modelscope.py"
        scale_factor = float(vae.config.scaling_factor)

    down = 2 ** (len(vae.config.block_out_channels) - 1)
    zc, zh, zw = vae.config.latent_channels, height // down, width // down
    d = text.config.hidden_size
    g = torch.Generator().manual_seed(args.seed + 1)
    prompts = ["a red panda eating bamboo, 4k", ""]
    ids = torch.tensor([tok(p, padding="max_length", max_length=max_tokens, truncation=True)["input_ids"]
                        for p in prompts])
    x = torch.randn(2, f, zc, zh, zw, generator=g)
    t = torch.stack([torch.linspace(999, 1, f), torch.linspace(500, 20, f)]).round()
    ctx = torch.randn(2, f, max_tokens, d, generator=g)
    z = torch.randn(2, zc, zh, zw, generator=g)
    rgb = torch.rand(2, 3, height, width, generator=g) * 2 - 1
    graphs = [
        ("text_encoder", ClipText(text), (ids,), ["ids"], "context"),
        ("unet", PerFrameUNet3D(unet), (x, t, ctx), ["latents", "timesteps", "context"], "epsilon"),
        ("decoder", common.VaeDecoder(vae), (z,), ["latents"], "rgb"),
        ("encoder", common.VaeEncoder(vae), (rgb,), ["rgb"], "latents"),
    ]
    report = common.export_graphs(graphs, args.out, args.golden)

    manifest = {
        "format": "fifo-diffusion-model/1",
        "name": name,
        "description": description,
        "family": "modelscope-t2v",
        "frames": f,
        "fps": args.fps,
        "image": {"height": height, "width": width, "channels": 3, "range": [-1.0, 1.0]},
        "latent": {"channels": zc, "height": zh, "width": zw, "scale_factor": scale_factor},
        "schedule": {"train_timesteps": 1000, "betas": betas, "prediction": "epsilon",
                     "spacing": {"kind": "official_linspace"}, "final_alpha": "first_train_step"},
        "defaults": {"guidance": 9.0, "partitions": 4, "lookahead": True, "eta": 1.0, "init": "clip"},
        "text": {"tokenizer": "huggingface", "file": "tokenizer.json", "max_tokens": max_tokens, "dim": d,
                 "pad_id": pad_id},
        "graphs": {"text_encoder": {"file": "text_encoder.onnx", "input": "ids", "output": "context"},
                   "unet": {"file": "unet.onnx", "latents": "latents", "timesteps": "timesteps",
                            "context": "context", "output": "epsilon"},
                   "decoder": {"file": "decoder.onnx", "input": "latents", "output": "rgb"},
                   "encoder": {"file": "encoder.onnx", "input": "rgb", "output": "latents"}},
        "parameter_bytes_f32": {"unet": common.parameter_bytes(unet), "text_encoder": common.parameter_bytes(text),
                                "vae": common.parameter_bytes(vae)},
        "export_check_max_abs_error": report,
    }
    common.write_manifest(args.out, manifest)
    print(f"wrote {out('model.json')}")


if __name__ == "__main__":
    main()
