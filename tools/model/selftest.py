"""Quick self-checks of the world, detector, tokenizer and model contracts (seconds, one thread).

  python tools/model/selftest.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detect  # noqa: E402
import diffusion  # noqa: E402
import nets  # noqa: E402
import world  # noqa: E402


def test_world():
    a = world.sample_clips(64, torch.Generator().manual_seed(5))
    b = world.sample_clips(64, torch.Generator().manual_seed(5))
    assert torch.equal(a.render(range(3)), b.render(range(3))), "seeded clips must repeat"
    pairs = set(zip(a.truth([0])["colour"], a.truth([0])["shape"]))
    assert not pairs & set(world.HELD_OUT), "held-out pairs leaked into the train split"
    h = world.sample_clips(16, torch.Generator().manual_seed(5), "held_out")
    assert set(zip(h.truth([0])["colour"], h.truth([0])["shape"])) <= set(world.HELD_OUT)
    # Positions stay wrapped into the frame however long the video runs.
    x, y = a.positions(range(0, 1000, 97))
    assert x.min() >= 0 and x.max() < world.SIZE and y.min() >= 0 and y.max() < world.SIZE
    for p in a.prompts():
        assert world.prompt(*[p.split()[i] for i in (1, 2, 4, 7)]) == p
        world.parse_prompt(p)


def test_detector():
    c = world.sample_clips(48, torch.Generator().manual_seed(6), "all")
    s = detect.score(c.prompts(), c.render(range(8)))
    assert s["colour"] == 1.0 and s["shape"] == 1.0 and s["direction"] == 1.0, s


def test_tokenizer():
    tok = nets.Tokenizer()
    ids = tok(["a red circle moving left on a black background", ""])
    assert ids.shape == (2, 12) and ids[1, 0] == 1 and ids[1, 1:].eq(0).all()
    try:
        tok(["a purple circle moving left on a black background"])
        raise AssertionError("unknown word accepted")
    except ValueError as e:
        assert "vocabulary" in str(e)


def test_unet_contract():
    cfg = dict(nets.DEFAULT_CONFIG, channels=[32, 32, 32])
    m = nets.TextToVideo(cfg).eval()
    torch.manual_seed(0)
    for p in m.parameters():  # zero-initialised outputs would hide everything; randomise
        p.data.normal_(0, 0.05)
    x = torch.randn(2, 8, 4, 16, 16)
    t = torch.rand(2, 8) * 999
    ctx = torch.randn(2, 8, 12, 128)
    with torch.no_grad():
        y = m(x, t, ctx)
        assert y.shape == x.shape
        # Per-frame inputs are honoured: frame 3's timestep and prompt change the output.
        t2 = t.clone()
        t2[0, 3] = 0.0
        assert not torch.allclose(m(x, t2, ctx)[0], y[0])
        c2 = ctx.clone()
        c2[0, 3] = 0.0
        assert not torch.allclose(m(x, t, c2)[0], y[0])
        # Batch entries are independent.
        assert torch.allclose(m(x[1:], t[1:], ctx[1:]), y[1:], atol=1e-5)


def test_schedule():
    a = diffusion.ALPHABAR
    assert len(a) == 1000 and (a[1:] < a[:-1]).all() and a[0] > 0.999 and a[-1] < 1e-3
    assert diffusion.ddim_timesteps(64)[:5] == [0, 16, 32, 48, 63]
    z, n = torch.randn(3, 8, 4), torch.randn(3, 8, 4)
    t = torch.randint(0, 1000, (3, 8))
    xt, v = diffusion.add_noise(z, n, t)
    x0, eps = diffusion.v_to_x0_eps(xt, v, a[t][..., None])
    assert torch.allclose(x0, z, atol=1e-4) and torch.allclose(eps, n, atol=1e-4)


def test_train_options():
    import train
    g = torch.Generator().manual_seed(3)
    cfg = {"t_min": 0}
    before = g.get_state()
    t = train.draw_timesteps(cfg, 4000, g)
    assert t.shape == (4000, 1) and t.min() >= 0 and t.max() < 1000
    g.set_state(before)  # no mixture: the generator is used exactly as before it existed
    assert torch.equal(t, torch.randint(0, diffusion.STEPS, (4000, 1), generator=g))
    t = train.draw_timesteps(dict(cfg, t_high_share=0.5, t_high_min=900), 4000, g)
    high = (t >= 900).float().mean().item()
    assert 0.5 < high < 0.6, high  # 0.5 + 0.5 * 0.1 expected
    m = nets.TextToVideo(dict(nets.DEFAULT_CONFIG, channels=[32, 32, 32], pooled_text=True))
    names = train.split_trainable(m, r"spatial\.(q|kv)\.|text_pool")
    assert "unet.text_pool.weight" in names and "unet.mid.spatial.kv.bias" in names
    assert all(p.requires_grad == (n in names) for n, p in m.named_parameters())
    assert len(train.split_trainable(m, None)) == len(list(m.parameters()))
    p = "a red circle moving left on a black background"
    assert {train.swap_direction(p).split()[4] for _ in range(40)} == {"right", "up", "down"}
    for q in m.parameters():
        q.data.normal_(0, 0.05)
    xt = torch.randn(3, 8, 4, 16, 16)
    t = torch.tensor([[950] * 8, [100] * 8, [920] * 8])
    term, used = train.direction_contrast(m, xt, t, torch.randn_like(xt), torch.rand(3) + 0.5,
                                          [p, p, ""], {"t_high_min": 900})
    assert used == 1 and term.item() >= 0  # only the high-band clip with a prompt
    term.backward()


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            fn()
            print("ok", name)
