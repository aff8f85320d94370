"""Glare: how much of a photo's main surface the light blows out, where no scratch can be seen. Torch-free.

Issue 19's photo requirements: a photo whose glass is partly blown out by a reflected light (or a
display lit white) hides any hairline there, so the grades hairlines decide (Back Market's Premium,
Excellent and Good) cannot be told apart on that part, and the refurbisher is asked to retake it.

Measured on the coarse pass's frame (the device's crop where the card crops, so the device fills it):
the view's main surface (a front view's screen, a back view's back) from the zone map, less `EDGE_PX`
at its outline (the coarse map's edge runs onto white bezels and backgrounds), and the pixels there
whose three channels are all at `BLOWN` or more (clipped white: no contrast left to show a line), in
blobs of at least `MIN_BLOB_SHARE` of the surface (a glare is a patch, not specks). The share is
`GLARE_SHARE` or more: the photo asks for a retake. The cuts are our choice; docs/fine-pass.md
("Glare") has their measurement on validation photos.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.outputs import ZONE_CHANNELS
from model.taxonomy import View, Zone

BLOWN = 250  # all three channels at least this: clipped white
# The zone map's cells are 4 px of a 384 px frame, and its screen runs onto white bezels: 6 px left two
# white bezels of validation photos over the cut, 10 px none, and the glares as they were.
EDGE_PX = 10
MIN_BLOB_SHARE = 0.005
GLARE_SHARE = 0.02
MIN_SURFACE_PX = 400  # less surface in view: nothing to judge
# From this share on, the photo shows its view's main surface no more than a side photo does (a blank
# display lit white, a product shot's white screen): it is read for the rest of the device, and the
# view counts as not seen (`model.rules.grade`'s `glimpsed`): our choice, most of the glass.
HIDDEN_SHARE = 0.5
SURFACE_OF_VIEW = {View.FRONT: Zone.SCREEN, View.BACK: Zone.BODY}


def surface_zones(zone_probs: np.ndarray, view: View, glass: tuple[Zone, ...] = ()) -> tuple[Zone, ...]:
    """The zones of the zone map `zone_probs` that are `view`'s main surface: its own (`SURFACE_OF_VIEW`;
    none for a side view), and with it another of the device's `glass` zones where the map gives that
    one more cells. A photo shows one glass side (as `model.damage.one_glass_side` says of cracks): a
    blank display lit white is "back" on the zone map of 4 real front photos (phones_web's product
    shots), its "screen" a sliver at the top. (Those four stay `bad_exposure`: `model.exposure` judges
    the whole device, since off its glass a phone is a frame a few pixels wide, too little to tell a
    white display from a washed-out photo.)"""
    own = SURFACE_OF_VIEW.get(view)
    if own is None:
        return ()
    if own not in glass:
        return (own,)
    labels = zone_probs.argmax(axis=0)
    cells = {z: int((labels == ZONE_CHANNELS.index(z.value)).sum()) for z in glass}
    return (own, *(z for z in glass if z != own and cells[z] > cells[own]))


def zone_pixels(image: np.ndarray, zone_probs: np.ndarray, zones: tuple[Zone, ...]) -> np.ndarray | None:
    """The pixels of `image` (the frame the network saw, S x S x 3 RGB; its zone map `zone_probs`, Z x s x
    s) in any of `zones`, less `EDGE_PX` at its outline, as a 0/1 uint8 mask; None with under
    `MIN_SURFACE_PX`."""
    labels = cv2.resize(
        zone_probs.argmax(axis=0).astype(np.uint8), image.shape[1::-1], interpolation=cv2.INTER_NEAREST
    )
    surface = np.isin(labels, [ZONE_CHANNELS.index(z.value) for z in zones]).astype(np.uint8)
    surface = cv2.erode(surface, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_PX + 1,) * 2))
    return surface if int(surface.sum()) >= MIN_SURFACE_PX else None


def blown_share(
    image: np.ndarray, zone_probs: np.ndarray, view: View, glass: tuple[Zone, ...] = ()
) -> float | None:
    """The share of `view`'s main surface (`surface_zones`, with the device's `glass` zones) in `image`
    (the frame the network saw, S x S x 3 RGB; its zone map `zone_probs`, Z x s x s) blown out; None for
    a view without one, or too little of it in view."""
    zones = surface_zones(zone_probs, view, glass)
    if not zones:
        return None
    surface = zone_pixels(image, zone_probs, zones)
    if surface is None:
        return None
    area = int(surface.sum())
    # Every channel at BLOWN or above (OpenCV's inRange: numpy's min over a 3-wide last axis took 2-3 ms).
    blown = cv2.bitwise_and(cv2.inRange(image, (BLOWN,) * 3, (255,) * 3), surface)
    stats = cv2.connectedComponentsWithStats(blown, connectivity=8)[2]
    sizes = stats[1:, cv2.CC_STAT_AREA]
    return float(sizes[sizes >= MIN_BLOB_SHARE * area].sum() / area)


def surface_hidden(share: float | None) -> bool:
    """Whether a photo whose main surface is `share` blown out (`blown_share`) shows too little of it to
    grade it: `HIDDEN_SHARE` or more."""
    return share is not None and share >= HIDDEN_SHARE


def glare_advice(photo_number: int, share: float | None, view: View) -> str | None:
    """Retake advice for a photo whose main surface is blown out (None below `GLARE_SHARE`).
    `photo_number` counts from 1, as people do."""
    if share is None or share < GLARE_SHARE:
        return None
    where = "screen" if view is View.FRONT else "back"
    return (
        f"photo {photo_number}: glare (or a display lit white) blows out {share:.0%} of the {where}, where "
        f"no scratch can be seen: the top grades could not be told apart there; retake at an angle to the "
        f"light, with the display off"
    )
