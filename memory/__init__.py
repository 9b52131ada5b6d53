"""Chroma memory of past architectures and lessons."""
