"""CLIP's byte-level BPE vocabulary from OpenAI's original merges file, built the way
openai/CLIP's simple_tokenizer.py builds it (bytes_to_unicode, `</w>` variants, the merges,
<|startoftext|>, <|endoftext|>), and a Hugging Face tokenizer.json written from it by transformers.

The merges file (`bpe_simple_vocab_16e6.txt`) ships in the crates.io crate instant-clip-tokenizer;
it is found in cargo's registry (fetched there with `cargo info` when missing) and checked by
sha256. `merges=N` keeps only the first N merges: a reduced tokenizer with the same code paths
(and the same ids for the 512 byte tokens), small enough to commit with a test model.
"""
import glob
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile

MERGES_CRATE = "instant-clip-tokenizer@0.1.0"
MERGES_NAME = "bpe_simple_vocab_16e6.txt"
MERGES_SHA256 = "67603cfda2e032ad77b5f8808af37789d590db664b26df8705d2bf8b3c553fc8"
FULL_MERGES = 49152 - 256 - 2


def bytes_to_unicode():
    """simple_tokenizer.py: printable stand-ins for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
    bs += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def find_merges(path=None):
    """`path`, else $CLIP_BPE, else the copy in cargo's registry (fetched if missing)."""
    path = path or os.environ.get("CLIP_BPE")
    if path:
        return path
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    name, version = MERGES_CRATE.split("@")
    pattern = os.path.join(cargo_home, "registry", "src", "*", f"{name}-{version}", MERGES_NAME)
    found = glob.glob(pattern)
    if not found:
        print(f"{MERGES_NAME} not in cargo's registry; fetching the crate {MERGES_CRATE}", file=sys.stderr)
        subprocess.run(["cargo", "info", MERGES_CRATE], check=True, stdout=subprocess.DEVNULL)
        found = glob.glob(pattern)
    if not found:
        sys.exit(f"cannot find {MERGES_NAME} (looked for {pattern}); set CLIP_BPE=FILE")
    return found[0]


def read_merges(path, count=FULL_MERGES):
    """The first `count` merges (as simple_tokenizer.py: skip the "#version" line)."""
    data = open(path, "rb").read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != MERGES_SHA256:
        sys.exit(f"{path}: sha256 {digest} is not OpenAI's {MERGES_NAME} ({MERGES_SHA256})")
    lines = data.decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : 1 + min(count, FULL_MERGES)]]


def vocabulary(merges):
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}


def write_sources(folder, merges):
    """vocab.json and merges.txt, the files transformers' CLIPTokenizer reads."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocabulary(merges), f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


def write_tokenizer_json(path, merges_count=FULL_MERGES, max_tokens=77):
    """tokenizer.json for CLIP with the first `merges_count` merges; returns `path`."""
    from transformers import CLIPTokenizer
    merges = read_merges(find_merges(), merges_count)
    with tempfile.TemporaryDirectory() as d:
        write_sources(d, merges)
        CLIPTokenizer.from_pretrained(d, model_max_length=max_tokens).backend_tokenizer.save(path)
    return path
