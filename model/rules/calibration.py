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

from collections.abc import Mapping

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
    probs: np.ndarray, true: np.ndarray, prior_weight: float = PRIOR_WEIGHT, iterations: int = EM_ITERATIONS
) -> np.ndarray:
    """Maximum-likelihood (with a Dirichlet prior) M for p'(true) = sum_h probs[h] M[h, true].

    `probs`: (n, k) the rules' grade probabilities per device; `true`: (n,) true grade indices.
    EM: each device's true grade is credited to the raw grades h in proportion to probs[h] M[h, true],
    then each row is re-estimated from those soft counts. The likelihood never decreases."""
    probs = np.asarray(probs, dtype=float)
    true = np.asarray(true, dtype=int)
    n, k = probs.shape
    prior = prior_weight * (np.eye(k) + 1.0 / k) / 2.0
    onehot = np.eye(k)[true] if n else np.zeros((0, k))
    m = probs.T @ onehot + prior
    m /= m.sum(axis=1, keepdims=True)
    for _ in range(iterations):
        resp = probs * m[:, true].T  # (n, k): raw grade h's share of device i's true grade
        resp /= np.maximum(resp.sum(axis=1, keepdims=True), 1e-300)
        m = resp.T @ onehot + prior
        m /= m.sum(axis=1, keepdims=True)
    return m


def fit_grade_calibration(
    grades: tuple[str, ...], standard_version: str, rows: list[tuple[Mapping[str, float], str]]
) -> GradeCalibration:
    """A standard's calibration from validation devices: (rules' probabilities, true grade) pairs."""
    probs = np.array([[p[g] for g in grades] for p, _ in rows], dtype=float).reshape(len(rows), len(grades))
    true = np.array([grades.index(t) for _, t in rows], dtype=int)
    m = fit_transition(probs, true)
    return GradeCalibration(
        grades=grades,
        matrix=tuple(tuple(round(float(v), 6) for v in row) for row in m),
        devices=len(rows),
        standard_version=standard_version,
    )
