#!/usr/bin/env python3
"""Regenerate tests/fixtures/tokenizers/ (run by hand; the output is committed).

    /work/venv/bin/python tools/tokenizers/make_tokenizer_fixtures.py [--check] [--clip-merges FILE]

Two Hugging Face `tokenizer.json` files, each written by transformers the way a real model's is,
and for each a list of hard prompts with the ids transformers gives them when called the way
diffusers calls a text encoder's tokenizer:

    tokenizer(prompt, padding="max_length", max_length=N, truncation=True).input_ids

clip-bpe    CLIP's byte-level BPE (Stable Diffusion's text encoder; N = 77). vocab.json and
            merges.txt are built from OpenAI's original merges file bpe_simple_vocab_16e6.txt
            exactly as openai/CLIP's simple_tokenizer.py does (bytes_to_unicode, 48894 merges,
            `</w>` variants, <|startoftext|>, <|endoftext|>), and transformers' CLIPTokenizer
            (the tokenizers-backed "fast" one) writes tokenizer.json. The merges file ships in the
            crates.io crate instant-clip-tokenizer; without --clip-merges it is looked up in
            cargo's registry and downloaded there with `cargo info` if missing.
t5-unigram  A small T5/umT5-style unigram model (N = 32): sentencepiece trains it on the corpus
            below with its default nmt_nfkc normalization, and transformers' T5Tokenizer converts
            it, which gives what real T5/umT5 tokenizer.json files hold: the spm `Precompiled`
            (NFKC-ish) normalizer, WhitespaceSplit + Metaspace pre-tokenizer, `</s>` appended by
            the post-processor, <pad> = 0.

Every prompt is also checked against an independent reference before anything is written: a
re-implementation of openai/CLIP's simple_tokenizer for clip-bpe, sentencepiece itself for
t5-unigram. The Rust test tests/tokenizer_parity.rs asserts the `tokenizers` crate gives exactly
these ids.

--check regenerates everything in memory and compares it with the committed files (the
tokenizer.json content, not the gzip bytes, which depend on the zlib version). It needs
transformers, tokenizers, sentencepiece and regex; where they are missing it says so and exits 0.
"""

import argparse
import gzip
import html
import io
import json
import os
import sys
import tempfile
import unicodedata

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "tokenizers")

sys.path.insert(0, os.path.join(REPO, "tools", "export"))
import clip_bpe  # noqa: E402  (the CLIP vocabulary builder the exporters use too)
from clip_bpe import bytes_to_unicode  # noqa: E402

CLIP_MAX_TOKENS = 77
T5_MAX_TOKENS = 32

LONG_PROMPT = (
    "an extremely detailed cinematic wide shot of a lone lighthouse standing on jagged black "
    "rocks at the edge of a stormy northern sea, towering waves crashing against the cliffs and "
    "throwing white spray high into the air, dark clouds swirling overhead with flashes of "
    "lightning, a small fishing boat struggling through the swell in the distance with its "
    "lanterns glowing orange, seagulls circling, rain streaking across the frame, volumetric "
    "light from the lighthouse beam cutting through the mist, dramatic contrast, moody colour "
    "grading, shot on 35mm film, shallow depth of field, trending on artstation, 8k resolution, "
    "masterpiece, best quality, ultra realistic, award winning photograph by a famous artist"
)

# Prompts both tokenizers get: what makes a byte-level BPE or a unigram model, its normalizer and
# its regex pre-tokenizer (onig in Python, fancy-regex in our Rust build) disagree, if anything.
COMMON_PROMPTS = [
    "a red circle moving right on a black background",
    "",
    "   ",
    "a",
    "A Photo of an ASTRONAUT riding a Horse on MARS",
    "a   cat \t sitting\n\non   a  mat  ",
    "  leading and trailing spaces  ",
    "non\u00a0breaking\u00a0spaces, ideographic\u3000space, zero\u200bwidth, line\u2028separator",
    "tab\tseparated\r\nwindows lines\vvertical\ffeed",
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade, \u00c5ngstr\u00f6m, se\u00f1or",
    "cafe\u0301 cre\u0300me (combining accents, NFC composes them)",
    "\u6771\u4eac\u306e\u591c\u666f\u3001\u30cd\u30aa\u30f3\u304c\u96e8\u306b\u6ef2\u3080",
    "\u4e00\u53ea\u5728\u96ea\u5730\u91cc\u5954\u8dd1\u7684\u72d0\u72f8",
    "\uc11c\uc6b8\uc758 \ubc24\uac70\ub9ac\uc640 \ub124\uc628\uc0ac\uc778",
    "emoji \U0001f60e\U0001f3d6\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 "
    "\U0001f1ef\U0001f1f5 \U0001f44d\U0001f3fd \u2764\ufe0f\u200d\U0001f525",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3",
    "\u0130stanbul stra\u00dfe STRASSE \u1e9e",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092e\u0947\u0902 \u090f\u0915 \u092c\u093f\u0932\u094d\u0932\u0940",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 \uff11\uff12\uff13 \u00bd \u00b2 \u216b \u2460 \ufb01re",
    "it's a dog's life, they're here, I'LL go, we'd've, don\u2019t",
    "!!! ??? ... --- *** (((masterpiece))), [best quality:1.2], {a|b}, <lora:x:0.8> #tag @user",
    "8k uhd, 35mm, f/1.8, 1920x1080, 3.14159, 2024-01-01, $100, 50%",
    "\\ backslash / slash \"quotes\" 'single' `backtick` ~tilde^ _under_",
    LONG_PROMPT,
    " ".join(["\U0001f30a\u6d77\u6d6a"] * 60),
    " ".join(["word"] * 200),
]

CLIP_PROMPTS = COMMON_PROMPTS + [
    "<|startoftext|>a prompt with <|endoftext|> inside",
    "a photo of a cat<|endoftext|>",
]

T5_PROMPTS = COMMON_PROMPTS + [
    "special tokens in text: <pad> </s> <unk>",
    "the metaspace char \u2581 itself and \u2581\u2581 twice",
]

# The unigram model's training text: enough to give it real pieces in several scripts; letters
# it never saw become <unk>.
T5_CORPUS = """\
a red circle moving right on a black background
a green square moving left on a white background
a blue triangle moving up on a yellow background
a photo of an astronaut riding a horse on mars
a watercolor painting of a fox running through snowy woods at dawn
time-lapse of clouds rolling over mountains, 4k, highly detailed, cinematic lighting
an extremely detailed cinematic shot of a lighthouse on black rocks by a stormy sea
waves crashing against the cliffs, dark clouds, lightning, rain, a small fishing boat
a cat wearing sunglasses sitting on a mat on the beach at sunset
masterpiece, best quality, ultra realistic, trending on artstation, 8k resolution
translate English to German: the house is wonderful.
Ein Fuchs läuft durch den verschneiten Wald. Die Straße ist nass.
Une rivière calme sous un ciel étoilé. Un café crème et une brûlée, s'il vous plaît.
El señor camina por la ciudad con su perro. Mañana será un día soleado.
Ελληνικά: ο ήλιος λάμπει πάνω από τη θάλασσα.
東京の夜景、ネオンが雨に滲む。富士山の上に浮かぶ雲、美しい朝焼け。
一只在雪地里奔跑的狐狸。城市的夜晚灯火通明。
서울의 밤거리와 네온사인. 고양이가 창가에 앉아 있다.
हिन्दी में एक बिल्ली खिड़की पर बैठी है।
مرحبا بالعالم، القطة تجلس على النافذة.
numbers 0 1 2 3 4 5 6 7 8 9 10 100 1920x1080 35mm f/1.8 3.14159 2024-01-01 $100 50%
punctuation ! ? . , ; : - -- ( ) [ ] { } < > / \\ | " ' ` ~ ^ _ * # @ & + =
it's a dog's life, they're here, I'll go, we'd've, don't
"""

# Where the reference tokenizers differ from transformers by design, not by a bug; anything else
# that differs fails the run. {fixture: {prompt: why}}
KNOWN_REFERENCE_DIFFERENCES = {
    "clip-bpe": {
        "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3": (
            "Python's str.lower() writes a word-final capital sigma as final sigma \u03c2; the "
            "tokenizers Lowercase normalizer lowers char by char (\u03c3)"
        ),
    },
    "t5-unigram": {
        "special tokens in text: <pad> </s> <unk>": (
            "transformers matches special tokens written in the text (its added vocabulary); "
            "sentencepiece reads them as plain characters"
        ),
    },
}


# --- CLIP --------------------------------------------------------------------------------------


class OpenAIClipReference:
    """openai/CLIP's simple_tokenizer.py, with NFC standing in for ftfy.fix_text (its Unicode
    normalization; ftfy is not needed otherwise)."""

    def __init__(self, merges, encoder):
        import regex

        self.byte_encoder = bytes_to_unicode()
        self.encoder = encoder
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.regex = regex

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = {(a, b) for a, b in zip(word, word[1:])}
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = {(a, b) for a, b in zip(word, word[1:])}
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        text = unicodedata.normalize("NFC", text)
        text = html.unescape(html.unescape(text)).strip()
        text = self.regex.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for token in self.regex.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def tokenize(self, text, length, pad_id):
        sot, eot = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]
        tokens = [sot] + self.encode(text) + [eot]
        if len(tokens) > length:
            tokens = tokens[:length]
            tokens[-1] = eot
        return tokens + [pad_id] * (length - len(tokens))


def build_clip(merges_path, work):
    from transformers import CLIPTokenizer

    merges = clip_bpe.read_merges(merges_path)
    encoder = clip_bpe.vocabulary(merges)
    assert len(encoder) == 49408, len(encoder)
    src = os.path.join(work, "clip-src")
    clip_bpe.write_sources(src, merges)
    tokenizer = CLIPTokenizer.from_pretrained(src, model_max_length=CLIP_MAX_TOKENS)
    reference = OpenAIClipReference(merges, encoder)
    return tokenizer, lambda p: reference.tokenize(p, CLIP_MAX_TOKENS, tokenizer.pad_token_id)


# --- T5 / umT5 unigram -------------------------------------------------------------------------


def build_t5(work):
    import sentencepiece as spm
    from transformers import T5Tokenizer

    src = os.path.join(work, "t5-src")
    os.makedirs(src)
    corpus = os.path.join(work, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(T5_CORPUS)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=corpus, model_writer=model, model_type="unigram", vocab_size=400, hard_vocab_limit=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    with open(os.path.join(src, "spiece.model"), "wb") as f:
        f.write(model.getvalue())
    tokenizer = T5Tokenizer.from_pretrained(src, extra_ids=0, model_max_length=T5_MAX_TOKENS)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

    def reference(prompt):
        ids = sp.encode(prompt)[: T5_MAX_TOKENS - 1] + [sp.eos_id()]
        return ids + [sp.pad_id()] * (T5_MAX_TOKENS - len(ids))

    return tokenizer, reference


# --- fixtures ----------------------------------------------------------------------------------


def make_fixture(name, tokenizer, reference, prompts, max_tokens, work):
    """(tokenizer.json text, expected JSON text): ids from the tokenizer.json transformers wrote,
    reloaded, checked against the reference and against the in-memory tokenizer."""
    saved = os.path.join(work, f"{name}-saved")
    tokenizer.save_pretrained(saved)
    with open(os.path.join(saved, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer_json = f.read()
    reloaded = type(tokenizer).from_pretrained(saved)

    known = KNOWN_REFERENCE_DIFFERENCES.get(name, {})
    cases, problems = [], []
    for prompt in prompts:
        call = dict(padding="max_length", max_length=max_tokens, truncation=True)
        ids = reloaded(prompt, **call)["input_ids"]
        if ids != tokenizer(prompt, **call)["input_ids"]:
            problems.append(f"{name}: {prompt!r}: the reloaded tokenizer.json disagrees with the one that wrote it")
        if len(ids) != max_tokens:
            problems.append(f"{name}: {prompt!r}: {len(ids)} ids, not {max_tokens}")
        agrees = reference(prompt) == ids
        if agrees and prompt in known:
            problems.append(f"{name}: {prompt!r} is listed as a known reference difference but agrees")
        elif not agrees and prompt not in known:
            problems.append(f"{name}: {prompt!r}: transformers {ids} but the reference {reference(prompt)}")
        cases.append({"prompt": prompt, "ids": ids})
    if problems:
        sys.exit("\n".join(problems))

    header = {
        "about": f"Generated by tools/tokenizers/make_tokenizer_fixtures.py; do not edit. ids = "
                 f"transformers {type(tokenizer).__name__}(prompt, padding='max_length', "
                 f"max_length={max_tokens}, truncation=True).input_ids",
        "tokenizer": f"{name}.tokenizer.json.gz",
        "max_tokens": max_tokens,
        "pad_id": tokenizer.pad_token_id,
    }
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in header.items()]
    lines.append('  "cases": [')
    body = [
        f'    {{"prompt": {json.dumps(c["prompt"], ensure_ascii=False)},\n     "ids": {json.dumps(c["ids"])}}}'
        for c in cases
    ]
    lines.append(",\n".join(body))
    lines += ["  ]", "}", ""]
    return tokenizer_json, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    parser.add_argument("--clip-merges", help=f"OpenAI's {clip_bpe.MERGES_NAME} (or .gz)")
    args = parser.parse_args()

    try:
        import regex  # noqa: F401
        import sentencepiece  # noqa: F401
        import tokenizers
        import transformers
    except ImportError as e:
        print(f"skipped: {e.name} is not installed (needs transformers, tokenizers, sentencepiece, regex)")
        return 0
    print(f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")

    merges_path = clip_bpe.find_merges(args.clip_merges)
    outputs = {}
    with tempfile.TemporaryDirectory() as work:
        builds = [
            ("clip-bpe", *build_clip(merges_path, work), CLIP_PROMPTS, CLIP_MAX_TOKENS),
            ("t5-unigram", *build_t5(work), T5_PROMPTS, T5_MAX_TOKENS),
        ]
        for name, tokenizer, reference, prompts, max_tokens in builds:
            outputs[name] = make_fixture(name, tokenizer, reference, prompts, max_tokens, work)

    stale = []
    for name, (tokenizer_json, expected) in outputs.items():
        tok_path = os.path.join(OUT_DIR, f"{name}.tokenizer.json.gz")
        exp_path = os.path.join(OUT_DIR, f"{name}.expected.json")
        if args.check:
            try:
                same = (gzip.decompress(open(tok_path, "rb").read()).decode("utf-8") == tokenizer_json
                        and open(exp_path, encoding="utf-8").read() == expected)
            except FileNotFoundError:
                same = False
            if not same:
                stale.append(name)
            continue
        os.makedirs(OUT_DIR, exist_ok=True)
        with open(tok_path, "wb") as f:
            f.write(gzip.compress(tokenizer_json.encode("utf-8"), compresslevel=9, mtime=0))
        with open(exp_path, "w", encoding="utf-8") as f:
            f.write(expected)
        print(f"wrote {os.path.relpath(tok_path, REPO)} ({os.path.getsize(tok_path)} bytes, "
              f"{len(tokenizer_json.encode())} unpacked) and {os.path.relpath(exp_path, REPO)}")
    if stale:
        sys.exit(f"stale tokenizer fixtures: {', '.join(stale)}; rerun tools/tokenizers/make_tokenizer_fixtures.py")
    if args.check:
        print("tokenizer fixtures are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
