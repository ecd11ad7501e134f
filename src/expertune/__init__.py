"""expertune: train and run timestep mixture-of-experts diffusion models."""

__version__ = "0.1.0"
