"""Cached frozen-encoder features: on CPU, train only the part of the network that learns.

With the first blocks of the encoder frozen (`freeze_blocks`), what they compute is a pure function of
the (augmented) photo: frozen blocks keep eval-mode batch norm and no stochastic depth
(`model.network`). At 384 px that prefix is most of a training step's cost on 2 CPU cores (about 70%
of the forward pass, measured in the bundled model's recipe), so computing it once per photo view and
reusing it makes every later step several times cheaper.

`FeatureCache` fills lazily: the first time a (photo, view) pair is drawn, the photo is loaded and
augmented as usual, the frozen prefix runs under `no_grad`, and the prefix (float16), the training
targets already at mask resolution (`training.engine.mask_targets`) and the photo's labels are kept
in memory. Later draws of the pair reuse them. `views` augmented versions are kept per photo (each
draw picks one at random), so augmentation is sampled once per view rather than once per draw: the
price of the speed, stated in the config.

Memory (float16 by default): at 384 px and stride 4 with 11 frozen Lite0 blocks, about 0.9 MB per view (see `nbytes`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from training.dataset import ManifestDataset
from training.engine import mask_targets

LABELS = ("pixel_valid", "image_label", "image_valid", "view", "quality", "index")


def collate(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


class FeatureCache:
    """Batches of cached frozen-prefix features and mask-resolution targets for a network."""

    def __init__(
        self,
        net,
        dataset: ManifestDataset,
        views: int = 1,
        seed: int = 0,
        fill_batch: int = 8,
        dtype: torch.dtype = torch.float16,
    ):
        if getattr(net, "frozen_blocks", 0) <= 0:
            raise ValueError(
                "a feature cache needs frozen encoder blocks (model overrides: freeze_blocks > 0)"
            )
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.net = net
        self.dataset = dataset
        self.views = views
        self.fill_batch = fill_batch
        self.rng = np.random.default_rng(seed)
        self._store: dict[tuple[int, int], dict] = {}
        self.nbytes = 0
        # float16 halves the memory; its rounding moves gradients by a few percent (tests measure it),
        # well inside the noise of a stochastic batch. float32 reproduces the full pass exactly.
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self._store)

    def _fill(self, keys: list[tuple[int, int]]) -> None:
        missing = list(dict.fromkeys(k for k in keys if k not in self._store))
        was_training = self.net.training
        self.net.eval()  # frozen blocks are in eval mode anyway; this only makes the intent explicit
        try:
            for start in range(0, len(missing), self.fill_batch):
                chunk = missing[start : start + self.fill_batch]
                batch = collate([self.dataset[i] for i, _ in chunk])
                with torch.no_grad():
                    feats, x = self.net.frozen_prefix(batch["image"])
                defects, zone = mask_targets(batch, self.net.mask_stride)
                x_is_tap = bool(feats) and x is feats[-1]
                for j, key in enumerate(chunk):
                    entry = {
                        "feats": [f[j].to(self.dtype).clone() for f in feats],
                        "x": None if x_is_tap else x[j].to(self.dtype).clone(),
                        "defect_cells": defects[j].to(self.dtype).clone(),
                        "zone_cells": zone[j].to(torch.int16).clone(),
                        **{k: batch[k][j].clone() for k in LABELS},
                    }
                    self.nbytes += sum(
                        t.numel() * t.element_size()
                        for t in [*entry["feats"], entry["defect_cells"], entry["zone_cells"]]
                        + ([entry["x"]] if entry["x"] is not None else [])
                    )
                    self._store[key] = entry
        finally:
            self.net.train(was_training)

    def batch(self, indices: list[int], view: int | None = None) -> dict:
        """One training batch for these dataset indices (a random cached view of each, or `view`)."""
        keys = [(i, int(self.rng.integers(self.views)) if view is None else view) for i in indices]
        self._fill(keys)
        entries = [self._store[k] for k in keys]
        feats = [
            torch.stack([e["feats"][t] for e in entries]).float() for t in range(len(entries[0]["feats"]))
        ]
        x = feats[-1] if entries[0]["x"] is None else torch.stack([e["x"] for e in entries]).float()
        out = {k: torch.stack([e[k] for e in entries]) for k in LABELS}
        out["prefix"] = (feats, x)
        out["defect_cells"] = torch.stack([e["defect_cells"] for e in entries]).float()
        out["zone_cells"] = torch.stack([e["zone_cells"] for e in entries]).long()
        return out

    def batches(self, indices: list[int], batch_size: int, drop_last: bool = True) -> Iterator[dict]:
        stop = len(indices) - (len(indices) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            chunk = indices[start : start + batch_size]
            if chunk:
                yield self.batch(chunk)

    def in_order(self, batch_size: int) -> Iterator[dict]:
        """Every photo once, view 0, in dataset order (validation)."""
        idx = list(range(len(self.dataset)))
        for start in range(0, len(idx), batch_size):
            yield self.batch(idx[start : start + batch_size], view=0)
