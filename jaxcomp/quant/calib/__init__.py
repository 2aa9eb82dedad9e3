"""Calibration-based post-training quantization (placeholder docstring)."""
