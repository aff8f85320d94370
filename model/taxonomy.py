"""The fixed vocabulary of refurbgrade: device kinds, photo views, zones, defect types, photo quality.

The order of each enum is part of the model contract: it is the channel order of the network's outputs
and is written into every model card, so never reorder members, only append.
"""

from __future__ import annotations

from enum import StrEnum


class DeviceKind(StrEnum):
    PHONE = "phone"
    TABLET = "tablet"
    LAPTOP = "laptop"


class View(StrEnum):
    FRONT = "front"
    BACK = "back"
    LEFT = "left"
    RIGHT = "right"
    TOP = "top"
    BOTTOM = "bottom"


class Zone(StrEnum):
    """Where on the device a defect sits; zones decide which grading limits apply."""

    SCREEN = "screen"
    BODY = "body"  # back panel / laptop lid and base
    FRAME = "frame"  # the edges and sides
    CAMERA = "camera"  # lenses and camera bump


class DefectType(StrEnum):
    SCRATCH = "scratch"
    CRACK = "crack"
    CHIP = "chip"
    DENT = "dent"
    STAIN = "stain"
    # Cleanable dirt (oil, fingerprints): never lowers a grade, may ask for a clean retake.
    SMUDGE = "smudge"


class PhotoQuality(StrEnum):
    USABLE = "usable"
    BLURRY = "blurry"
    BAD_EXPOSURE = "bad_exposure"  # too dark or blown out
    NO_DEVICE = "no_device"


# Defect types that the grading rules may count. Smudges are excluded by design.
GRADED_DEFECT_TYPES: tuple[DefectType, ...] = tuple(t for t in DefectType if t is not DefectType.SMUDGE)

# Thin, line-like defects whose length is their skeleton length rather than their box diagonal.
LINEAR_DEFECT_TYPES: frozenset[DefectType] = frozenset({DefectType.SCRATCH, DefectType.CRACK})

# The zones a view can show: an instance on a photo of a known view gets one of them
# (`model.postprocess.vote_zone`), so a front photo never puts a defect on the back.
ZONES_BY_VIEW: dict[View, tuple[Zone, ...]] = {
    View.FRONT: (Zone.SCREEN, Zone.FRAME, Zone.CAMERA),
    View.BACK: (Zone.BODY, Zone.FRAME, Zone.CAMERA),
    View.LEFT: (Zone.FRAME,),
    View.RIGHT: (Zone.FRAME,),
    View.TOP: (Zone.FRAME,),
    View.BOTTOM: (Zone.FRAME,),
}

# The views a device must be seen from to be graded whole: a front photo shows the screen, a back photo
# the back and its camera. A grading without a usable photo of one says so and goes to review.
REQUIRED_VIEWS: dict[DeviceKind, tuple[View, ...]] = {k: (View.FRONT, View.BACK) for k in DeviceKind}

# Short messages a refurbisher can act on, per photo-quality verdict.
QUALITY_MESSAGES: dict[PhotoQuality, str] = {
    PhotoQuality.USABLE: "usable",
    PhotoQuality.BLURRY: "too blurry, retake with the device in focus",
    PhotoQuality.BAD_EXPOSURE: "too dark or blown out, retake in even light without glare",
    PhotoQuality.NO_DEVICE: "no device found in the photo, retake with the whole device in frame",
}


def plural(defect_type: DefectType | str, n: int) -> str:
    """'1 scratch', '3 scratches', '2 dents' — for reasons written to refurbishers."""
    word = str(defect_type)
    if n == 1:
        return f"1 {word}"
    suffix = "es" if word.endswith(("ch", "sh", "s", "x")) else "s"
    return f"{n} {word}{suffix}"
