"""The tiny model's offline BPE tokenizers load as CLIPTokenizer and round-trip captions."""

from __future__ import annotations

import json

import pytest
from transformers import CLIPTextConfig, CLIPTokenizer

from expertune.models.tokenizer import BOS, EOS, MAX_LENGTH, caption_corpus, train_merges


@pytest.fixture(scope="module")
def tokenizers(tiny_model_dir):
    return {
        n: CLIPTokenizer.from_pretrained(tiny_model_dir / n) for n in ("tokenizer", "tokenizer_2")
    }


def test_captions_round_trip(tokenizers):
    caption = "A Photo of two Red cats on a blue square, at sunset"
    for tok in tokenizers.values():
        ids = tok(caption).input_ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert (
            tok.decode(ids, skip_special_tokens=True)
            == "a photo of two red cats on a blue square , at sunset"
        )
        assert len(ids) < 20  # common caption words are whole tokens, not bytes


def test_any_text_encodes_without_unknown_tokens(tokenizers):
    tok = tokenizers["tokenizer"]
    ids = tok("zebra ünïcödé 🐱 3.14 <b>").input_ids
    assert tok.eos_token_id not in ids[1:-1]  # the unk token is EOS, as in CLIP


def test_padding_like_sdxl(tokenizers):
    one, two = tokenizers["tokenizer"], tokenizers["tokenizer_2"]
    assert one.model_max_length == two.model_max_length == MAX_LENGTH
    assert (one.bos_token, one.eos_token, one.pad_token) == (BOS, EOS, EOS)
    assert two.pad_token == "!"  # SDXL's tokenizer_2 pads with "!"
    padded = two("a cat", padding="max_length", max_length=MAX_LENGTH).input_ids
    assert len(padded) == MAX_LENGTH and padded[-1] == two.convert_tokens_to_ids("!")


def test_vocab_files_alone_load_the_same_tokenizer(tiny_model_dir, tmp_path):
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((tiny_model_dir / "tokenizer" / name).read_bytes())
    slow_files = CLIPTokenizer.from_pretrained(tmp_path)  # CLIP's original two files only
    full = CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer")
    caption = "an oil painting of a mountain lake, 1990's"
    assert slow_files(caption).input_ids == full(caption).input_ids


def test_text_encoders_match_the_vocabulary(tiny_model_dir, tokenizers):
    for tok_name, enc_name in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        config = CLIPTextConfig.from_pretrained(tiny_model_dir / enc_name)
        assert config.vocab_size == len(tokenizers[tok_name])
        assert config.eos_token_id == tokenizers[tok_name].eos_token_id
    vocab = json.loads((tiny_model_dir / "tokenizer" / "vocab.json").read_text())
    assert vocab[EOS] == len(vocab) - 1  # special tokens last, as in CLIP


def test_training_is_deterministic():
    corpus = caption_corpus()
    assert train_merges(corpus, 1024) == train_merges(corpus, 1024)
