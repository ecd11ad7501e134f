"""A frozen base UNet held quantised by optimum-quanto while an adapter trains on top.

SimpleTuner's ``base_model_precision`` (``int8-quanto`` in its Kolors example): the UNet's
Linear and Conv2d weights are quantised and frozen *before* the LoRA or LyCORIS adapter is
added, so the adapter's own layers stay in full precision and train as usual while the
base takes a half (int8) or less of its memory. Only adapters can train this way: a
quantised weight has no gradient. The published pipeline merges the trained adapter into
the unquantised base (train/run.py), so the quantisation error is a training-time
approximation and never baked into the model a user loads.
"""

from __future__ import annotations

import importlib.util
import logging

from expertune.errors import ConfigError

log = logging.getLogger(__name__)

# base_model_precision -> optimum.quanto weight type
PRECISIONS: dict[str, str] = {
    "int8-quanto": "qint8",
    "int4-quanto": "qint4",
    "int2-quanto": "qint2",
    "fp8-quanto": "qfloat8",
}
NO_CHANGE = "no_change"
INSTALL_HINT = "pip install 'expertune[quanto]' (optimum-quanto)"


def check_quanto_installed(precision: str) -> None:
    """One-line refusal when a quanto precision is asked for and the package is missing."""
    if precision in PRECISIONS and importlib.util.find_spec("optimum.quanto") is None:
        raise ConfigError(
            f"--base_model_precision={precision} needs the optimum-quanto package: "
            f"{INSTALL_HINT}, or set --base_model_precision=no_change"
        )


def quantize_base(unet, precision: str, dtype=None) -> int:
    """Quantise and freeze `unet`'s weights in place; how many layers were quantised.

    `dtype`: the mixed-precision compute dtype. The base is cast to it first, because a
    quantised weight cannot be cast again and autocast casts every weight that is not in
    its dtype already. peft then makes the adapter in that dtype too, so setup casts it
    back with adapter_to_float32: the optimizer updates float32 masters.
    """
    if precision == NO_CHANGE:
        return 0
    check_quanto_installed(precision)
    import optimum.quanto as quanto
    import torch

    unet.requires_grad_(False)
    if dtype is not None:  # torch's own cast: diffusers' warns of modules kept in float32
        torch.nn.Module.to(unet, dtype)
    quanto.quantize(unet, weights=getattr(quanto, PRECISIONS[precision]))
    quanto.freeze(unet)
    unet.requires_grad_(False)  # freeze() makes new parameters, which want gradients
    layers = 0
    for module in unet.modules():
        if isinstance(module, quanto.QModuleMixin):
            layers += 1
            if isinstance(module, torch.nn.Linear):
                module.register_forward_pre_hook(_contiguous_input)
    device = next(unet.parameters()).device
    log.info(
        "base_model_precision %s: %d UNet layers quantised on %s and frozen; the adapter "
        "trains in float32 on a %s base and is merged into the unquantised base when "
        "published",
        precision,
        layers,
        device,
        str(dtype or torch.float32).removeprefix("torch."),
    )
    return layers


def adapter_to_float32(unet) -> int:
    """Cast the trainable (adapter) weights to float32; how many were cast.

    peft creates LoRA weights in the dtype of the layer they wrap, which is the
    mixed-precision dtype once the base was cast for quantising; the optimizer must
    update float32 masters, as it does without a quantised base.
    """
    import torch

    cast = 0
    for p in unet.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    return cast


def _contiguous_input(_module, args):
    """optimum-quanto 0.2.7's CPU bf16 int8 matmul (torch._weight_int8pack_mm) refuses an
    input whose last dimension is strided, as the permuted `proj_in` input of diffusers'
    Transformer2DModel is at batch size 1; a contiguous copy computes the same product."""
    x = args[0]
    return None if x.is_contiguous() else (x.contiguous(), *args[1:])


def is_quantised(unet) -> bool:
    """Whether any layer of `unet` holds quanto weights (False without the package)."""
    if importlib.util.find_spec("optimum.quanto") is None:
        return False
    from optimum.quanto import QModuleMixin

    return any(isinstance(m, QModuleMixin) for m in unet.modules())
