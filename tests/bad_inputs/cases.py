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
    case("dataset-only-captioned-gifs", "train --config {stage1} --data_backend_config= --instance_data_dir={bad}/gif-data", "no usable images", "a.gif has a caption but is a .gif file", late=True),
    case("dataset-only-broken-links", "train --config {stage1} --data_backend_config= --instance_data_dir={bad}/link-data", "no usable images", "a.png is a broken link", late=True),
    case("cache-dir-under-a-file", "train --config {stage1} --data_backend_config= --instance_data_dir={ws}/data --cache_dir={bad}/a-file.txt/cache", "cache folder", "a-file.txt is a file", "CACHE_DIR"),
    case("dataset-cache-dir-under-a-file", "train --config {stage1} --data_backend_config={bad}/dataloader-cache-under-a-file.json", "cache folder", "a-file.txt is a file", "cache_dir_vae"),
    # OUTPUT_DIR and checkpoints
    case("output-dir-is-a-file", "train --config {stage1} --output_dir={bad}/a-file.txt", "a-file.txt is a file"),
    case("output-dir-under-a-file", "train --config {stage1} --output_dir={bad}/a-file.txt/sub", "a-file.txt is a file"),
    case("output-dir-is-the-model", "train --config {stage1} --output_dir={model}", "OUTPUT_DIR", "MODEL_NAME", "new folder"),
    case("output-dir-inside-the-model", "train --config {stage1} --output_dir={model}/unet/out", "MODEL_NAME (or inside it)", "new folder"),
    case("output-dir-holds-the-other-expert", "train --config {stage2} --output_dir={out}", "already holds the base expert", "set a new OUTPUT_DIR"),
    case("resume-without-checkpoint", "train --config {stage1} --output_dir={bad}/empty-out --resume_from_checkpoint=latest", "no complete checkpoint", "drop the flag"),
    case("resume-named-checkpoint-missing", "train --config {stage1} --resume_from_checkpoint=checkpoint-999", "checkpoint-999", "not a complete checkpoint"),
    case("resume-corrupt-checkpoint", "train --config {stage1} --output_dir={bad}/corrupt-out --resume_from_checkpoint=checkpoint-1", "checkpoint-1 is corrupt", "checksum"),
    case("resume-latest-all-corrupt", "train --config {stage1} --output_dir={bad}/corrupt-out --resume_from_checkpoint=latest", "no complete checkpoint", "corrupt: checkpoint-1"),
    # resuming a checkpoint with settings that do not fit it (checked before anything is written)
    case("resume-changed-strength", "train --config {stage1} --output_dir={bad}/crashed-out --resume_from_checkpoint=latest --refiner_training_strength=0.5", "checkpoint-1 was trained on timesteps", "--refiner_training_strength"),
    case("resume-changed-invert", "train --config {stage1} --output_dir={bad}/crashed-out --resume_from_checkpoint=latest --refiner_training_invert_schedule=false", "was trained on timesteps", "but this config trains 0.."),
    case("resume-changed-prediction-type", "train --config {stage1} --output_dir={bad}/crashed-out --resume_from_checkpoint=latest --prediction_type=epsilon", "another parameterisation", "prediction_type v_prediction -> epsilon"),
    case("resume-changed-zero-snr", "train --config {stage1} --output_dir={bad}/crashed-out --resume_from_checkpoint=latest --rescale_betas_zero_snr=false", "rescale_betas_zero_snr True -> False"),
    case("resume-changed-spacing", "train --config {stage1} --output_dir={bad}/crashed-out --resume_from_checkpoint=latest --training_scheduler_timestep_spacing=leading", "timestep_spacing trailing -> leading"),
    case("resume-named-changed-prediction", "train --config {stage1} --output_dir={bad}/crashed-out --resume_from_checkpoint=checkpoint-1 --prediction_type=sample", "prediction_type v_prediction -> sample"),
    case("resume-changed-batch-size", "train --config {stage1} --output_dir={bad}/crashed-out --resume_from_checkpoint=latest --train_batch_size=3", "not a whole number of batches of 3", "TRAIN_BATCH_SIZE"),
    case("resume-changed-batch-size-finished", "train --config {stage1} --resume_from_checkpoint=latest --train_batch_size=3", "not a whole number of batches of 3"),
    case("resume-past-max-steps", "train --config {stage1} --output_dir={bad}/crashed-at-5 --resume_from_checkpoint=latest --max_train_steps=3", "checkpoint-5 is at step 5", "past --max_train_steps=3"),
    # OUTPUT_DIR: unset, dangling, the data folder, in use
    case("output-dir-empty", "train --config '{stage1+export OUTPUT_DIR=\"\"}'", "OUTPUT_DIR is not set (or is empty)"),
    case("output-dir-dangling-link", "train --config {stage1} --output_dir={bad}/dangling-out", "dangling-out is a link to", "which does not exist"),
    case("output-dir-is-the-data-folder", "train --config {stage1} --output_dir={ws}/data", "image folder of dataset 'demo-shapes'", "outside the data folders"),
    case("output-dir-inside-the-data-folder", "train --config {stage1} --output_dir={ws}/data/runs/one", "is (or is inside) the image folder", "outside the data folders"),
    case("output-dir-inside-instance-dir", "train --config {stage1} --data_backend_config= --instance_data_dir={ws}/data --output_dir={ws}/data/out", "dataset 'instance_data_dir'"),
    case("output-dir-in-use", "train --config {stage1} --output_dir={bad}/locked-out", "in use by another training run", "pid 4242 on host elsewhere"),
    # model folders whose configs do not fit the family (checked before any weight loads)
    case("model-unet-sd15-shaped", "train --config {stage1} --model_name={bad}/sd15-unet", "not an SDXL UNet", "addition_embed_type None"),
    case("model-unet-cross-attention", "train --config {stage1} --model_name={bad}/wide-unet", "cross_attention_dim 2048", "text encoders give 64"),
    case("model-unet-of-the-refiner", "train --config {stage1} --model_name={bad}/refiner-unet", "added embedding of 72", "gives 80"),
    case("model-index-not-json", "train --config {stage1} --model_name={bad}/index-garbage", "model_index.json is not valid JSON", "line 1"),
    case("model-index-not-an-object", "train --config {stage1} --model_name={bad}/index-list", "holds a JSON list, not an object"),
    case("model-index-not-utf8", "train --config {stage1} --model_name={bad}/index-latin1", "model_index.json is not UTF-8"),
    case("model-pickle-weights-early", "train --config {stage1} --model_name={bad}/pickle-model --max_train_steps=2", "pickle", "--allow_pickle_weights"),
    # buckets: checked against the VAE before it loads
    case("alignment-not-a-vae-multiple", "train --config {stage1} --aspect_bucket_alignment=12", "--aspect_bucket_alignment=12", "downsampling factor 8"),
    case("resolution-raised-by-alignment", "train --config {stage1} --data_backend_config= --instance_data_dir={ws}/data --resolution=96", "RESOLUTION 96", "would train at 128"),
    case("dataset-resolution-raised-by-alignment", "train --config {stage1} --data_backend_config={bad}/dataloader-res-96.json", "dataset 'res96' resolution 96", "--aspect_bucket_alignment=64"),
    # values that cannot be right
    case("seed-beyond-64-bits", "train --config {stage1} --seed=99999999999999999999999", "--seed=99999999999999999999999", "less than"),
    case("seed-negative", "train --config '{stage1+export SEED=-1}'", "SEED=-1", "at least 0"),
    case("learning-rate-inf", "train --config {stage1} --learning_rate=inf", "--learning_rate=inf", "finite"),
    case("learning-rate-nan-in-env", "train --config '{stage1+export LEARNING_RATE=nan}'", "LEARNING_RATE=nan", "finite"),
    case("noise-offset-inf", "train --config {stage1} --noise_offset=inf", "--noise_offset=inf", "finite"),
    case("weight-decay-inf", "train --config {stage1} --adam_weight_decay=Infinity", "--adam_weight_decay=Infinity", "finite"),
    case("max-grad-norm-inf", "train --config {stage1} --max_grad_norm=inf", "--max_grad_norm=inf", "finite"),
    case("snr-gamma-nan", "train --config {stage1} --snr_gamma=nan", "--snr_gamma=nan", "finite"),
    # config files: repeated keys, byte-order marks, encodings, required variables, --config twice
    case("config-json-repeated-key", "train --config {bad}/repeat.json", "repeat.json", "'learning_rate' is set twice", "lines 2 and 3"),
    case("config-toml-repeated-key", "train --config {bad}/repeat.toml", "repeat.toml", "'seed' is set twice (lines 2 and 3)"),
    case("config-json-bom-is-read", "train --config {bad}/bom.json", "learning_rate=-1", "greater than 0"),
    case("config-toml-bom-is-read", "train --config {bad}/bom.toml", "learning_rate=-1", "greater than 0"),
    case("config-env-bom-is-read", "train --config {bad}/bom.env", "SEED=x", "bom.env:2", "whole number"),
    case("config-json-not-utf8", "train --config {bad}/latin1.json", "latin1.json:2 is not UTF-8", "save the file as UTF-8"),
    case("config-env-not-utf8", "train --config {bad}/latin1.env", "latin1.env:3 is not UTF-8"),
    case("config-env-required-variable", "train --config {bad}/required.env", "OUTPUT_DIR at", "required.env:", "set RUNS to your runs folder"),
    case("config-env-required-variable-no-colon", "train --config {bad}/required-no-colon.env", "RUNS must be set"),
    case("config-env-required-variable-empty", "train --config {bad}/required-empty.env", "RUNS is empty", "set to a value"),
    case("config-given-twice", "train --config {stage1} --config {stage2}", "--config is given 2 times", "give one config file"),
    case("config-show-given-twice", "config show --config {stage1} --config {stage1}", "--config is given 2 times"),
    case("dataloader-type-not-local", "train --config {stage1} --data_backend_config={bad}/dataloader-type-s3.json", "type (line 4) is 'aws'", "must be 'local'", "local folders only"),
    case("dataloader-bad-resolution", "train --config {stage1} --data_backend_config={bad}/dataloader-bad-resolution.json", "resolution", "'big'"),
    case("dataloader-bad-crop-style", "train --config {stage1} --data_backend_config={bad}/dataloader-bad-crop-style.json", "crop_style", "'middle'", "must be"),
    case("dataloader-repeated-key", "train --config {stage1} --data_backend_config={bad}/dataloader-repeat.json", "'resolution' is set twice", "lines 4, 5"),
    # checkpoints that cannot be resumed, said as such
    case("resume-only-unfinished-checkpoint", "train --config {stage1} --output_dir={bad}/unfinished-out --resume_from_checkpoint=latest", "no complete checkpoint", "without COMPLETE marker", "checkpoint-3"),
    # generate
    case("generate-different-parameterisation", "generate --base {bad}/eps-expert --refiner {bad}/v-expert --prompt x --out {ws}/x.png", "disagree on parameterisation", "--prediction_type"),
    case("generate-not-a-pipeline", "generate --base {bad}/not-diffusers --refiner {bad}/v-expert --prompt x --out {ws}/x.png", "--base", "model_index.json"),
]  # fmt: skip
