"""Synthetic device photos with exact ground truth: devices, defects, photography, gallery, generator.

Entry points: `SynthConfig`, `make_sample` (one photo in memory), `generate` (a dataset on disk).
"""

from training.synth.generator import Sample, SynthConfig, generate, make_sample

__all__ = ["Sample", "SynthConfig", "generate", "make_sample"]
