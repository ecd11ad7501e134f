"""LyCORIS experts (SimpleTuner's --lora_type=lycoris --lycoris_config FILE) via `lycoris-lora`.

The config is SimpleTuner's JSON: `algo` (lokr, loha, locon/lora, ...), `multiplier`,
`linear_dim`, `linear_alpha`, any other create_lycoris keyword (`factor`, `bypass_mode`,
...) and an optional `apply_preset` (target modules, per-module algo settings), read
with the same meaning SimpleTuner gives them.

The network is registered as the UNet's `lycoris` submodule, so its weights are the
trainable parameters by name (`lycoris.<name>`): the optimizer, EMA and checkpoints see
them like any others, and a resumed run restores them exactly. The published adapter is
`pytorch_lora_weights.safetensors` in LyCORIS' own key format (`lycoris_<module path>`),
the one ComfyUI maps onto a diffusers-layout SDXL UNet, with the config in its metadata
and beside it as `lycoris_config.json`; the published pipeline has it merged.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from expertune.errors import ConfigError

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
CONFIG_NAME = "lycoris_config.json"
ALGOS = ("lora", "locon", "loha", "lokr", "ia3", "dylora", "glora", "full", "diag-oft", "boft")
_PRESET_ATTRS = (
    "ENABLE_CONV",
    "TARGET_REPLACE_MODULE",
    "TARGET_REPLACE_NAME",
    "MODULE_ALGO_MAP",
    "NAME_ALGO_MAP",
    "LORA_PREFIX",
    "USE_FNMATCH",
    "TARGET_EXCLUDE_NAME",
)
_DEFAULTS: dict | None = None  # LycorisNetwork's class-level preset, before any apply_preset


def read_lycoris_config(path: str | None) -> dict:
    """The --lycoris_config JSON as a dict; one ConfigError line for anything wrong."""
    if not path:
        raise ConfigError("--lora_type=lycoris needs --lycoris_config FILE (a LyCORIS JSON)")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--lycoris_config {file} does not exist")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--lycoris_config {file} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"--lycoris_config {file} must hold one JSON object")
    algo = str(config.get("algo", "lora")).lower()
    if algo not in ALGOS:
        raise ConfigError(
            f"--lycoris_config {file}: algo {algo!r} is not one of {', '.join(ALGOS)}"
        )
    return config


def check_lycoris_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("lycoris") is None:
        raise ConfigError(
            "--lora_type=lycoris needs the lycoris-lora package: pip install 'expertune[lycoris]'"
        )


def add_lycoris(unet, config: dict, seed: int = 0):
    """Freeze `unet`, wrap it with the LyCORIS network `config` describes; the network.

    The initial adapter weights are drawn from `seed` (not the global RNG), so two runs
    with one seed start alike.
    """
    import torch
    from lycoris import LycorisNetwork, create_lycoris

    _reset_preset(LycorisNetwork)
    options = copy.deepcopy(config)
    preset = options.pop("apply_preset", None)
    if preset:
        try:
            LycorisNetwork.apply_preset(preset)
        except KeyError as err:
            raise ConfigError(f"--lycoris_config apply_preset: {err.args[0]}") from None
    multiplier = float(options.pop("multiplier", 1.0))
    dim = int(options.pop("linear_dim", 4))
    alpha = float(options.pop("linear_alpha", 1))
    unet.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = create_lycoris(unet, multiplier, linear_dim=dim, linear_alpha=alpha, **options)
    network.apply_to()
    if not network.loras:
        raise ConfigError("--lycoris_config matches no module of the UNet; check apply_preset")
    unet.add_module("lycoris", network)
    network.requires_grad_(True)
    return network


def save_lycoris(unet, out_dir: str | Path, config: dict, config_path: str) -> Path:
    """`out_dir/pytorch_lora_weights.safetensors` (LyCORIS keys) and lycoris_config.json."""
    out = Path(out_dir)
    network = unet.lycoris
    dtype = next(network.parameters()).dtype
    network.save_weights(str(out / WEIGHT_NAME), dtype, {"lycoris_config": json.dumps(config)})
    shutil.copyfile(config_path, out / CONFIG_NAME)
    return out / WEIGHT_NAME


def merge_lycoris(unet):
    """Merge the network into the base weights and drop it: a plain UNet, in place.

    Every module is checked on a probe input: the merged layer must compute what the
    trained (wrapped) layer computed. lycoris-lora 4.1's LoHa merge scales the update by
    alpha/dim twice when alpha != dim; such a module is merged from the update its
    forward adds (`get_weight * scalar`) instead, and checked again.
    """
    import torch

    network = unet.lycoris
    with torch.no_grad():
        probes = [_probe(lora.org_module[0]) for lora in network.loras]
        wanted = [
            None if x is None else lora(x) for lora, x in zip(network.loras, probes, strict=True)
        ]
        originals = [lora.org_module[0].weight.detach().clone() for lora in network.loras]
        network.merge_to(1.0)
        for lora, x, want, w0 in zip(network.loras, probes, wanted, originals, strict=True):
            if x is None or torch.allclose(lora.org_forward(x), want, atol=1e-5, rtol=1e-4):
                continue
            layer = lora.org_module[0]
            delta = lora.get_weight(layer.weight.shape) * lora.scalar * lora.multiplier
            layer.weight.copy_(w0 + delta.to(w0))
            if not torch.allclose(lora.org_forward(x), want, atol=1e-5, rtol=1e-4):
                raise RuntimeError(f"LyCORIS module {lora.lora_name} does not merge exactly")
    network.restore()  # the original forwards back, now with merged weights
    del unet.lycoris
    return unet


def _probe(layer):
    """A small random input for a Linear or Conv2d layer (None for other layers)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    weight = layer.weight
    if isinstance(layer, torch.nn.Linear):
        return torch.randn(2, layer.in_features, generator=gen).to(weight)
    if isinstance(layer, torch.nn.Conv2d):
        return torch.randn(1, layer.in_channels, 9, 9, generator=gen).to(weight)
    return None


def _reset_preset(cls) -> None:
    """apply_preset changes class attributes; start every network from the defaults."""
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = {a: copy.deepcopy(getattr(cls, a)) for a in _PRESET_ATTRS if hasattr(cls, a)}
    for attr, value in _DEFAULTS.items():
        setattr(cls, attr, copy.deepcopy(value))
