"""A quick detector for shapes-world videos: colour, shape, position and direction per clip.

Used to judge checkpoints from Python (the project's real evaluator is in Rust). It knows only
the palette and the shape templates, never the prompt.
"""
import torch

import world

_PALETTE = torch.tensor(list(world.COLOURS.values()))  # [8, 3] in [0, 1]
_MIN_AREA = 20.0  # pixels of foreground below which "no object" is reported


def _templates():
    """Soft masks of every shape at a few radii, centred at (32, 32): [S*R, H, W] and shape ids."""
    radii = torch.arange(world.RADIUS[0] - 1, world.RADIUS[1] + 1.5, 1.0)
    s = torch.arange(len(world.SHAPES)).repeat_interleave(len(radii))
    r = radii.repeat(len(world.SHAPES))
    n = len(s)
    c = torch.full((n,), world.SIZE / 2.0)
    img = world.render(s, torch.full((n,), 6), torch.zeros(n, dtype=torch.long), r, c, c)  # white on black
    return (img[:, 0] + 1.0) / 2.0, s


_TEMPLATES, _TEMPLATE_SHAPE = _templates()


def _circular_mean(w, axis_len, dim):
    """Weighted mean position on a circle of length axis_len; w [..., L] summed over dim."""
    pos = (torch.arange(axis_len, dtype=torch.float32) + 0.5) * (2 * torch.pi / axis_len)
    shape = [1] * w.dim()
    shape[dim] = axis_len
    pos = pos.view(shape)
    s = (w * torch.sin(pos)).sum(dim)
    c = (w * torch.cos(pos)).sum(dim)
    return torch.remainder(torch.atan2(s, c) / (2 * torch.pi) * axis_len, axis_len)


def detect(video):
    """video: [N, F, 3, H, W] in [-1, 1]. Returns a dict of per-clip predictions and per-frame
    positions: colour/shape/direction names per clip, x/y [N, F], area [N, F]."""
    n, f, _, h, w = video.shape
    img = ((video.float().clamp(-1, 1) + 1.0) / 2.0).reshape(n * f, 3, h, w)
    bg = img.flatten(2).median(dim=2).values  # the object covers well under half the frame
    diff = img - bg[:, :, None, None]
    dist = diff.norm(dim=1)  # [NF, H, W]
    # Object colour: mean of the clearly-foreground pixels (beyond the anti-aliased edge).
    peak = dist.flatten(1).max(dim=1).values.clamp(min=1e-3)
    core = (dist > 0.6 * peak[:, None, None]) & (dist > 0.2)
    cnt = core.flatten(1).sum(1).clamp(min=1)
    col = (img * core[:, None]).flatten(2).sum(2) / cnt[:, None]
    # Soft mask: fraction of the way from background to the object colour.
    span = (col - bg).norm(dim=1).clamp(min=1e-3)
    mask = (dist / span[:, None, None]).clamp(0, 1) * (dist > 0.15)
    area = mask.flatten(1).sum(1)
    cy = _circular_mean(mask.sum(2), h, 1)
    cx = _circular_mean(mask.sum(1), w, 1)
    # Shape: centre the mask on (H/2, W/2) by its centroid and match templates by soft IoU.
    sy = (torch.arange(h)[None, :] + cy.round().long()[:, None] - h // 2) % h
    sx = (torch.arange(w)[None, :] + cx.round().long()[:, None] - w // 2) % w
    centred = mask[torch.arange(n * f)[:, None, None], sy[:, :, None], sx[:, None, :]]
    inter = torch.minimum(centred[:, None], _TEMPLATES[None]).flatten(2).sum(2)
    union = torch.maximum(centred[:, None], _TEMPLATES[None]).flatten(2).sum(2)
    iou = inter / union.clamp(min=1e-3)  # [NF, templates]
    shape_per_frame = _TEMPLATE_SHAPE[iou.argmax(1)]
    colour_per_frame = ((col[:, None] - _PALETTE[None]) ** 2).sum(2).argmin(1)
    present = area > _MIN_AREA

    # Per clip: majority vote over frames with an object; direction from wrapped displacements.
    shape_pf = shape_per_frame.view(n, f)
    colour_pf = colour_per_frame.view(n, f)
    present = present.view(n, f)
    x, y = cx.view(n, f), cy.view(n, f)
    dx = world._wrap(x[:, 1:] - x[:, :-1])
    dy = world._wrap(y[:, 1:] - y[:, :-1])
    both = (present[:, 1:] & present[:, :-1]).float()
    mdx = (dx * both).sum(1) / both.sum(1).clamp(min=1)
    mdy = (dy * both).sum(1) / both.sum(1).clamp(min=1)
    direction = torch.where(mdx.abs() >= mdy.abs(),
                            torch.where(mdx >= 0, 1, 0),  # right / left
                            torch.where(mdy >= 0, 3, 2))  # down / up

    def vote(v, k):
        counts = torch.zeros(n, k)
        counts.scatter_add_(1, v, present.float())
        return counts.argmax(1)

    colour = vote(colour_pf, len(world.COLOURS))
    shape = vote(shape_pf, len(world.SHAPES))
    return {
        "colour": [world.COLOUR_NAMES[i] for i in colour.tolist()],
        "shape": [world.SHAPES[i] for i in shape.tolist()],
        "direction": [world.DIR_NAMES[i] for i in direction.tolist()],
        "present": present.float().mean(1),
        "colour_per_frame": colour_pf, "shape_per_frame": shape_pf,
        "x": x, "y": y, "area": area.view(n, f), "speed": torch.sqrt(mdx ** 2 + mdy ** 2),
    }


def score(prompts, video):
    """Fraction of clips whose detected colour / shape / direction match their prompts."""
    d = detect(video)
    want = [world.parse_prompt(p) for p in prompts]
    n = len(prompts)
    return {
        "colour": sum(d["colour"][i] == want[i][0] for i in range(n)) / n,
        "shape": sum(d["shape"][i] == want[i][1] for i in range(n)) / n,
        "direction": sum(d["direction"][i] == want[i][2] for i in range(n)) / n,
        "present": float(d["present"].mean()),
    }
