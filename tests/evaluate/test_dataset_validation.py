"""Dataset validation starts at the expert's own upper band edge, whatever the strength."""

from __future__ import annotations

import pytest
import torch

from expertune.evaluate.dataset_validation import DatasetSettings, DatasetValidator
from expertune.evaluate.eval_set import EvalSet
from expertune.schedule.bands import expert_band


def settings(guidance: float = 1.0) -> DatasetSettings:
    return DatasetSettings(
        count=2,
        steps=10,
        guidance=guidance,
        guidance_rescale=0.0,
        seed=7,
        prediction_type="v_prediction",
    )


def samples(fake_sample, n: int = 2) -> EvalSet:
    items = [fake_sample(i) for i in range(n)]
    return EvalSet(
        items, tuple(f"caption {i}" for i in range(n)), tuple(f"{i}.png" for i in range(n)), "test"
    )


class Calls:
    """Records every UNet call's timesteps and noisy input."""

    def __init__(self, unet) -> None:
        self.calls: list[tuple[list[int], torch.Tensor]] = []
        self.handle = unet.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        sample, timestep = args[0], args[1]
        self.calls.append((timestep.tolist(), sample.detach().clone()))

    def close(self) -> None:
        self.handle.remove()


@pytest.mark.parametrize(
    ("strength", "invert"), [(0.2, False), (0.35, False), (0.5, False), (0.35, True)]
)
def test_noises_to_the_band_edge_and_denoises_through_the_band(
    tiny_parts, fake_sample, strength, invert
):
    unet, vae, scheduler = tiny_parts
    band = expert_band(True, strength, invert)
    validator = DatasetValidator(unet, vae, scheduler, band, 1000, settings())
    calls = Calls(unet)
    try:
        with torch.no_grad():
            results = validator.run(samples(fake_sample, 1))
    finally:
        calls.close()
    (result,) = results
    assert result.timesteps[0] == band.hi and result.timesteps[-1] == band.lo
    first_t, first_x = calls.calls[0]
    assert first_t == [band.hi]
    assert [t[0] for t, _ in calls.calls] == list(result.timesteps)
    latents = fake_sample(0)["latents"][None]
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(7))
    expected = scheduler.add_noise(latents, noise, torch.tensor([band.hi]))
    torch.testing.assert_close(first_x, expected)
    assert result.panel.size == (3 * 64 + 2 * 2, 64 + 12)
    assert result.refined.size == (64, 64) and 0 < result.psnr < 100


def test_guidance_runs_a_zero_unconditional_half(tiny_parts, fake_sample):
    unet, vae, scheduler = tiny_parts
    band = expert_band(True, 0.35, False)
    calls = Calls(unet)
    try:
        with torch.no_grad():
            DatasetValidator(unet, vae, scheduler, band, 1000, settings(5.0)).run(
                samples(fake_sample, 1)
            )
    finally:
        calls.close()
    assert all(len(t) == 2 and t[0] == t[1] for t, _ in calls.calls)


def test_same_inputs_same_images_and_the_refiner_adds_a_chain_panel(tiny_parts, fake_sample):
    unet, vae, scheduler = tiny_parts
    band = expert_band(True, 0.35, True)
    with torch.no_grad():
        a = DatasetValidator(unet, vae, scheduler, band, 1000, settings()).run(samples(fake_sample))
        torch.manual_seed(123)  # global RNG must not matter
        b = DatasetValidator(unet, vae, scheduler, band, 1000, settings(), unet).run(
            samples(fake_sample)
        )
    assert [r.psnr for r in a] == [r.psnr for r in b]
    assert a[0].refined.tobytes() == b[0].refined.tobytes()
    assert b[0].chain_psnr is not None and a[0].chain_psnr is None
    assert b[0].panel.width > a[0].panel.width
