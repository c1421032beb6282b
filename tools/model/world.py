"""The "shapes world": a procedural, seedable, infinite source of short text-video clips.

One object (shape x colour) moves at a steady speed in one of four directions on a flat
background. Positions wrap around the frame edges (a torus), so the motion is stationary
and a video can go on forever. Everything is vectorised in torch and rendered from signed
distance functions with a one-pixel anti-aliased edge, at 64x64 RGB in [-1, 1].
"""
import math

import torch

SIZE = 64  # frames are SIZE x SIZE pixels

COLOURS = {  # object colours, RGB in [0, 1]
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 0.85, 0.0),
    "blue": (0.1, 0.3, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "orange": (1.0, 0.55, 0.0),
}
BACKGROUNDS = {  # dark or dull, so every object colour stands out against every background
    "black": (0.0, 0.0, 0.0),
    "gray": (0.45, 0.45, 0.45),
    "navy": (0.0, 0.0, 0.35),
    "brown": (0.35, 0.2, 0.08),
}
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross"]
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}

# Colour/shape pairs never shown in training: the generalisation test set. One place only.
HELD_OUT = [("red", "triangle"), ("blue", "circle"), ("yellow", "square"), ("cyan", "star")]

RADIUS = (10.0, 14.0)  # object size in pixels (large, so it survives the 4x latent downsampling)
SPEED = (2.0, 4.0)  # pixels per frame

COLOUR_NAMES = list(COLOURS)
BG_NAMES = list(BACKGROUNDS)
DIR_NAMES = list(DIRECTIONS)
_COLOUR_RGB = torch.tensor(list(COLOURS.values()))
_BG_RGB = torch.tensor(list(BACKGROUNDS.values()))
_DIR_VEC = torch.tensor(list(DIRECTIONS.values()))
_HELD_OUT_IDX = {(COLOUR_NAMES.index(c), SHAPES.index(s)) for c, s in HELD_OUT}


def prompt(colour, shape, direction, background):
    return f"a {colour} {shape} moving {direction} on a {background} background"


def parse_prompt(text):
    """Inverse of prompt(): returns (colour, shape, direction, background) or raises ValueError."""
    w = text.split()
    if len(w) != 9 or w[0] != "a" or w[3] != "moving" or w[5:7] != ["on", "a"] or w[8] != "background":
        raise ValueError(f"not a shapes-world prompt: {text!r}")
    if w[1] not in COLOURS or w[2] not in SHAPES or w[4] not in DIRECTIONS or w[7] not in BACKGROUNDS:
        raise ValueError(f"unknown word in prompt: {text!r}")
    return w[1], w[2], w[4], w[7]


def vocabulary():
    """Every word the grammar can produce, in a fixed order."""
    return ["a", "moving", "on", "background"] + COLOUR_NAMES + SHAPES + DIR_NAMES + BG_NAMES


# ---------------------------------------------------------------- signed distance functions
# p: [..., 2] offsets from the object centre in pixels (y down); r: object radius, broadcastable.
# Negative inside. Not all are exact distances away from the edge, only near it (enough for AA).

def _sd_box(px, py, hx, hy):
    qx, qy = px.abs() - hx, py.abs() - hy
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _sd_circle(px, py, r):
    return torch.sqrt(px * px + py * py) - r


def _sd_square(px, py, r):
    return _sd_box(px, py, 0.85 * r, 0.85 * r)


def _sd_triangle(px, py, r):
    # Equilateral triangle, apex up, centred on its centroid (Inigo Quilez's exact SDF).
    k = math.sqrt(3.0)
    s = 1.3 * r * k / 2.0  # half the side, for a circumradius of 1.3 r
    x = px.abs() - s
    y = -py + s / k  # image y points down
    flip = (x + k * y) > 0
    x, y = torch.where(flip, (x - k * y) / 2.0, x), torch.where(flip, (-k * x - y) / 2.0, y)
    x = x - torch.minimum(torch.maximum(x, -2.0 * s), torch.zeros_like(x))
    return -torch.sqrt(x * x + y * y) * torch.sign(y)


_STAR_M = 2.0 * math.pi / 5.0  # angle between points


def _star_edge():
    # The edge from a point (angle 0, radius 1.25) to a notch (angle m/2, radius 0.55), in
    # polar form rho(a) = c / (nx cos a + ny sin a), for a unit radius.
    p = (1.25, 0.0)
    q = (0.55 * math.cos(_STAR_M / 2.0), 0.55 * math.sin(_STAR_M / 2.0))
    dx, dy = q[0] - p[0], q[1] - p[1]
    length = math.hypot(dx, dy)
    nx, ny = dy / length, -dx / length
    return nx * p[0] + ny * p[1], nx, ny


_STAR_C, _STAR_NX, _STAR_NY = _star_edge()


def _sd_star(px, py, r):
    # Five-pointed star, one point up. Distance measured along the ray from the centre, scaled
    # down because the edges are slanted; only exact enough near the edge, which is all AA needs.
    a = torch.atan2(px, -py)
    a = (torch.remainder(a + _STAR_M / 2.0, _STAR_M) - _STAR_M / 2.0).abs()
    rho_edge = r * _STAR_C / (_STAR_NX * torch.cos(a) + _STAR_NY * torch.sin(a))
    return (torch.sqrt(px * px + py * py) - rho_edge) * 0.6


def _sd_ring(px, py, r):
    return (torch.sqrt(px * px + py * py) - 0.72 * r).abs() - 0.28 * r


def _sd_cross(px, py, r):
    return torch.minimum(_sd_box(px, py, 1.0 * r, 0.36 * r), _sd_box(px, py, 0.36 * r, 1.0 * r))


_SDF = [_sd_circle, _sd_square, _sd_triangle, _sd_star, _sd_ring, _sd_cross]


def _wrap(d):
    """Shortest signed offset on the torus of side SIZE."""
    return torch.remainder(d + SIZE / 2.0, SIZE) - SIZE / 2.0


_GRID = (torch.arange(SIZE, dtype=torch.float32) + 0.5)  # pixel centres


def render(shape, colour, bg, radius, cx, cy):
    """Render one object per frame.

    shape, colour, bg: int tensors [N]; radius [N]; cx, cy: [N] centre in pixels (any real).
    Returns [N, 3, SIZE, SIZE] in [-1, 1].
    """
    px = _wrap(_GRID[None, None, :] - cx[:, None, None])  # [N, 1, W]
    py = _wrap(_GRID[None, :, None] - cy[:, None, None])  # [N, H, 1]
    px, py = px.expand(-1, SIZE, SIZE), py.expand(-1, SIZE, SIZE)
    r = radius[:, None, None]
    dist = torch.empty(px.shape)
    for k, sdf in enumerate(_SDF):  # only the rows that use this shape
        sel = shape == k
        if sel.any():
            dist[sel] = sdf(px[sel], py[sel], r[sel])
    alpha = (0.5 - dist).clamp(0.0, 1.0)[:, None]  # one-pixel anti-aliased edge
    fg = _COLOUR_RGB[colour][:, :, None, None]
    back = _BG_RGB[bg][:, :, None, None]
    return (back + alpha * (fg - back)) * 2.0 - 1.0


class Clips:
    """A batch of clip parameters: everything needed to render any frame, forever."""

    def __init__(self, shape, colour, bg, direction, radius, speed, x0, y0):
        self.shape, self.colour, self.bg, self.direction = shape, colour, bg, direction
        self.radius, self.speed, self.x0, self.y0 = radius, speed, x0, y0

    def __len__(self):
        return len(self.shape)

    def positions(self, frames):
        """Object centres for frame indices `frames` [F]: (x, y), each [N, F], wrapped into [0, SIZE)."""
        t = torch.as_tensor(frames, dtype=torch.float32)[None, :]
        v = _DIR_VEC[self.direction] * self.speed[:, None]
        x = torch.remainder(self.x0[:, None] + v[:, :1] * t, SIZE)
        y = torch.remainder(self.y0[:, None] + v[:, 1:] * t, SIZE)
        return x, y

    def render(self, frames):
        """Frames `frames` of every clip: [N, F, 3, SIZE, SIZE] in [-1, 1]."""
        x, y = self.positions(frames)
        n, f = x.shape
        rep = lambda a: a[:, None].expand(n, f).reshape(-1)
        out = render(rep(self.shape), rep(self.colour), rep(self.bg), rep(self.radius),
                     x.reshape(-1), y.reshape(-1))
        return out.view(n, f, 3, SIZE, SIZE)

    def prompts(self):
        return [prompt(COLOUR_NAMES[c], SHAPES[s], DIR_NAMES[d], BG_NAMES[b])
                for c, s, d, b in zip(self.colour.tolist(), self.shape.tolist(),
                                      self.direction.tolist(), self.bg.tolist())]

    def truth(self, frames):
        """Ground truth per clip and frame: names and wrapped centres."""
        x, y = self.positions(frames)
        return {"colour": [COLOUR_NAMES[i] for i in self.colour.tolist()],
                "shape": [SHAPES[i] for i in self.shape.tolist()],
                "direction": [DIR_NAMES[i] for i in self.direction.tolist()],
                "background": [BG_NAMES[i] for i in self.bg.tolist()],
                "x": x, "y": y}


def sample_clips(n, generator, split="train"):
    """Random clip parameters. split: "train" (held-out pairs excluded), "held_out" (only those
    pairs) or "all"."""
    g = generator
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)
    if split == "held_out":
        pick = torch.randint(len(HELD_OUT), (n,), generator=g)
        colour = torch.tensor([COLOUR_NAMES.index(HELD_OUT[i][0]) for i in pick.tolist()])
        shape = torch.tensor([SHAPES.index(HELD_OUT[i][1]) for i in pick.tolist()])
    else:
        colour = torch.randint(len(COLOURS), (n,), generator=g)
        shape = torch.randint(len(SHAPES), (n,), generator=g)
        if split == "train":  # redraw held-out pairs until none is left
            while True:
                bad = torch.tensor([(c, s) in _HELD_OUT_IDX for c, s in zip(colour.tolist(), shape.tolist())])
                if not bad.any():
                    break
                colour[bad] = torch.randint(len(COLOURS), (int(bad.sum()),), generator=g)
                shape[bad] = torch.randint(len(SHAPES), (int(bad.sum()),), generator=g)
    return Clips(shape=shape, colour=colour,
                 bg=torch.randint(len(BACKGROUNDS), (n,), generator=g),
                 direction=torch.randint(len(DIRECTIONS), (n,), generator=g),
                 radius=u(*RADIUS), speed=u(*SPEED), x0=u(0, SIZE), y0=u(0, SIZE))


def clips_for_prompts(prompts, generator):
    """Clip parameters for given prompt strings (random size, speed and start)."""
    n = len(prompts)
    parsed = [parse_prompt(p) for p in prompts]
    g = generator
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)
    return Clips(shape=torch.tensor([SHAPES.index(p[1]) for p in parsed]),
                 colour=torch.tensor([COLOUR_NAMES.index(p[0]) for p in parsed]),
                 bg=torch.tensor([BG_NAMES.index(p[3]) for p in parsed]),
                 direction=torch.tensor([DIR_NAMES.index(p[2]) for p in parsed]),
                 radius=u(*RADIUS), speed=u(*SPEED), x0=u(0, SIZE), y0=u(0, SIZE))


def sample_prompts(n, generator, split="train"):
    return sample_clips(n, generator, split).prompts()
