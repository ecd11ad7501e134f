"""Export: an expert folder as the files other tools load.

- `single_file.py`: the whole pipeline as one checkpoint in the original SDXL key layout
  (what ComfyUI and A1111 load), with modelspec metadata and the v_pred/ztsnr markers;
- `lora.py`: a LoRA expert's adapter in kohya's `lora_unet_...` layout or diffusers';
- `chain.py`: every expert of a `moe` run, plus the handovers between them.

The key layouts are derived from diffusers' own conversion tables (`ldm_keys.py`,
`text_encoders.py`); `from_single_file` and `load_lora_weights` are the tests' oracle.
"""
