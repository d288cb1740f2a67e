"""Inference: sliding window, fusion of the global and patch models, post-processing."""
