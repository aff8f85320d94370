"""A lit display: a screen that shows a picture (wallpaper, icons, text), whose own edges no hairline
can be told from. Torch-free.

On real photos the fine pass read a lit display's icon edges, text and wallpaper detail as scratches:
7 of the 16 intact phones_web train and val photos large enough for it got 2 to 26 "scratches" on the
screen, and were graded Fair or Unlistable (docs/fine-pass.md, session 47). A grader looks for hairlines
with the display off, under a reflected light, and so must the photo. So on a lit display the fine pass
does not read the screen (`model.fine_pass`, its `skip` zones), no scratch the coarse pass finds on the
screen is kept (`model.fine_instances.photo_instances`: 11 of phones_web's intact train and val photos
with the display on were graded Fair or Unlistable for them), and the grading asks for a photo with the display
off where the grade is one of the tiers hairlines decide (`display_advice`). Cracks, stains and the
rest stand: a broken or marked screen shows through a picture. A crack counted on a lit screen in a
grading sent to review asks for the same photo (`lit_crack_advice`): a wallpaper's edges can be one.

Lit means showing a picture in colour: a switched-off display is near-black glass that mirrors a room
(its colours dim and grey), a lit one shows saturated colours. Measured on the coarse pass's frame (the
device's crop where the card crops), the screen from the zone map less `model.glare.EDGE_PX` at its
outline: the share of its pixels with HSV saturation and value both at least `COLOURFUL`, where those
pixels hold at least two hues, or one hue over at least `ONE_HUE_SHARE` of the screen (less of one
colour is a sticker or a mark on the glass, or a coloured room mirrored in dark glass). `LIT_SHARE` or
more is lit. On the real photos above the lit ones measured 0.12-0.96 and every switched-off screen 0.05
or less (the MSD screens: 0.02 or less).

A display lit white (a reset iPhone's "hello", a settings page, a web page) shows no colour, and its
dark text reads as scratches just the same: painted white with a small line of script on the screens of
the 29 intact phones_web validation photos, 8 were graded Fair for "1 scratch on the screen" (7 with
the white clipped); counted as lit, 1 (docs/model-history.md, session 60). So a screen is also lit
where `WHITE_SHARE` of it is white: HSV value at least `WHITE_VALUE` and saturation at most
`WHITE_SATURATION`. A switched-off display is dark glass: on the real train and validation photos
every MSD screen was white over 3% of it at most; the phones and renders over 0.5 were drawings,
renders and phones with a white display (the screen from the bundled network's zone map; /tmp
script). A switched-off glass mirroring a white light over half of it counts so too: no hairline can be
seen on it either, and the retake (display off, at an angle to the light) is the same. Its blown-out
parts are glare's too (`model.glare`). `benchmarks/bench_white_display.py` paints the screens of the
real photos of a split so.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.glare import zone_pixels
from model.taxonomy import Zone

COLOURFUL = 0.35  # HSV saturation and value, 0-1, both at least this: a lit pixel of a picture
LIT_SHARE = 0.1
# A picture has several colours: the colourful pixels must hold at least two of six hue sectors, each
# with `MIN_HUE_SHARE` of them. One colour alone is a thing on the glass (a coloured sticker, a red
# mark) or a room's colour mirrored in dark glass, not a display, unless it covers `ONE_HUE_SHARE` of
# the screen: a wallpaper in shades of one hue (the blue curves of many phones' defaults) is a picture
# whose edges read as scratches. On the real train and validation photos (phones_web, cracked_screens,
# MSD; /tmp script, docs/model-history.md session 55) one hue covered 0.67-1.0 of 13 lit displays
# (two of them intact devices graded Fair for "scratches" on the wallpaper), 0.62-0.65 of an orange
# phone back the view probe took for a front, and at most 0.45 of dark glass mirroring a red or a
# patterned cloth; every MSD screen is off (0.003 or less).
HUE_SECTORS = 6
MIN_HUES = 2
MIN_HUE_SHARE = 0.02
ONE_HUE_SHARE = 0.5
# A display lit white: bright (HSV value, 0-1) and grey or white (saturation, 0-1) over this share of the
# screen. Our choice: a mirrored room dims and greys a dark glass (MSD's median screen luma 24 of 255).
WHITE_VALUE = 0.8
WHITE_SATURATION = 0.2
WHITE_SHARE = 0.5


def lit_share(image: np.ndarray, zone_probs: np.ndarray) -> float | None:
    """The share of the screen in `image` (S x S x 3 RGB, the frame the network saw; `zone_probs` its
    zone map) that shows a picture: its colourful pixels, where they hold `MIN_HUES` hues or cover
    `ONE_HUE_SHARE` of it, or its white ones where they cover `WHITE_SHARE` of it (else 0); None with
    too little screen in view."""
    screen = zone_pixels(image, zone_probs, (Zone.SCREEN,))
    if screen is None:
        return None
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    white = _white_share(hsv, screen)
    if white >= WHITE_SHARE:
        return white
    cut = round(COLOURFUL * 255)
    lit = cv2.bitwise_and(cv2.inRange(hsv, (0, cut, cut), (180, 255, 255)), screen * 255)
    n = cv2.countNonZero(lit)
    if not n:
        return 0.0
    # OpenCV's hue runs 0-180: sectors of 30 degrees are 15 of its steps, centred on red (hue 0 and 180
    # are one colour, so the sector that holds red straddles the wrap).
    step = 180 // HUE_SECTORS
    hue = (hsv[..., 0][lit > 0].astype(np.int32) + step // 2) % 180
    hues = np.bincount(hue // step, minlength=HUE_SECTORS)
    share = n / int(screen.sum())
    if int((hues >= MIN_HUE_SHARE * n).sum()) < MIN_HUES and share < ONE_HUE_SHARE:
        return 0.0
    return float(share)


def _white_share(hsv: np.ndarray, screen: np.ndarray) -> float:
    """The share of the `screen` mask's pixels (0/1 uint8) of `hsv` (OpenCV's HSV) lit white."""
    white = cv2.inRange(hsv, (0, 0, round(WHITE_VALUE * 255)), (180, round(WHITE_SATURATION * 255), 255))
    return cv2.countNonZero(cv2.bitwise_and(white, screen * 255)) / int(screen.sum())


def is_lit(share: float | None) -> bool:
    return share is not None and share >= LIT_SHARE


def display_advice(photo_number: int, share: float | None) -> str | None:
    """Retake advice for a photo whose display is lit (None otherwise). `photo_number` counts from 1."""
    if not is_lit(share):
        return None
    return (
        f"photo {photo_number}: the display is on (lit over {share:.0%} of the screen), and no "
        "hairline on the screen can be told from the picture's own edges: the screen's top grades could "
        "not be told apart; retake with the display off, at an angle to a light"
    )


def lit_crack_advice(photo_number: int, share: float | None) -> str | None:
    """Retake advice for a lit display whose photo counted a crack on the screen, for a grading sent to
    review (None where the display is not lit). A wallpaper's long curved edges read as a crack: 5 of
    the 7 real intact train and validation phones graded Unlistable showed one (docs/model-history.md,
    session 50); the same screen with the display off shows a real crack and no picture."""
    if not is_lit(share):
        return None
    return (
        f"photo {photo_number}: the display is on (lit over {share:.0%} of the screen), and a "
        "picture's own lines can read as a crack: retake with the display off to confirm it"
    )
