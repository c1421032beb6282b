"""Parameter bytes of the real model families at full size, per precision, built on PyTorch's
meta device (no memory, no weights, no download): what a user's download and the device's weight
memory will be, and which single tensors exceed WebGPU's default storage-binding limit.

  python tools/export/sizes.py            # markdown table for the README

int8 and f16 count what `fifo quantize` converts: Conv / Linear (MatMul, Gemm) weights become int8
with one f32 scale per output channel, or f16; embeddings, norms and biases stay f32.
"""
import torch

# WebGPU's default maxStorageBufferBindingSize (128 MiB); adapters may raise it on request.
BINDING_LIMIT = 128 << 20


def families():
    from diffusers import (AutoencoderKL, AutoencoderKLWan, LatteTransformer3DModel, UNet3DConditionModel,
                           WanTransformer3DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel
    sd_vae = lambda: AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                   block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4)
    t5_xxl = lambda cls, cfg, vocab: cls(cfg(vocab_size=vocab, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                             num_heads=64, feed_forward_proj="gated-gelu"))
    yield "ModelScope T2V / zeroscope v2", [
        ("UNet3D (denoiser)", lambda: UNet3DConditionModel()),
        ("OpenCLIP ViT-H text encoder", lambda: CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
            num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu"))),
        ("SD VAE", sd_vae)]
    yield "Latte-1 (T2V)", [
        ("Latte transformer (denoiser)", lambda: LatteTransformer3DModel(
            num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
            cross_attention_dim=1152, sample_size=64, patch_size=2, caption_channels=4096,
            norm_type="ada_norm_single", video_length=16, activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000, norm_elementwise_affine=False, norm_eps=1e-6)),
        ("T5 v1.1 XXL encoder", lambda: t5_xxl(T5EncoderModel, T5Config, 32128)),
        ("SD VAE", sd_vae)]
    yield "Wan 2.1 T2V 1.3B", [
        ("Wan transformer (denoiser)", lambda: WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6)),
        ("umT5 XXL encoder", lambda: t5_xxl(UMT5EncoderModel, UMT5Config, 256384)),
        ("Wan VAE (causal 3-D)", lambda: AutoencoderKLWan(base_dim=96, z_dim=16))]


def sizes(module):
    """(params, f32 bytes, f16 bytes, int8 bytes, largest tensor bytes at f32)."""
    params = f16 = i8 = 0
    largest = 0
    quantized = set()
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            quantized.add(id(m.weight))
    for p in module.parameters():
        n = p.numel()
        params += n
        largest = max(largest, 4 * n)
        if id(p) in quantized:
            f16 += 2 * n
            i8 += n + 4 * p.shape[0]
        else:
            f16 += 4 * n
            i8 += 4 * n
    return params, 4 * params, f16, i8, largest


def wan_decoder_state(height=480, width=832):
    """The causal Wan VAE decoder's caches (what `tools/export/wan.py` makes explicit state) at a
    video size: (tensors, f32 bytes, largest tensor bytes), on the meta device."""
    from diffusers import AutoencoderKLWan
    with torch.device("meta"):
        vae = AutoencoderKLWan(base_dim=96, z_dim=16)
        x = vae.post_quant_conv(torch.zeros(1, 16, 2, height // 8, width // 8))
    vae.clear_cache()
    with torch.no_grad():
        for i in range(2):
            vae._conv_idx = [0]
            vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0)
    sizes = [4 * t.numel() for t in vae._feat_map if t is not None]
    return len(sizes), sum(sizes), max(sizes)


def main():
    gib = lambda b: f"{b / 2**30:.2f}"
    print("| model | component | parameters | f32 GiB | f16 GiB | int8 GiB | largest tensor (f32) |")
    print("|---|---|---|---|---|---|---|")
    for family, parts in families():
        total = [0] * 4
        for name, make in parts:
            with torch.device("meta"):
                module = make()
            p, b32, b16, b8, largest = sizes(module)
            total = [t + v for t, v in zip(total, (p, b32, b16, b8))]
            over = " (over 128 MiB)" if largest > BINDING_LIMIT else ""
            print(f"| {family} | {name} | {p / 1e6:.0f} M | {gib(b32)} | {gib(b16)} | {gib(b8)} | "
                  f"{largest / 2**20:.0f} MiB{over} |")
        print(f"| {family} | **total** | {total[0] / 1e6:.0f} M | {gib(total[1])} | {gib(total[2])} | {gib(total[3])} | |")
    n, total, largest = wan_decoder_state()
    print(f"\nWan VAE decoder state at 480x832 (carried from latent to latent): {n} tensors, "
          f"{gib(total)} GiB f32, largest {largest / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
