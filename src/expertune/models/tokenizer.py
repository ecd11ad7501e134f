"""A small CLIP-style byte-level BPE tokenizer, trained offline on a built-in caption corpus.

The tiny model cannot download CLIP's 49 408-token vocabulary, so it learns its own with
the `tokenizers` BpeTrainer under CLIP's conventions (lowercase, CLIP's split regex,
byte-level alphabet, `</w>` end-of-word suffix, `<|startoftext|>`/`<|endoftext|>` last,
77 tokens). Every byte is in the vocabulary (alone and with `</w>`), so any text encodes.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
CLIP_SPLIT = (  # CLIP's pre-tokenizer pattern, as transformers' CLIPTokenizer uses it
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"""
    r"""|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)

_WORDS = {
    "colour": "red orange yellow green blue purple pink brown black white gray grey gold silver "
    "teal cyan magenta violet beige",
    "shape": "circle square triangle rectangle star line stripe dot ring hexagon spiral grid "
    "checkerboard gradient cross heart diamond oval blob pattern shapes",
    "thing": "cat dog bird horse cow fish tree flower house car boat bicycle mountain lake river "
    "sea ocean beach forest city street bridge castle tower cloud sky sun moon person man woman "
    "child girl boy face apple banana cup table chair window door book road field garden snow "
    "rain fire water rock stone sand grass leaf wall roof train plane robot dragon lamp bottle",
    "adjective": "small large big tiny bright dark soft sharp old new beautiful simple detailed "
    "colorful smooth rough shiny blurry sunny cloudy foggy quiet busy empty round striped "
    "glowing wooden metal glass plain textured noisy clean pale vivid",
    "style": "photo photograph painting drawing sketch illustration render watercolor oil "
    "digital art cartoon pixel abstract realistic cinematic macro wide angle view closeup "
    "portrait landscape high quality studio lighting film grain",
    "place": "background foreground center corner scene room meadow desert valley harbor park",
    "time": "night day morning evening sunset sunrise winter summer autumn spring",
    "link": "of on in at with and under over near behind above below by beside against",
    "count": "one two three four five many some several",
}


def _words(kind: str) -> list[str]:
    return _WORDS[kind].split()


def caption_corpus(n: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic captions in the style of image datasets, built from the word lists."""
    rng = random.Random(seed)
    pick = rng.choice
    corpus = [" ".join(words.split()) for words in _WORDS.values()]
    for _ in range(n):
        corpus.append(
            f"{pick(['a', 'an', 'the'])} {pick(_words('style'))} of {pick(_words('count'))} "
            f"{pick(_words('adjective'))} {pick(_words('colour'))} {pick(_words('thing'))}"
            f"{pick(['', '', 's'])} "
            f"{pick(_words('link'))} a {pick(_words('colour'))} {pick(_words('shape'))} "
            f"{pick(_words('link'))} the {pick(_words('place'))}, {pick(_words('time'))}, "
            f"{rng.randint(0, 99)}'s {pick(_words('adjective'))} {pick(_words('style'))}."
        )
    return corpus


@lru_cache(maxsize=1)
def byte_alphabet() -> tuple[str, ...]:
    """GPT-2/CLIP's printable stand-ins for the 256 bytes, in CLIP's vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [b for b in range(256) if b not in printable]
    return tuple(map(chr, printable)) + tuple(chr(256 + i) for i in range(len(others)))


def train_merges(corpus: list[str], vocab_size: int) -> list[tuple[str, str]]:
    """BPE merges learned on `corpus` with CLIP's normaliser, split regex and `</w>` suffix."""
    tok = Tokenizer(BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=list(byte_alphabet()),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [(a, b) for a, b in merges]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's layout: bytes, bytes + `</w>`, one token per merge, then BOS and EOS."""
    tokens = list(byte_alphabet())
    tokens += [t + "</w>" for t in byte_alphabet()]
    tokens += [a + b for a, b in merges]
    tokens += [BOS, EOS]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab


@lru_cache(maxsize=4)
def _tiny_merges(vocab_size: int) -> tuple[tuple[str, str], ...]:
    return tuple(train_merges(caption_corpus(), vocab_size))


def build_tiny_tokenizer(*, pad_token: str = EOS, vocab_size: int = 1024) -> CLIPTokenizer:
    """A CLIPTokenizer over the learned vocabulary; SDXL's tokenizer_2 pads with "!"."""
    merges = list(_tiny_merges(vocab_size))
    return CLIPTokenizer(
        vocab=build_vocab(merges),
        merges=merges,
        pad_token=pad_token,
        model_max_length=MAX_LENGTH,
    )


def write_vocab_files(tokenizer: CLIPTokenizer, folder: Path) -> None:
    """Write vocab.json and merges.txt (CLIP's slow-tokenizer files) beside tokenizer.json."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    lines = ["#version: 0.2", *(" ".join(m) for m in model["merges"])]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
