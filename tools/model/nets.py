"""The model family: a per-frame autoencoder, a word-level text encoder and a video UNet.

Built like VideoCrafter / zeroscope, only small. Export-friendly on purpose: plain Conv,
Linear/MatMul, GroupNorm, LayerNorm, SiLU, Softmax, reshape/transpose/concat, nearest
upsampling and sin/cos; attention is written out as matmul-softmax-matmul; all shapes are
static once the input shapes are.

Tensor layouts (the ONNX interface follows them):
  frames  [N, 3, 64, 64] in [-1, 1]          (the autoencoder is per frame)
  latents [B, F, 4, 16, 16]                   (the UNet; frames folded into the batch inside)
  t       [B, F] float, 0..999                (one timestep per frame)
  context [B, F, T, D]                        (per-frame text context, T tokens of width D)
"""
import math
import string

import torch
import torch.nn as nn
import torch.nn.functional as F_

import world

GROUPS = 8


def _zero(module):
    """Zero-initialise a residual branch's last layer so every block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def attention(q, k, v, heads):
    """Multi-head attention, written out (no fused kernels): q [N, Lq, C], k/v [N, Lk, C]."""
    n, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads
    q = q.reshape(n, lq, heads, d).transpose(1, 2)
    k = k.reshape(n, lk, heads, d).transpose(1, 2)
    v = v.reshape(n, lk, heads, d).transpose(1, 2)
    w = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * (d ** -0.5), dim=-1)
    return torch.matmul(w, v).transpose(1, 2).reshape(n, lq, c)


# ------------------------------------------------------------------------------ text

class Tokenizer:
    """Word-level tokens over the grammar's vocabulary. Id 0 pads; id 1 marks the empty prompt
    (classifier-free guidance's unconditional input)."""

    PAD, EMPTY = "<pad>", "<empty>"

    def __init__(self, max_len=12):
        self.max_len = max_len
        self.words = [self.PAD, self.EMPTY] + world.vocabulary()
        self.index = {w: i for i, w in enumerate(self.words)}
        self.word_punctuation = {c for w in self.words[2:] for c in w if c in string.punctuation}

    def __call__(self, prompts):
        """List of prompt strings -> int64 [len, max_len]."""
        out = torch.zeros(len(prompts), self.max_len, dtype=torch.long)
        for i, p in enumerate(prompts):
            # As the runtime's `words` tokenizer: lowercase, whitespace and punctuation separate.
            words = "".join(" " if c in string.punctuation and c not in self.word_punctuation else c
                            for c in p.lower()).split()
            if not words and p.strip():
                raise ValueError(f"the prompt {p!r} has no words, only punctuation")
            if not words:
                words = [self.EMPTY]
            if len(words) > self.max_len:
                raise ValueError(f"prompt longer than {self.max_len} words: {p!r}")
            for j, w in enumerate(words):
                if w not in self.index:
                    raise ValueError(f"unknown word {w!r} in {p!r}; the vocabulary is: "
                                     + " ".join(self.words[2:]))
                out[i, j] = self.index[w]
        return out


class TextLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        x = x + self.out(attention(q, k, v, self.heads))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Token ids [B, T] -> per-token embeddings [B, T, d] (a small pre-norm transformer)."""

    def __init__(self, vocab_size, max_len=12, d=128, layers=2, heads=4):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        self.pos = nn.Parameter(torch.randn(max_len, d) * 0.02)
        self.layers = nn.ModuleList(TextLayer(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, ids):
        x = self.embed(ids) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


# ------------------------------------------------------------------------------ autoencoder

class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with an optional per-sample scale/shift from an embedding."""

    def __init__(self, cin, cout, emb_dim=0):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(GROUPS, cout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.emb = nn.Linear(emb_dim, 2 * cout) if emb_dim else None
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb=None):
        h = self.conv1(F_.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.emb is not None:
            scale, shift = self.emb(F_.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(F_.silu(h))
        return self.skip(x) + h


class Upsample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
        return self.conv(F_.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """[N, 3, 64, 64] -> [N, 4, 16, 16]. Light: it runs on every training frame."""

    def __init__(self, ch=(16, 32, 64), zc=4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, ch[0], 3, padding=1), nn.SiLU(),
            nn.Conv2d(ch[0], ch[1], 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(ch[1], ch[1], 3, padding=1), nn.SiLU(),
            nn.Conv2d(ch[1], ch[2], 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(ch[2], ch[2], 3, padding=1), nn.SiLU(),
            nn.Conv2d(ch[2], zc, 3, padding=1))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """[N, 4, 16, 16] -> [N, 3, 64, 64]. Runs once per emitted frame at run time."""

    def __init__(self, ch=(64, 48, 16), zc=4):
        super().__init__()
        self.conv_in = nn.Conv2d(zc, ch[0], 3, padding=1)
        self.res0 = ResBlock(ch[0], ch[0])
        self.up1 = Upsample(ch[0], ch[1])
        self.res1 = ResBlock(ch[1], ch[1])
        self.up2 = Upsample(ch[1], ch[2])
        self.res2 = ResBlock(ch[2], ch[2])
        self.norm = nn.GroupNorm(GROUPS, ch[2])
        self.conv_out = nn.Conv2d(ch[2], 3, 3, padding=1)

    def forward(self, z):
        h = self.res0(self.conv_in(z))
        h = self.res1(self.up1(h))
        h = self.res2(self.up2(h))
        return self.conv_out(F_.silu(self.norm(h)))


class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = Encoder(), Decoder()
        self.register_buffer("scale", torch.tensor(1.0))  # latent scale factor, 1/std of latents

    def encode(self, x):
        """Frames -> scaled latents (unit std), the diffusion model's data."""
        return self.encoder(x) * self.scale

    def decode(self, z):
        """Scaled latents -> frames."""
        return self.decoder(z / self.scale)


# ------------------------------------------------------------------------------ video UNet

class SpatialTransformer(nn.Module):
    """Per-frame: optional spatial self-attention, cross-attention to that frame's text, MLP."""

    def __init__(self, c, ctx_dim, self_attn, head_dim=32):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm_in = nn.GroupNorm(GROUPS, c)
        self.proj_in = nn.Linear(c, c)
        self.self_attn = self_attn
        if self_attn:
            self.norm1 = nn.LayerNorm(c)
            self.qkv = nn.Linear(c, 3 * c)
            self.out1 = nn.Linear(c, c)
        self.norm2 = nn.LayerNorm(c)
        self.q = nn.Linear(c, c)
        self.kv = nn.Linear(ctx_dim, 2 * c)
        self.out2 = nn.Linear(c, c)
        self.norm3 = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.SiLU(), nn.Linear(2 * c, c))
        self.proj_out = _zero(nn.Linear(c, c))

    def forward(self, x, ctx):
        n, c, h, w = x.shape
        t = self.norm_in(x).reshape(n, c, h * w).transpose(1, 2)
        t = self.proj_in(t)
        if self.self_attn:
            q, k, v = self.qkv(self.norm1(t)).chunk(3, dim=-1)
            t = t + self.out1(attention(q, k, v, self.heads))
        k, v = self.kv(ctx).chunk(2, dim=-1)
        t = t + self.out2(attention(self.q(self.norm2(t)), k, v, self.heads))
        t = t + self.mlp(self.norm3(t))
        return x + self.proj_out(t).transpose(1, 2).reshape(n, c, h, w)


class TemporalBlock(nn.Module):
    """Mixes information across the frames of a window at every pixel: a temporal Conv1d
    (k=3) and temporal self-attention with learned frame positions. Both start as identity."""

    def __init__(self, c, frames, attn=True, head_dim=32):
        super().__init__()
        self.frames = frames
        self.heads = max(1, c // head_dim)
        self.norm_conv = nn.GroupNorm(GROUPS, c)
        self.conv = _zero(nn.Conv1d(c, c, 3, padding=1))
        self.attn = attn
        if attn:
            self.pos = nn.Parameter(torch.randn(frames, c) * 0.02)
            self.norm = nn.LayerNorm(c)
            self.qkv = nn.Linear(c, 3 * c)
            self.out = _zero(nn.Linear(c, c))

    def forward(self, x):
        bf, c, h, w = x.shape
        f = self.frames
        b = bf // f
        # [B*F, C, H, W] -> [B*H*W, C, F]
        s = self.norm_conv(x).reshape(b, f, c, h * w).permute(0, 3, 2, 1).reshape(b * h * w, c, f)
        y = self.conv(F_.silu(s))
        y = y.reshape(b, h * w, c, f).permute(0, 3, 2, 1).reshape(bf, c, h, w)
        x = x + y
        if self.attn:
            t = x.reshape(b, f, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, f, c)
            q, k, v = self.qkv(self.norm(t) + self.pos).chunk(3, dim=-1)
            y = self.out(attention(q, k, v, self.heads))
            x = x + y.reshape(b, h * w, f, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
        return x


class Stage(nn.Module):
    """One UNet stage: ResBlock (time scale/shift per frame) -> spatial/text transformer ->
    temporal block."""

    def __init__(self, cin, cout, emb_dim, ctx_dim, frames, self_attn, temporal_attn):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim)
        self.spatial = SpatialTransformer(cout, ctx_dim, self_attn)
        self.temporal = TemporalBlock(cout, frames, temporal_attn)

    def forward(self, x, emb, ctx):
        return self.temporal(self.spatial(self.res(x, emb), ctx))


class UNet(nn.Module):
    """Video denoiser over a window of `frames` latent frames with a timestep per frame.

    Levels at 16x16, 8x8 and 4x4 (channels `ch`), one stage down and one up per level plus a
    middle at 4x4. Spatial self-attention at 8x8 and 4x4; cross-attention and temporal
    attention at every level.
    """

    def __init__(self, frames=8, zc=4, ch=(64, 96, 128), ctx_dim=128, emb_dim=256,
                 self_attn=(False, True, True), pooled_text=False):
        super().__init__()
        self.frames, self.zc = frames, zc
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(ch[0]) / ch[0]))
        self.time_mlp = nn.Sequential(nn.Linear(2 * ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # The frame's prompt, mean-pooled over its tokens, added to its time embedding (as SDXL
        # and Imagen add a pooled text embedding): every ResBlock then sees the whole prompt
        # without attention having to find the word first. Zero-initialised, so a model grown
        # with it starts as the one it was grown from.
        self.text_pool = _zero(nn.Linear(ctx_dim, emb_dim)) if pooled_text else None
        self.conv_in = nn.Conv2d(zc, ch[0], 3, padding=1)
        stage = lambda cin, cout, i: Stage(cin, cout, emb_dim, ctx_dim, frames, self_attn[i], True)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            self.down.append(stage(prev, c, i))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            prev = c
        self.mid = stage(ch[-1], ch[-1], len(ch) - 1)
        self.mid_res = ResBlock(ch[-1], ch[-1], emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            self.up.append(stage(prev + ch[i], ch[i], i))
            if i > 0:
                self.upsample.append(Upsample(ch[i], ch[i - 1]))
            prev = ch[i - 1] if i > 0 else ch[0]
        self.norm_out = nn.GroupNorm(GROUPS, ch[0])
        self.conv_out = _zero(nn.Conv2d(ch[0], zc, 3, padding=1))

    def time_embedding(self, t):
        """t [N] float -> [N, emb_dim]: sinusoidal features, then an MLP."""
        args = t[:, None] * self.freqs[None, :]
        return self.time_mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=1))

    def forward(self, x, t, ctx):
        """x [B, F, C, H, W], t [B, F], ctx [B, F, T, D] -> prediction [B, F, C, H, W]."""
        b, f, c, h, w = x.shape
        tokens, d = ctx.shape[2], ctx.shape[3]
        x = x.reshape(b * f, c, h, w)
        emb = self.time_embedding(t.reshape(b * f))  # each frame its own time embedding
        ctx = ctx.reshape(b * f, tokens, d)  # each frame its own prompt
        if self.text_pool is not None:
            emb = emb + self.text_pool(ctx.mean(dim=1))
        hcur = self.conv_in(x)
        skips = []
        for i, st in enumerate(self.down):
            hcur = st(hcur, emb, ctx)
            skips.append(hcur)
            if i < len(self.downsample):
                hcur = self.downsample[i](hcur)
        hcur = self.mid_res(self.mid(hcur, emb, ctx), emb)
        for i, st in enumerate(self.up):
            hcur = st(torch.cat([hcur, skips.pop()], dim=1), emb, ctx)
            if i < len(self.upsample):
                hcur = self.upsample[i](hcur)
        out = self.conv_out(F_.silu(self.norm_out(hcur)))
        return out.reshape(b, f, c, h, w)


class TextToVideo(nn.Module):
    """The text encoder and the UNet, trained together (the autoencoder is separate and frozen)."""

    def __init__(self, config):
        super().__init__()
        self.tokenizer = Tokenizer(config["max_tokens"])
        self.text = TextEncoder(len(self.tokenizer.words), config["max_tokens"], config["text_dim"],
                                config["text_layers"], config["text_heads"])
        self.unet = UNet(config["frames"], config["latent_channels"], tuple(config["channels"]),
                         config["text_dim"], config["emb_dim"], tuple(config["self_attn"]),
                         config.get("pooled_text", False))

    def encode_prompts(self, prompts):
        return self.text(self.tokenizer(prompts).to(self.text.pos.device))

    def forward(self, x, t, ctx):
        return self.unet(x, t, ctx)


DEFAULT_CONFIG = {
    "frames": 8,
    "latent_channels": 4,
    "latent_size": 16,
    "channels": [48, 64, 96],
    "self_attn": [False, True, True],
    "emb_dim": 256,
    "max_tokens": 12,
    "text_dim": 128,
    "text_layers": 2,
    "text_heads": 4,
}


def load_grown(module, state):
    """Loads a state dict saved before the module grew zero-initialised parts (e.g. `text_pool`):
    only those may be missing, and nothing may be left over."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    grown = [k for k in missing if ".text_pool." not in f".{k}"]
    if grown or unexpected:
        raise ValueError(f"state does not fit the model: missing {grown}, unexpected {unexpected}")
    return missing


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def unet_gflop(unet, batch=1, frames=8, tokens=12, ctx_dim=128, size=16, zc=4):
    """Forward GFLOP of one UNet call (matmuls and convs, as torch's flop counter counts them)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros(batch, frames, zc, size, size)
    t = torch.zeros(batch, frames)
    ctx = torch.zeros(batch, frames, tokens, ctx_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        unet(x, t, ctx)
    return fc.get_total_flops() / 1e9
