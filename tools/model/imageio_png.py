"""A minimal PNG writer (no Pillow in the venv): uint8 RGB arrays to files."""
import struct
import zlib

import numpy as np


def write_png(path, rgb):
    """rgb: uint8 array [H, W, 3]."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))  # filter type 0 per row

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def to_uint8(frames):
    """Torch/numpy images [..., 3, H, W] in [-1, 1] to uint8 [..., H, W, 3]."""
    a = np.asarray(frames, dtype=np.float32)
    a = np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(a, -3, -1)


def grid(frames, pad=2):
    """frames uint8 [R, C, H, W, 3] -> one image with `pad` pixels of white between tiles."""
    r, c, h, w, _ = frames.shape
    out = np.full((r * (h + pad) + pad, c * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = frames[i, j]
    return out
