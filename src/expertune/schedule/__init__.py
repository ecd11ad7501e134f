"""Noise schedule, band plan, timestep sampling and loss targets (no model code here)."""
