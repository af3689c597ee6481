"""Procedural synthetic PCB images with injected defects, for training without real data."""

from .generate import CLASSES, DEFAULT_VIEW, SynthSummary, generate_dataset, render_sample

__all__ = ["CLASSES", "DEFAULT_VIEW", "SynthSummary", "generate_dataset", "render_sample"]
