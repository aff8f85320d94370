"""The device's kind from its photos (`model.device_kind`): the photos' mean against the 9-to-1 cut."""

from __future__ import annotations

import numpy as np
import pytest

from model.device_kind import guess_kind
from model.probes import KIND_CLASSES, KIND_OUTPUT
from model.taxonomy import DeviceKind


def _photo(laptop: float) -> dict[str, np.ndarray]:
    p = np.zeros(len(KIND_CLASSES), np.float32)
    p[KIND_CLASSES.index("laptop")] = laptop
    p[KIND_CLASSES.index("phone")] = 1.0 - laptop
    return {KIND_OUTPUT: p, "view_probs": np.ones(6, np.float32) / 6}


def test_no_kind_output_no_guess():
    assert guess_kind([{"view_probs": np.ones(6)}]) is None
    assert guess_kind([]) is None


@pytest.mark.parametrize(
    ("photos", "kind"),
    [
        ([0.95], DeviceKind.LAPTOP),
        ([0.91], DeviceKind.LAPTOP),
        ([0.85], DeviceKind.PHONE),  # likelier a laptop, but not at 9 to 1: a phone's back glass is judged
        ([0.99, 0.7], DeviceKind.PHONE),  # the device's photos together: mean 0.845
        ([0.99, 0.95, 0.9], DeviceKind.LAPTOP),
    ],
)
def test_a_laptop_only_at_nine_to_one_over_the_devices_photos(photos, kind):
    guess = guess_kind([_photo(p) for p in photos])
    assert guess.kind is kind
    assert guess.laptop_probability == pytest.approx(np.mean(photos), abs=1e-6)


def test_photos_without_the_output_do_not_count():
    assert guess_kind([_photo(0.95), {"view_probs": np.ones(6)}]).kind is DeviceKind.LAPTOP
