"""Which kind of device the photos show, where the caller did not say: the kind probe's verdict. Torch-free.

The kind decides which zones are glass (a laptop's lid is not: `model.damage.glass_zones`) and, without
a catalogue model, the typical length that sizes are estimated from (`model.detail.NOMINAL_LENGTH_MM`).
Graded as the default phone, a laptop's lid was judged as a phone's back glass: 7 of the 15 real
validation lids went Unlistable for a "crack on the back" (an HP logo, a worn patch), and its scratches
were measured at half their length.

The card's kind probe (`model.probes`, output `KIND_OUTPUT`: laptop or not, `training.probes`) gives
each photo a probability of a laptop; the device is a laptop when its photos' mean reaches `LAPTOP_AT`,
else the phone it was by default. The cut is odds of 9 to 1, not a fitted figure: taking a phone for a
laptop drops its back glass from the judgement (a cracked back would go out listable), which is worse
than the review a laptop taken for a phone gets. On the real validation photos (docs/model-history.md,
2026-12-06, session 44) 11 of the 15 lids reach it (all 15 are over 0.6) and none of the 163 phones
(the highest 0.856). A tablet is never guessed: only synthetic tablets exist to learn one from, and no
real photo to check it on.

Where the photos show neither at 9 to 1, serving grades the device as the other kind too, and a grade
that changes goes to review with the reason ("give device_kind"): a lid graded as a phone's back
glass, sure of a crack on it, is then not a sure grading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model.probes import KIND_CLASSES, KIND_OUTPUT
from model.taxonomy import DeviceKind

LAPTOP_AT = 0.9


@dataclass(frozen=True)
class KindGuess:
    kind: DeviceKind
    laptop_probability: float  # the photos' mean probability of a laptop

    @property
    def sure(self) -> bool:
        """Whether the photos show a laptop, or not one, at 9 to 1: otherwise a grade that the kind
        decides goes to review (`serving.pipeline.grade_device`)."""
        return not (1.0 - LAPTOP_AT < self.laptop_probability < LAPTOP_AT)

    @property
    def other(self) -> DeviceKind:
        """The kind it was not graded as."""
        return DeviceKind.PHONE if self.kind is DeviceKind.LAPTOP else DeviceKind.LAPTOP


def guess_kind(outputs: Sequence[Mapping[str, np.ndarray]]) -> KindGuess | None:
    """The device's kind from its photos' outputs; None where none has the kind probe's output (a card
    without a kind probe, a model file without the encoder's features): the caller's default stands."""
    col = KIND_CLASSES.index(DeviceKind.LAPTOP.value)
    p = [float(np.asarray(o[KIND_OUTPUT])[col]) for o in outputs if KIND_OUTPUT in o]
    if not p:
        return None
    mean = float(np.mean(p))
    return KindGuess(DeviceKind.LAPTOP if mean >= LAPTOP_AT else DeviceKind.PHONE, mean)
