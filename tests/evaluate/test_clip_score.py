"""CLIP score: torchmetrics' 0-100 scale on a tiny local CLIP; offline hub ids fail in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from expertune.errors import ModelReferenceError
from expertune.evaluate.clip_score import ClipScorer, resolve_clip_model, summary

COLOURS = [(255, 0, 0), (0, 0, 255), (20, 200, 20), (128, 128, 128)]
PROMPTS = ["a red circle", "a blue square", "green", "a gray thing"]


def direct_scores(folder, images, prompts) -> list[float]:
    """100 * cosine of CLIP's projected embeddings, floored at 0, written out by hand."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    with torch.no_grad():
        img = model.get_image_features(**processor(images=images, return_tensors="pt"))
        txt = model.get_text_features(**processor(text=prompts, return_tensors="pt", padding=True))
    img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))
    cos = torch.nn.functional.cosine_similarity(img, txt)
    return (100 * cos).clamp(min=0).tolist()


def test_scores_are_torchmetrics_clip_score_on_a_0_to_100_scale(tiny_clip_dir):
    images = [Image.fromarray(np.full((64, 64, 3), c, np.uint8)) for c in COLOURS]
    scores = ClipScorer(resolve_clip_model(str(tiny_clip_dir))).scores(images, PROMPTS)
    assert scores == pytest.approx(direct_scores(tiny_clip_dir, images, PROMPTS), abs=1e-3)
    assert all(0 <= s <= 100 for s in scores) and max(scores) > 1


def test_summary_has_min_mean_max_std():
    s = summary([10.0, 20.0, 30.0])
    assert (s["min"], s["mean"], s["max"], s["count"]) == (10.0, 20.0, 30.0, 3)
    assert s["std"] == pytest.approx(8.16496, rel=1e-5)


def test_an_unreachable_hub_model_is_a_one_line_error():
    with pytest.raises(ModelReferenceError) as err:
        resolve_clip_model("openai/clip-vit-large-patch14-336", offline=True)
    message = str(err.value)
    assert "\n" not in message and "openai/clip-vit-large-patch14-336" in message
    assert "folder" in message


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelReferenceError, match="not a CLIP model folder"):
        resolve_clip_model(str(tmp_path))
    with pytest.raises(ModelReferenceError, match="does not exist"):
        resolve_clip_model(str(tmp_path / "missing" / "deeper"))
