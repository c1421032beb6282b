"""Philox4x32-10 counter-based RNG and the project's noise() function.

Independent reference for the Rust scheduler's RNG (see README.md).  Pure numpy, no use of
numpy's own bit generators.

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; Random123 `philox4x32_R(10, ctr, key)`):
    one round:  (hi0, lo0) = mulhilo32(M0, c0); (hi1, lo1) = mulhilo32(M1, c2)
                c' = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
    key bump between rounds: k0 += W0, k1 += W1 (mod 2^32); 10 rounds, 9 bumps.

noise(seed, frame_id, index, purpose, D) -> float32[D]:
    key     = (seed & 0xffffffff, seed >> 32)
    counter = (b, frame_id & 0xffffffff, (frame_id >> 32) & 0xffffffff, (purpose << 16) | index)
              for block b = 0, 1, 2, ...   (frame_id is an i64, two's complement)
    u_k     = (r_k + 0.5) / 2^32                       (float64, exact)
    elements 4b+0..4b+3 = Box-Muller pairs (u0,u1), (u2,u3):
        rad = sqrt(-2.0 * ln(u0)); ang = (2.0 * pi) * u1
        4b+0 = rad * cos(ang), 4b+1 = rad * sin(ang)     (same for u2, u3)
    computed in float64, then cast (round-to-nearest) to float32; elements past D are dropped.
    The values do not depend on D (element e always comes from block e // 4).
"""

import numpy as np

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF

# Purposes (upper 16 bits of counter word 3).
ENQUEUE = 1    # a frame's initial pure noise (index = S-1)
STEP = 2       # sigma * z of the DDIM step at index k
RENOISE = 3    # forward-noising the sampled clip onto the diagonal (index = slot's DDIM index)
CLIP_INIT = 4  # initial noise of the ordinary f-frame clip sampler (frame id = clip frame j)
CLIP_STEP = 5  # DDIM step noise of the clip sampler (frame id = j, index = k)

PURPOSE_NAMES = {ENQUEUE: "ENQUEUE", STEP: "STEP", RENOISE: "RENOISE",
                 CLIP_INIT: "CLIP_INIT", CLIP_STEP: "CLIP_STEP"}


def philox4x32_10(ctr, key):
    """Vectorised Philox4x32-10.

    ctr: array-like [..., 4] of 32-bit words; key: (k0, k1).  Returns uint64 array [..., 4]
    holding the four 32-bit output words.
    """
    c = np.asarray(ctr, dtype=np.uint64)
    assert c.shape[-1] == 4 and np.all(c <= MASK32)
    c0, c1, c2, c3 = (c[..., i].copy() for i in range(4))
    k0 = int(key[0]) & MASK32
    k1 = int(key[1]) & MASK32
    m0 = np.uint64(M0)
    m1 = np.uint64(M1)
    mask = np.uint64(MASK32)
    s32 = np.uint64(32)
    for rnd in range(10):
        if rnd > 0:  # key bump between rounds (9 bumps for 10 rounds)
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = m0 * c0  # < 2^64, exact in uint64
        p1 = m1 * c2
        hi0, lo0 = p0 >> s32, p0 & mask
        hi1, lo1 = p1 >> s32, p1 & mask
        c0, c1, c2, c3 = (hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0)
    return np.stack([c0, c1, c2, c3], axis=-1)


def noise64(seed, frame_id, index, purpose, D):
    """The noise vector in float64 BEFORE the float32 cast (for diagnostics)."""
    seed = int(seed)
    frame_id = int(frame_id)
    assert 0 <= seed < 2**64
    assert -2**63 <= frame_id < 2**63
    assert 0 <= index < 2**16 and 0 <= purpose < 2**16
    key = (seed & MASK32, seed >> 32)
    w1 = frame_id & MASK32               # Python ints: & on a negative int is two's complement
    w2 = (frame_id >> 32) & MASK32       # arithmetic shift, then low 32 bits
    w3 = (purpose << 16) | index
    nblocks = (D + 3) // 4
    ctr = np.array([[b, w1, w2, w3] for b in range(nblocks)], dtype=np.uint64)
    r = philox4x32_10(ctr, key)                      # [nblocks, 4]
    u = (r.astype(np.float64) + 0.5) / 4294967296.0  # exact
    two_pi = 2.0 * np.pi
    rad_a = np.sqrt(-2.0 * np.log(u[:, 0]))
    ang_a = two_pi * u[:, 1]
    rad_b = np.sqrt(-2.0 * np.log(u[:, 2]))
    ang_b = two_pi * u[:, 3]
    out = np.stack([rad_a * np.cos(ang_a), rad_a * np.sin(ang_a),
                    rad_b * np.cos(ang_b), rad_b * np.sin(ang_b)], axis=-1).reshape(-1)
    return out[:D]


def noise(seed, frame_id, index, purpose, D):
    """float32[D] standard normal noise, see module docstring."""
    return noise64(seed, frame_id, index, purpose, D).astype(np.float32)


# Random123 known-answer vectors (kat_vectors, "philox4x32 10" lines).
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def _philox_scalar(ctr, key):
    """Plain-Python-int Philox4x32-10, a second transcription used only by the self-test."""
    c = list(ctr)
    k0, k1 = key
    for rnd in range(10):
        if rnd:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & MASK32, p1 & MASK32,
             ((p0 >> 32) ^ c[3] ^ k1) & MASK32, p0 & MASK32]
    return tuple(c)


def self_test(verbose=True):
    for ctr, key, want in KAT:
        got = tuple(int(v) for v in philox4x32_10(np.array(ctr), key))
        assert got == want, (ctr, key, [hex(v) for v in got])
        assert _philox_scalar(ctr, key) == want
    # vectorised vs scalar on a few pseudo-random counters
    rs = np.random.RandomState(1234)  # only to pick test inputs
    ctrs = rs.randint(0, 2**32, size=(16, 4), dtype=np.uint64)
    keys = rs.randint(0, 2**32, size=(16, 2), dtype=np.uint64)
    for c, k in zip(ctrs, keys):
        a = tuple(int(v) for v in philox4x32_10(c, k))
        assert a == _philox_scalar(tuple(int(v) for v in c), tuple(int(v) for v in k))
    # prefix property of noise() and counter layout sanity
    n24 = noise(321, -5, 15, STEP, 24)
    assert np.array_equal(noise(321, -5, 15, STEP, 7), n24[:7])
    assert n24.dtype == np.float32
    if verbose:
        print("philox: Random123 KAT vectors OK")
    cross_check_randomgen(verbose)


def cross_check_randomgen(verbose=True):
    """Optional: compare with randomgen.Philox(number=4, width=32).

    randomgen increments the 128-bit counter BEFORE producing a block, so to get
    philox(ctr, key) we set its counter to ctr - 1 (as a 128-bit little-endian-word integer).
    """
    try:
        from randomgen import Philox
    except ImportError:
        if verbose:
            print("philox: randomgen not installed, cross-check skipped")
        return False
    rs = np.random.RandomState(99)
    cases = [tuple(int(v) for v in rs.randint(0, 2**32, size=6, dtype=np.uint64)) for _ in range(8)]
    cases += [(0, 0, 0, 0, 0, 0), (MASK32,) * 6, (5, 7, MASK32, 0, 1, 2)]
    for c0, c1, c2, c3, k0, k1 in cases:
        ctr_int = c0 | (c1 << 32) | (c2 << 64) | (c3 << 96)
        key_int = k0 | (k1 << 32)
        bg = Philox(counter=(ctr_int - 1) % 2**128, key=key_int, number=4, width=32)
        got = [int(v) for v in bg.random_raw(8)]  # two consecutive blocks
        want = [int(v) for v in philox4x32_10(np.array([c0, c1, c2, c3]), (k0, k1))]
        nxt = (ctr_int + 1) % 2**128
        want += [int(v) for v in philox4x32_10(
            np.array([(nxt >> (32 * i)) & MASK32 for i in range(4)]), (k0, k1))]
        assert got == want, ([hex(v) for v in got], [hex(v) for v in want])
    # randomgen's own KAT-equivalent: ctr=0,key=0 -> first block is for counter 1; check ctr-1 trick
    bg = Philox(counter=2**128 - 1, key=0, number=4, width=32)
    assert [int(v) for v in bg.random_raw(4)] == list(KAT[0][2])
    if verbose:
        print("philox: randomgen Philox(number=4, width=32) cross-check OK")
    return True


if __name__ == "__main__":
    self_test()
    print(noise(321, 0, 63, ENQUEUE, 8))
