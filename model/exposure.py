"""Whether the device itself is too dark or blown out: the check behind a "bad exposure" verdict. Torch-free.

The photo-quality verdict (`model.probes`) reads the whole frame, and a clean product photo on a white
sheet or lightbox, the way many refurbishers shoot, looks to it like a blown-out photo: its background
is clipped white. So was a third of the real photos it called "too dark or blown out" on the
validation and fit sets (docs/model-history.md, session 39): cracked phones on white went
`ungradable` instead of Unlistable, intact renders instead of listable. What the advice ("too dark or
blown out, retake in even light") is about is the device: whether its own pixels are clipped white or
sunk in black, where no defect can be seen.

So the verdict stands only where the device is: measured on the frame the network saw (the device's
crop where the card crops) over the device the zone map outlines (`model.geometry.device_mask`) less `EDGE_PX` at the outline (the coarse
map runs a few pixels onto the background), the device is well exposed when under `MAX_BLOWN_SHARE`
of it is clipped white (all three channels at `BLOWN` or more), under `MAX_DARK_SHARE` of it is near
black (luma at most `DARK_LUMA`), and its brightest parts (the 95th luma percentile) reach `MIN_P95`.
Otherwise, or with too little device in view to judge, the verdict stands. The cuts were chosen on the
probes' fit photos and checked on the validation photos (real photos, their faulty copies and
synthetic ones); the figures are in the model history.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.geometry import device_mask

BLOWN = 250  # all three channels at least this: clipped white (as model.glare)
DARK_LUMA = 20  # at most this luma (0-255): near black
EDGE_PX = 4
MIN_DEVICE_PX = 400  # less device in view: nothing to judge, the verdict stands
MAX_BLOWN_SHARE = 0.02
MAX_DARK_SHARE = 0.3
MIN_P95 = 80
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> luma (Rec. 601), 0-255


@dataclass(frozen=True)
class DeviceExposure:
    blown: float  # share of the device's pixels clipped white
    dark: float  # share near black
    p95: float  # 95th percentile of its luma, 0-255

    @property
    def well_exposed(self) -> bool:
        return self.blown < MAX_BLOWN_SHARE and self.dark < MAX_DARK_SHARE and self.p95 >= MIN_P95


def device_exposure(image: np.ndarray, zone_probs: np.ndarray) -> DeviceExposure | None:
    """The exposure of the device in `image` (the frame the network saw, S x S x 3 RGB uint8; its zone
    map `zone_probs`, Z x s x s); None with less than `MIN_DEVICE_PX` of device in view."""
    cells = device_mask(zone_probs).astype(np.uint8)
    device = cv2.resize(cells, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    device = cv2.erode(device, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_PX + 1,) * 2)) > 0
    if int(device.sum()) < MIN_DEVICE_PX:
        return None
    pixels = image[device]
    luma = pixels.astype(np.float32) @ LUMA_WEIGHTS
    return DeviceExposure(
        blown=float((pixels.min(axis=1) >= BLOWN).mean()),
        dark=float((luma <= DARK_LUMA).mean()),
        p95=float(np.percentile(luma, 95)),
    )
