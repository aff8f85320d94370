"""How much a generated photo shows each of its defects: the photo against its clean twin.

A label the photo does not show cannot be found, and counted in the truth it makes a "right" grade
unreachable (docs/fine-pass.md, session 37: gouges on dark finishes a few grey levels deep). On the
frame of seed 708's 12 MP devices, 30 of the 177 true scratches change their photo by under 3 grey
levels (a laptop's black frame, a scratch along a clipped highlight): the frame reader's recall counted
them against it (docs/fine-pass.md, session 51).

So the generator can photograph each device twice (`SynthConfig.measure_shown`): as drawn, and its
clean twin, the same device without the defects under the same light, pose, background and sensor
noise (the same random draws). Their difference is what the defects did to the photo. A defect's
`photo_step` is the 90th percentile, over its photo mask, of that difference's absolute luma in grey
levels (0-255): a mask is a few pixels wider than a hairline, and the percentile reads the line's own
pixels rather than the mask's mean. Where defects overlap, each is credited with the change of both;
JPEG is left out (both images are compared before encoding).

What the step is for: evaluation can tell the scratches a photo shows from those it does not
(`benchmarks/bench_shown.py`). It does not change the truth grades.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.exposure import LUMA_WEIGHTS

PERCENTILE = 90.0


def photo_steps(photo: np.ndarray, clean: np.ndarray, masks: Sequence[np.ndarray]) -> list[float]:
    """Per mask (H x W, non-zero on the defect), the 90th percentile of |luma(photo) - luma(clean)| over
    it, grey levels rounded to 0.1; `photo` and `clean` are H x W x 3 uint8 RGB. 0.0 for an empty mask."""
    if photo.shape != clean.shape:
        raise ValueError(f"photo {photo.shape} and its clean twin {clean.shape} differ in size")
    out = []
    for m in masks:
        # Only the mask's box: a 12 MP photo's whole luma difference took most of a second.
        x, y, w, h = cv2.boundingRect((np.asarray(m) > 0).view(np.uint8))
        box = (slice(y, y + h), slice(x, x + w))
        on = np.asarray(m)[box] > 0
        diff = np.abs(
            photo[box][on].astype(np.float32) @ LUMA_WEIGHTS
            - clean[box][on].astype(np.float32) @ LUMA_WEIGHTS
        )
        out.append(round(float(np.percentile(diff, PERCENTILE)), 1) if diff.size else 0.0)
    return out
