"""`--validation_chain`: the whole chain as it stands, for validating one expert of K.

The chain lists one folder per band of the plan (ascending, as `--band_edges`); this
expert's own entry is ignored, since the live UNet stands there. For every other band
the newest of its finished pipeline or its sealed checkpoint is used (refiner_source.py
picks the same way), and while a band has neither, the stand-in does: the parent the
experts split from (`--init_from`) or MODEL_NAME's UNet. Each band's UNet is reloaded
only when its pick changes. The result is a TimestepRouter, so prompts are rendered from
pure noise through every expert with the run's own scheduler and parameterisation.
"""

from __future__ import annotations

import logging
from pathlib import Path

from expertune.evaluate.refiner_source import RefinerUnusable, _unet_from_checkpoint, pick_refiner

log = logging.getLogger(__name__)


class ChainSource:
    """Hands out the K UNets of the chain (ascending bands) and what stands at each."""

    def __init__(self, folders, own_index: int, stand_in: Path) -> None:
        self.folders = [Path(f) for f in folders]
        self.own = own_index
        self.stand_in = Path(stand_in)
        self._loaded: dict[int, tuple[tuple, object]] = {}  # band -> (key, unet)
        self._stand_in_unet = None

    def unets(self, trainer, live) -> tuple[list, list[str]]:
        """(UNets by ascending band, one line per band saying what stands there)."""
        unets, sources = [], []
        for i, folder in enumerate(self.folders):
            if i == self.own:
                unets.append(live)
                sources.append("this expert (live)")
                continue
            unet, what = self._band(i, folder, trainer)
            unets.append(unet)
            sources.append(what)
        return unets, sources

    def _band(self, i: int, folder: Path, trainer):
        picked = pick_refiner(folder)
        if not isinstance(picked, str):
            cached = self._loaded.get(i)
            if cached is not None and cached[0] == picked.key:
                return cached[1], picked.describe()
            try:
                unet = _load(picked, trainer)
            except RefinerUnusable as why:
                log.info("validation chain: %s unusable (%s); a stand-in is used", folder, why)
            else:
                self._loaded[i] = (picked.key, unet)
                return unet, picked.describe()
        return self._stand_in(trainer), f"stand-in {self.stand_in} ({folder.name} not ready)"

    def _stand_in(self, trainer):
        if self._stand_in_unet is None:
            from diffusers import UNet2DConditionModel

            from expertune.io import no_progress_bars

            with no_progress_bars():
                unet = UNet2DConditionModel.from_pretrained(self.stand_in, subfolder="unet")
            self._stand_in_unet = _ready(unet, trainer)
        return self._stand_in_unet


def _load(picked, trainer):
    if picked.kind == "checkpoint":
        return _ready(_unet_from_checkpoint(picked.path, trainer), trainer)
    from diffusers import UNet2DConditionModel

    from expertune.io import no_progress_bars

    try:
        with no_progress_bars():
            unet = UNet2DConditionModel.from_pretrained(
                picked.path, subfolder="unet", use_safetensors=True
            )
    except (OSError, ValueError) as err:
        raise RefinerUnusable(f"could not be loaded ({type(err).__name__})") from err
    return _ready(unet, trainer)


def _ready(unet, trainer):
    live = trainer.accelerator.unwrap_model(trainer.unet)
    unet.requires_grad_(False)
    return unet.to(device=trainer.accelerator.device, dtype=next(live.parameters()).dtype).eval()


def chain_pipeline(trainer, unets: list):
    """A StableDiffusionXLPipeline whose UNet routes the chain's experts by timestep."""
    from expertune.pipeline.assemble import assemble_pipeline
    from expertune.pipeline.router import TimestepRouter

    edges = trainer.cfg.band_plan(trainer.num_train_timesteps).edges
    router = TimestepRouter.from_unets(unets, edges)
    pipe = assemble_pipeline(trainer.components, router, trainer.param, img2img=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(trainer.accelerator.device)
