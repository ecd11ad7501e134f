"""--lora_type=lycoris: LoKr / LoHa / LoCon experts with lycoris-lora, trained, resumed
exactly, saved in the key format ComfyUI maps onto an SDXL UNet, published merged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from expertune.models.lycoris import add_lycoris, merge_lycoris, read_lycoris_config

EXAMPLE = (
    Path(__file__).parents[1] / "config/data/simpletuner/sdxl.lycoris-lokr.lycoris_config.json"
)


def _inputs(unet):
    g = torch.Generator().manual_seed(0)
    c = unet.config
    pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
    return (
        torch.randn(1, 4, 8, 8, generator=g),
        torch.tensor([10]),
        {
            "encoder_hidden_states": torch.randn(1, 77, c.cross_attention_dim, generator=g),
            "added_cond_kwargs": {
                "text_embeds": torch.randn(1, pooled, generator=g),
                "time_ids": torch.randn(1, 6, generator=g),
            },
        },
    )


@pytest.mark.parametrize(
    ("config", "module"),
    [
        ({"algo": "loha", "linear_dim": 4, "linear_alpha": 2}, "LohaModule"),
        ({"algo": "locon", "linear_dim": 4, "linear_alpha": 4}, "LoConModule"),
        (None, "LokrModule"),  # SimpleTuner's sdxl.lycoris-lokr example
    ],
)
def test_each_algo_trains_only_its_weights_and_merges_exactly(tiny_model_dir, config, module):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")
    network = add_lycoris(unet, config or read_lycoris_config(str(EXAMPLE)))
    assert {type(m).__name__ for m in network.loras} == {module}
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("lycoris.lycoris_") for n in trainable)
    with torch.no_grad():
        for p in unet.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    x, t, cond = _inputs(unet)
    wrapped = unet(x, t, **cond).sample
    merge_lycoris(unet)
    assert not any("lycoris" in n for n, _ in unet.named_parameters())
    assert torch.allclose(unet(x, t, **cond).sample, wrapped, atol=1e-5)


def test_bad_configs_are_one_line(tmp_path):
    from expertune.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        read_lycoris_config(str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"algo": "nope"}')
    with pytest.raises(ConfigError, match="algo 'nope' is not one of"):
        read_lycoris_config(str(bad))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from expertune.app.demo import prepare_workdir

    work = tmp_path_factory.mktemp("lycoris")
    prepare_workdir(work, 3, images=4)
    shutil.copyfile(EXAMPLE, work / "lokr.json")
    return work


def _train(work: Path, out: Path, *flags: str) -> Path:
    from expertune.cli import main

    env = str(work / "config/stage1.env")
    args = [
        "--model_type=lora",
        "--lora_type=lycoris",
        f"--lycoris_config={work / 'lokr.json'}",
        "--learning_rate=1e-3",
        *flags,
    ]
    assert main(["train", "--config", env, f"--output_dir={out}", *args]) == 0
    return out


@pytest.mark.slow
def test_lokr_expert_trains_resumes_exactly_and_publishes(work, tmp_path):
    from diffusers import UNet2DConditionModel
    from lycoris import create_lycoris_from_weights

    straight = _train(work, tmp_path / "s", "--max_train_steps=3")
    part = _train(work, tmp_path / "r", "--max_train_steps=2")
    _train(work, part, "--max_train_steps=3", "--resume_from_checkpoint=latest")
    a = load_file(straight / "checkpoint-3/model.safetensors")
    b = load_file(part / "checkpoint-3/model.safetensors")
    assert a and all(torch.equal(a[k], b[k]) for k in a)
    # The adapter: LyCORIS keys lycoris_<diffusers module path with _>, as ComfyUI maps them.
    adapter = load_file(straight / "pytorch_lora_weights.safetensors")
    base = UNet2DConditionModel.from_pretrained(work / "tiny-model/unet")
    modules = {n.replace(".", "_") for n, _ in base.named_modules()}
    assert all(k.split(".")[0].removeprefix("lycoris_") in modules for k in adapter)
    assert json.loads((straight / "lycoris_config.json").read_text())["algo"] == "lokr"
    # The published UNet is the base with that file merged.
    net, _ = create_lycoris_from_weights(
        1.0, str(straight / "pytorch_lora_weights.safetensors"), base
    )
    net.merge_to(1.0)
    published = load_file(straight / "unet/diffusion_pytorch_model.safetensors")
    merged = base.state_dict()
    assert all(torch.allclose(published[k], merged[k], atol=1e-6) for k in published)
    changed = [k for k in published if not torch.equal(published[k], load_file(
        work / "tiny-model/unet/diffusion_pytorch_model.safetensors")[k])]  # fmt: skip
    assert changed and all("attn" in k for k in changed)
