"""Photo-level verdicts read from the encoder: which view a photo shows, whether it is usable, and which
kind of device it shows.

The network's own view and quality heads learnt from synthetic photos only, and on real ones they
fail in ways a person never would: a phone held with its display on is called a back view (its colours
look like a back cover to them), a clean product photo on white is called badly exposed. The encoder's
stride-16 features (the optional output `model.outputs.ENCODER_S16`) carry what is needed to tell
them apart, so a card may carry a `PhotoProbe` per verdict: a multinomial logistic model over those
features pooled over the whole frame (each channel's mean and maximum), fitted at calibration on
synthetic photos (where the truth is known) and real ones (`training.probes`); the heads' own
log-probabilities are features too. `apply_probes` puts
its distribution in place of the head's (`view_probs`, `quality_probs`), so everything downstream
(the crop pass's merge excepted: it runs before) reads the probe's verdict without knowing of it.

The device's kind has no head: its probe adds an output of its own, `KIND_OUTPUT` (a distribution over
`DeviceKind`; the bundled probe tells a laptop from the rest, "phone"), which `model.device_kind` reads
when the caller did not say what the device is. Graded as the default phone, a laptop's lid was judged
as a phone's back glass (7 of the 15 validation lids Unlistable for a "crack on the back") and its
scratches measured at half their size.

Torch-free: `model.inference.infer` applies it for serving, evaluation and calibration alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.outputs import ENCODER_S16, QUALITY_CLASSES, VIEW_CLASSES
from model.taxonomy import DeviceKind

# Each channel's mean and maximum over all cells of the frame, then the log of the network's own view
# and quality distributions: the probe corrects the heads where real photos fool them and keeps them
# where they are good (synthetic side views, say).
POOL = "encoder_s16_frame_heads_v1"
LOG_FLOOR = 1e-4
# The network's own heads, whose log-probabilities are features.
HEADS: tuple[str, ...] = ("view_probs", "quality_probs")
KIND_OUTPUT = "kind_probs"  # the kind probe's output: no head gives it
KIND_CLASSES: tuple[str, ...] = tuple(k.value for k in DeviceKind)
# The verdicts a probe may give: the card key, the output it replaces (or adds) and that output's classes.
VERDICTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "view": ("view_probs", VIEW_CLASSES),
    "quality": ("quality_probs", QUALITY_CLASSES),
    "kind": (KIND_OUTPUT, KIND_CLASSES),
}


def pooled_features(outputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The photo's encoder features pooled over its frame and its heads' log-probabilities (before any
    probe replaced them); None when the outputs lack the encoder's features."""
    f = outputs.get(ENCODER_S16)
    if f is None:
        return None
    v = np.asarray(f, dtype=np.float64).reshape(f.shape[0], -1)
    heads = [np.log(np.clip(np.asarray(outputs[name], np.float64), LOG_FLOOR, 1.0)) for name in HEADS]
    return np.concatenate([v.mean(axis=1), v.max(axis=1), *heads])


class PhotoProbe(BaseModel):
    """P(class) = softmax(weights @ ((features - mean) / scale) + bias) over `classes` (the output's
    classes, in its order); a class the fit never saw has no row and probability 0. The classes in
    `head_split` share the probability the probe gives them together in the proportions of the
    network's head: the probe tells a side view from the front and the back, the head which side
    (the real photos the probe learns from show no side)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: str = POOL
    classes: tuple[str, ...]  # the rows of weights and bias, a subset of the output's classes
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    head_split: tuple[str, ...] = ()
    photos: int = Field(ge=0, description="photos it was fitted on")
    sources: dict[str, int] = Field(default_factory=dict, description="photos per source")

    @model_validator(mode="after")
    def _shapes(self) -> PhotoProbe:
        if self.features != POOL:
            raise ValueError(f"unknown probe features {self.features!r}")
        if len(self.weights) != len(self.classes) or len(self.bias) != len(self.classes):
            raise ValueError(f"{len(self.classes)} classes need as many weight rows and biases")
        d = len(self.mean)
        if len(self.scale) != d or any(len(row) != d for row in self.weights):
            raise ValueError(f"every weight row, mean and scale needs {d} values")
        if any(v <= 0 for v in self.scale):
            raise ValueError("scale must be positive")
        return self

    def distribution(
        self, features: np.ndarray, all_classes: tuple[str, ...], head: np.ndarray | None = None
    ) -> np.ndarray:
        """The probe's distribution over `all_classes` (the output's classes); `head`: the network's
        distribution over them, which splits the `head_split` classes' share."""
        x = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = np.asarray(self.weights) @ x + np.asarray(self.bias)
        p = np.exp(z - z.max())
        p /= p.sum()
        out = np.zeros(len(all_classes))
        for name, v in zip(self.classes, p, strict=True):
            out[all_classes.index(name)] = v
        split = [all_classes.index(c) for c in self.head_split]
        if split and head is not None:
            h = np.asarray(head, dtype=np.float64)[split]
            if h.sum() > 0:
                out[split] = out[split].sum() * h / h.sum()
        return out


def check_classes(probes: Mapping[str, PhotoProbe]) -> None:
    """ValueError for a verdict that has no probe kind or a class its output lacks."""
    for key, probe in probes.items():
        if key not in VERDICTS:
            raise ValueError(f"photo_probes for {key!r}: only {sorted(VERDICTS)} have probes")
        unknown = (set(probe.classes) | set(probe.head_split)) - set(VERDICTS[key][1])
        if unknown:
            raise ValueError(f"photo_probes[{key}] has classes its output lacks: {sorted(unknown)}")


def apply_probes(outputs: dict[str, np.ndarray], probes: Mapping[str, PhotoProbe]) -> dict[str, np.ndarray]:
    """`outputs` with each probed verdict's distribution replaced (or, for the kind, added) by its
    probe's (as float32, like the network's); unchanged when there is no probe or the outputs lack the
    encoder's features. Every probe reads the heads as the network gave them."""
    if not probes:
        return outputs
    f = pooled_features(outputs)
    if f is None:
        return outputs
    out = dict(outputs)
    for key, probe in probes.items():
        name, classes = VERDICTS[key]
        out[name] = probe.distribution(f, classes, outputs.get(name)).astype(np.float32)
    return out
