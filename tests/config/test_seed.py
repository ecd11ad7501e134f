"""The guide's two config.env blocks resolve to the flags and bands the guide intends."""

from __future__ import annotations

from expertune.config import load_config

STAGE1_FLAGS = {
    "use_bitfit": False,
    "use_dora": False,
    "model_type": "full",
    "model_family": "sdxl",
    "pretrained_model_name_or_path": "segmind/SSD-1B",
    "learning_rate": 4e-7,
    "train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "gradient_checkpointing": True,
    "refiner_training": True,
    "refiner_training_strength": 0.35,
    "refiner_training_invert_schedule": True,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "training_scheduler_timestep_spacing": "trailing",
    "validation_using_datasets": False,
    "output_dir": "output",
}
STAGE2_FLAGS = STAGE1_FLAGS | {
    "refiner_training_invert_schedule": False,
    "validation_using_datasets": True,
    "output_dir": "/some/new/path",
}


def _assert_flags(cfg, expected):
    flags = cfg.as_flags()
    assert {k: flags[k] for k in expected} == expected


def test_stage_one_keeps_flags_of_both_extra_args_lines(stage1):
    cfg = load_config(str(stage1))
    _assert_flags(cfg, STAGE1_FLAGS)
    assert cfg.expert_band() == (350, 999)


def test_stage_one_sources_point_at_the_lines_that_wrote_them(stage1):
    sources = load_config(stage1).sources()
    name = str(stage1)
    assert sources["learning_rate"] == f"LEARNING_RATE ({name}:10)"
    assert sources["refiner_training_strength"].endswith(f"TRAINER_EXTRA_ARGS at {name}:23)")
    assert sources["prediction_type"].endswith(f"TRAINER_EXTRA_ARGS at {name}:27)")


def test_stage_two_appended_to_stage_one(write, stage1, stage2):
    """A user keeps stage one's file and appends the guide's stage-two lines."""
    text = stage1.read_text(encoding="utf-8") + "\n" + stage2.read_text(encoding="utf-8")
    cfg = load_config(write("config.env", text))
    _assert_flags(cfg, STAGE2_FLAGS)
    assert cfg.expert_band() == (0, 349)
    assert "TRAINER_EXTRA_ARGS at" in cfg.sources()["validation_using_datasets"]


def test_stage_two_swapped_into_stage_one(write, stage1, stage2):
    """Or edits stage one's file in place: the extra-args lines swapped, OUTPUT_DIR added."""
    text = stage1.read_text(encoding="utf-8")
    head = text[: text.index("# Enable first stage model training")]
    cfg = load_config(write("config.env", head + stage2.read_text(encoding="utf-8")))
    _assert_flags(cfg, STAGE2_FLAGS)
    assert cfg.expert_band() == (0, 349)


def test_both_stages_share_one_parameterisation(write, stage1, stage2):
    text = stage1.read_text(encoding="utf-8") + stage2.read_text(encoding="utf-8")
    one, two = load_config(stage1), load_config(write("config.env", text))
    keys = ("prediction_type", "rescale_betas_zero_snr", "training_scheduler_timestep_spacing")
    assert [getattr(one, k) for k in keys] == [getattr(two, k) for k in keys]
    assert one.band_plan() == two.band_plan()
    assert one.expert_band()[0] == two.expert_band()[1] + 1
