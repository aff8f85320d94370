"""Grade calibration: from "the rules under the instances' uncertainty" to "how often that grade is right".

The rules engine's grade probabilities treat every found instance as real with its confidence, so they
account for false detections but not for missed ones: a device on which the model found nothing is
"Premium" with probability 1, however many scratches the model usually misses. On the bundled model's
held-out devices that made the Back Market top grade's probability 0.87 on average for 50% accuracy
(ECE 0.37).

The correction is a per-standard transition matrix M, fitted on validation devices only:
M[h, g] = P(the true grade is g | the rules alone would grade h). The calibrated distribution is
p'(g) = sum_h p(h) M[h, g], so a device's probability of each grade mixes what is usually true after
each grade the rules could have given it. The rules' own grade, its reasons and the per-instance
evidence are unchanged: calibration only says how much to trust them, which is what `needs_review`
and the quality team's queue need. M is the maximum-likelihood fit of that mixture (EM) with a small
Dirichlet prior, half towards the identity ("trust the rules") and half flat ("know nothing"), so a
grade validation never saw predicted keeps most of its raw probability.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

PRIOR_WEIGHT = 1.0  # pseudo-devices per row: small next to the ~250 validation devices per standard
EM_ITERATIONS = 200
ROW_TOLERANCE = 1e-3


class GradeCalibration(BaseModel):
    """One standard's transition matrix, as the model card stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grades: tuple[str, ...] = Field(min_length=2, description="the standard's grades, best first")
    # matrix[h][g]: probability that the true grade is grades[g] when the rules alone give grades[h].
    matrix: tuple[tuple[float, ...], ...]
    devices: int = Field(ge=0, description="validation devices it was fitted on")
    standard_version: str = Field(description="the rules version the validation devices were graded with")

    @model_validator(mode="after")
    def _stochastic(self) -> GradeCalibration:
        k = len(self.grades)
        if len(self.matrix) != k or any(len(row) != k for row in self.matrix):
            raise ValueError(f"grade calibration matrix must be {k} x {k} for grades {list(self.grades)}")
        for name, row in zip(self.grades, self.matrix, strict=True):
            if min(row) < 0 or abs(sum(row) - 1.0) > ROW_TOLERANCE:
                raise ValueError(f"grade calibration row {name!r} must be probabilities summing to 1")
        return self

    def apply(self, probabilities: Mapping[str, float]) -> dict[str, float]:
        """Calibrated probability of each grade from the rules' probabilities (same grade names)."""
        if set(probabilities) != set(self.grades):
            raise ValueError(
                f"grade calibration is for grades {list(self.grades)}, got {sorted(probabilities)}"
            )
        p = np.array([probabilities[g] for g in self.grades], dtype=float)
        q = p @ np.array(self.matrix, dtype=float)
        q = q / q.sum()
        return {g: float(v) for g, v in zip(self.grades, q, strict=True)}


def fit_transition(
    probs: np.ndarray,
    true: np.ndarray,
    prior_weight: float = PRIOR_WEIGHT,
    iterations: int = EM_ITERATIONS,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Maximum-likelihood (with a Dirichlet prior) M for p'(true) = sum_h probs[h] M[h, true].

    `probs`: (n, k) the rules' grade probabilities per device. `true`: (n,) true grade indices, or an
    (n, k) boolean mask of the grades each device may truly have (a real photo known only to be
    cracked, or only to be listable). `weights`: each device's weight in the likelihood (default 1).
    EM: each device's weight is credited to the pairs (raw grade h, allowed true grade g) in proportion
    to probs[h] M[h, g], then each row is re-estimated from those soft counts. The likelihood never
    decreases."""
    probs = np.asarray(probs, dtype=float)
    n, k = probs.shape
    true = np.asarray(true)
    allowed = (
        true.astype(bool)
        if true.ndim == 2
        else np.eye(k, dtype=bool)[true.astype(int)]
        if n
        else np.zeros((0, k), bool)
    )
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    prior = prior_weight * (np.eye(k) + 1.0 / k) / 2.0
    # A set label starts where the rules point inside it (the likelihood cannot tell grades of one set
    # apart, so EM keeps that split): trust the rules unless a label contradicts them.
    share = allowed * (probs + 1e-3)
    share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-300)
    m = probs.T @ (share * w[:, None]) + prior
    m /= m.sum(axis=1, keepdims=True)
    for _ in range(iterations):
        joint = probs[:, :, None] * m[None, :, :] * allowed[:, None, :]  # (n, h, g)
        joint /= np.maximum(joint.sum(axis=(1, 2), keepdims=True), 1e-300)
        m = (joint * w[:, None, None]).sum(axis=0) + prior
        m /= m.sum(axis=1, keepdims=True)
    return m


def fit_grade_calibration(
    grades: tuple[str, ...],
    standard_version: str,
    rows: list[tuple[Mapping[str, float], str | Collection[str]]],
    weights: Sequence[float] | None = None,
) -> GradeCalibration:
    """A standard's calibration from validation devices: (rules' probabilities, true grade) pairs; a
    true grade may be a set of grades (a real photo known only to be listable), and `weights` weigh the
    devices (real photos against synthetic ones)."""
    probs = np.array([[p[g] for g in grades] for p, _ in rows], dtype=float).reshape(len(rows), len(grades))
    allowed = np.array(
        [[g == t if isinstance(t, str) else g in t for g in grades] for _, t in rows], dtype=bool
    ).reshape(len(rows), len(grades))
    m = fit_transition(probs, allowed, weights=None if weights is None else np.asarray(weights, float))
    return GradeCalibration(
        grades=grades,
        matrix=tuple(tuple(round(float(v), 6) for v in row) for row in m),
        devices=len(rows),
        standard_version=standard_version,
    )
