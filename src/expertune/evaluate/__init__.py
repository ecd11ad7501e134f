"""Validation images, stable eval loss and CLIP score, during training and after it."""
