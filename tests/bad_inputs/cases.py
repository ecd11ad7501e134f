"""The bad-input corpus as data: adding a case is adding one line.

Each case: an id, the command line after `expertune` ({ws}, {bad}, {model}, {out},
{stage1}, {stage2} are workspace paths; '{stage1+LINE}' is stage one's config.env with
LINE appended; {{ and }} are literal braces), then words the one error line must contain.
`late=True` marks the few errors that can only be found after the model is loaded.
"""

# ruff: noqa: E501  (one case per line reads as a table)

import pytest


def case(id, command, *words, late=False):
    return pytest.param(command, words, late, id=id)


CASES = [
    # config keys, types and values
    case("unknown-env-name", "train --config '{stage1+export LEARNIN_RATE=1e-4}'", "LEARNIN_RATE", "did you mean LEARNING_RATE"),
    case("unknown-flag", "train --config {stage1} --refiner_trainig_strength=0.3", "--refiner_trainig_strength", "did you mean --refiner_training_strength"),
    case("unknown-flag-in-extra-args", "train --config '{stage1+export TRAINER_EXTRA_ARGS=\"--learning_rat=1\"}'", "--learning_rat", "TRAINER_EXTRA_ARGS", "did you mean --learning_rate"),
    case("wrong-type-int", "train --config {stage1} --train_batch_size=four", "--train_batch_size=four", "whole number"),
    case("wrong-type-float", "train --config {stage1} --learning_rate=fast", "--learning_rate=fast", "must be a number"),
    case("wrong-type-bool", "train --config {stage1} --rescale_betas_zero_snr=maybe", "--rescale_betas_zero_snr=maybe", "true or false"),
    case("wrong-type-in-env", "train --config '{stage1+export TRAIN_BATCH_SIZE=two}'", "TRAIN_BATCH_SIZE=two", "whole number"),
    case("strength-0", "train --config {stage1} --refiner_training_strength=0", "--refiner_training_strength=0", "greater than 0"),
    case("strength-1", "train --config {stage1} --refiner_training_strength=1", "--refiner_training_strength=1", "less than 1"),
    case("strength-negative", "train --config {stage1} --refiner_training_strength=-0.2", "--refiner_training_strength=-0.2", "greater than 0"),
    case("strength-above-1", "train --config {stage1} --refiner_training_strength=1.5", "--refiner_training_strength=1.5", "less than 1"),
    case("strength-empties-a-band", "train --config {stage1} --refiner_training_strength=0.0001", "no timesteps", "[0.001, 0.999]"),
    case("invert-without-refiner-training", "train --config {stage1} --refiner_training=false", "--refiner_training_invert_schedule needs --refiner_training"),
    case("dora-with-full-training", "train --config {stage1} --use_dora", "DoRA needs MODEL_TYPE=lora"),
    case("dora-not-implemented", "train --config {stage1} --model_type=lora --use_dora", "USE_DORA", "not implemented"),
    case("bitfit-with-lora", "train --config {stage1} --model_type=lora --use_bitfit", "USE_BITFIT", "MODEL_TYPE=lora"),
    case("unknown-prediction-type", "train --config {stage1} --prediction_type=x_prediction", "--prediction_type=x_prediction", "'v_prediction'"),
    case("unknown-spacing", "train --config {stage1} --training_scheduler_timestep_spacing=uniform", "=uniform", "'trailing'"),
    case("unknown-mixed-precision", "train --config {stage1} --mixed_precision=fp8", "--mixed_precision=fp8", "'bf16'"),
    case("batch-size-0", "train --config {stage1} --train_batch_size=0", "--train_batch_size=0", "at least 1"),
    case("learning-rate-0", "train --config {stage1} --learning_rate=0", "--learning_rate=0", "greater than 0"),
    case("learning-rate-negative", "train --config {stage1} --learning_rate=-1e-5", "--learning_rate=-1e-5", "greater than 0"),
    case("resolution-not-multiple-of-8", "train --config {stage1} --resolution=1020", "--resolution=1020", "multiple of 8"),
    case("resolution-too-small", "train --config {stage1} --resolution=32", "--resolution=32", "at least 64"),
    case("no-steps-and-no-epochs", "train --config {stage1} --max_train_steps=0 --num_train_epochs=0", "--num_train_epochs", "set one of them above 0"),
    case("skip-nonfinite-negative", "train --config {stage1} --skip_nonfinite_steps=-1", "--skip_nonfinite_steps=-1", "at least 0"),
    case("checkpoint-limit-0", "train --config {stage1} --checkpoints_total_limit=0", "--checkpoints_total_limit=0", "at least 1"),
    # config files
    case("config-file-missing", "train --config {ws}/config/nowhere.env", "nowhere.env", "does not exist"),
    case("config-env-syntax-error", "train --config {bad}/broken.env", "broken.env:3", "cannot parse", "KEY=value"),
    case("config-env-unset-variable", "train --config '{stage1+export OUTPUT_DIR=\"${{BASE}}/x\"}'", "${{BASE}}", "not set earlier"),
    case("config-unknown-extension", "train --config {bad}/config.yaml", "config.yaml", ".json or .toml"),
    case("config-json-malformed", "train --config {bad}/bad.json", "bad.json:1", "not valid JSON"),
    case("config-toml-malformed", "train --config {bad}/bad.toml", "bad.toml", "not valid TOML"),
    # the model reference
    case("model-missing", "train --config {stage1} --model_name={ws}/no-model", "no-model", "does not exist"),
    case("model-hub-offline", "train --config {stage1} --model_name=expertune-tests/not-cached", "'expertune-tests/not-cached'", "could not be reached", "offline"),
    case("model-not-diffusers", "train --config {stage1} --model_name={bad}/not-diffusers", "not a diffusers model", "model_index.json"),
    case("model-other-family", "train --config {stage1} --model_name={bad}/flux", "FluxPipeline", "not an SDXL model"),
    case("model-sd15", "train --config {stage1} --model_name={bad}/sd15", "StableDiffusionPipeline", "not an SDXL model"),
    case("model-single-file", "train --config {stage1} --model_name={bad}/model.ckpt", "single-file", "diffusers folder"),
    case("model-pickle-weights", "train --config {stage1} --model_name={bad}/pickle-model", "pickle", "--allow_pickle_weights", late=True),
    # data
    case("dataset-folder-missing", "train --config {stage1} --data_backend_config= --instance_data_dir={ws}/no-images", "no-images", "does not exist"),
    case("dataset-empty-after-filtering", "train --config {stage1} --data_backend_config= --instance_data_dir={bad}/empty-data", "no usable images", "empty-data", late=True),
    case("dataloader-json-malformed", "train --config {stage1} --data_backend_config={bad}/dataloader-malformed.json", "dataloader-malformed.json", "not valid JSON", "line"),
    case("dataloader-json-missing", "train --config {stage1} --data_backend_config={ws}/none.json", "none.json", "does not exist"),
    case("dataloader-without-images", "train --config {stage1} --data_backend_config={bad}/dataloader-no-images.json", "dataloader-no-images.json", "image dataset"),
    case("dataloader-folder-missing", "train --config {stage1} --data_backend_config={bad}/dataloader-missing-folder.json", "no-such-images", "does not exist"),
    # OUTPUT_DIR and checkpoints
    case("output-dir-is-a-file", "train --config {stage1} --output_dir={bad}/a-file.txt", "a-file.txt is a file"),
    case("output-dir-under-a-file", "train --config {stage1} --output_dir={bad}/a-file.txt/sub", "a-file.txt is a file"),
    case("output-dir-is-the-model", "train --config {stage1} --output_dir={model}", "OUTPUT_DIR", "MODEL_NAME", "new folder"),
    case("output-dir-inside-the-model", "train --config {stage1} --output_dir={model}/unet/out", "MODEL_NAME (or inside it)", "new folder"),
    case("output-dir-holds-the-other-expert", "train --config {stage2} --output_dir={out}", "already holds the base expert", "set a new OUTPUT_DIR"),
    case("resume-named-checkpoint-missing", "train --config {stage1} --resume_from_checkpoint=checkpoint-999", "checkpoint-999", "not a complete checkpoint"),
    case("resume-corrupt-checkpoint", "train --config {stage1} --output_dir={bad}/corrupt-out --resume_from_checkpoint=checkpoint-1", "checkpoint-1 is corrupt", "checksum"),
    case("resume-latest-all-corrupt", "train --config {stage1} --output_dir={bad}/corrupt-out --resume_from_checkpoint=latest", "no complete checkpoint", "corrupt: checkpoint-1"),
    # generate
    case("generate-different-parameterisation", "generate --base {bad}/eps-expert --refiner {bad}/v-expert --prompt x --out {ws}/x.png", "disagree on parameterisation", "--prediction_type"),
    case("generate-not-a-pipeline", "generate --base {bad}/not-diffusers --refiner {bad}/v-expert --prompt x --out {ws}/x.png", "--base", "model_index.json"),
]  # fmt: skip
