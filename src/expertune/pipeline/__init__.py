"""Inference: experts chained over their bands with diffusers pipelines."""
