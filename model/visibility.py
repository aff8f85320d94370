"""How visible a line on a device (a scratch, a crack) is to a buyer looking from a given distance.

Owns the visibility model behind Back Market's tiers ("body micro-scratches invisible at 20 cm" for
Excellent, "invisible at 50 cm" for Good): a line's angular width in arc-minutes, and its visibility
index in threshold units (1.0 = just visible to a normal observer at that distance, in the sense of the
CIE's "visibility level", the target's contrast over the contrast it needs to be just visible). Plain
floats, no numpy, no torch. The grading rules call it (`model.rules.engine`, a limit's
`invisible_at_cm`); docs/visibility.md explains the model and its numbers.

Inputs: the line's width in mm (as measured: the fine pass's width head) and its contrast, the luminance
change at the centre of a fully resolved line as a fraction of the surface's luminance (0..1: the fine
pass's contrast head). The model, for a line of angular width a (arc-minutes) and contrast c:

    retinal contrast  c_eye = c * a / (a + W)        W = LINE_SPREAD_ARCMIN
    visibility index  V     = c_eye / C_SEEN          C_SEEN = WEBER_LARGE * FIELD_FACTOR

- A line much narrower than the eye's line spread (a << W) is not resolved: the optics spread it into a
  broad shallow shadow whose depth is its "strength" a * c over W, so detection goes as width x
  contrast. Hecht & Mintz (1939) found this for single dark lines: the thinnest visible line (0.5 arc-
  seconds against the brightest background) darkens the central row of foveal cones by "very nearly
  1 per cent", the limit of intensity discrimination.
- A line much wider than the spread (a >> W) is seen at its own contrast, against the large-target
  (Weber) threshold, about 1-2% of the background's luminance in photopic light.
- a / (a + W) joins the two limits (exact at both ends, monotone in between): our choice of the
  simplest form with both asymptotes.

Without a contrast (the coarse pass, the synthetic generator's labels), only the width-only criterion
is left: a line is visible when it is at least 1 arc-minute wide (the acuity of a normal eye), so its
index is its angular width in arc-minutes. That is the contrast model's verdict at 1 arc-minute for a
line of 2 * C_SEEN = 10% contrast (V = c / (2 C_SEEN) there).
"""

from __future__ import annotations

import math

# One arc-minute, the resolution of a normal (20/20) eye: a Snellen letter's strokes and gaps are 1'.
ARCMIN_RAD = math.radians(1.0 / 60.0)
TAN_ARCMIN = math.tan(ARCMIN_RAD)  # 2.909e-4: 0.058 mm at 20 cm, 0.145 mm at 50 cm
# Large-target contrast threshold (Weber fraction), laboratory: Hecht & Mintz (1939, J. Gen. Physiol.
# 22:593) put the limit of intensity discrimination at "very nearly 1 per cent" at their brightest
# backgrounds; 1-2% is the usual photopic figure, and 0.02 is Koschmieder's threshold behind the classic
# visual range. We take 0.02: indoor light on a device (tens to hundreds of cd/m²) is below their best.
WEBER_LARGE = 0.02
# A "normal observer" glancing at a device is not a laboratory observer who knows where and when the
# target is: field thresholds are higher. The CIE adopts 0.05 rather than 0.02 as the contrast threshold
# for meteorological optical range, where the observer must notice and recognise the object (CIE e-ILV
# 17-31-019); 2.5 = 0.05 / 0.02 is our choice of field factor.
FIELD_FACTOR = 2.5
C_SEEN = WEBER_LARGE * FIELD_FACTOR  # 0.05: the contrast at which a wide line is just visible
# Width over which the eye spreads a thin line, arc-minutes. Hecht & Mintz's finding implies 0.5" / 1%
# = 50" = 0.83'; Westheimer's foveal line spread (3 mm pupil, 0.47 exp(-3.3 x²) + 0.53 exp(-0.93 |x|),
# x in arc-minutes) has an equivalent width (area over peak) of 1.6'; Campbell & Gubisch's measured
# line spread (3 mm pupil) is about 2' wide at half height. 1.0' is our choice in that range.
LINE_SPREAD_ARCMIN = 1.0


def _check(width_mm: float, contrast: float | None, distance_cm: float) -> None:
    if not width_mm >= 0:
        raise ValueError(f"width must be >= 0 mm, got {width_mm}")
    if contrast is not None and not 0 <= contrast <= 1:
        raise ValueError(f"contrast must be in 0..1, got {contrast}")
    if not distance_cm > 0:
        raise ValueError(f"distance must be > 0 cm, got {distance_cm}")


def arcmin_mm(distance_cm: float) -> float:
    """The width (mm) that subtends one arc-minute at `distance_cm`: 0.058 at 20 cm, 0.145 at 50 cm."""
    if not distance_cm > 0:
        raise ValueError(f"distance must be > 0 cm, got {distance_cm}")
    return distance_cm * 10.0 * TAN_ARCMIN


def angular_width_arcmin(width_mm: float, distance_cm: float) -> float:
    """The line's width as seen from `distance_cm`, in arc-minutes: w / (D tan 1')."""
    _check(width_mm, None, distance_cm)
    return width_mm / arcmin_mm(distance_cm)


def retinal_contrast(width_mm: float, contrast: float, distance_cm: float) -> float:
    """The contrast of the line's image on the retina (module docstring): c * a / (a + W)."""
    _check(width_mm, contrast, distance_cm)
    a = angular_width_arcmin(width_mm, distance_cm)
    # a / (a + W) written so that every step is monotone in floating point, down to subnormal contrasts
    return contrast * (1.0 / (1.0 + LINE_SPREAD_ARCMIN / a)) if a > 0 else 0.0


def visibility_index(width_mm: float, contrast: float | None, distance_cm: float) -> float:
    """How far above the threshold of a normal observer the line is at `distance_cm` (1.0 = just
    visible, below 1 invisible). `contrast` None: the width-only criterion, the angular width in
    arc-minutes. Monotone: never lower for a wider or higher-contrast line, or a closer observer."""
    _check(width_mm, contrast, distance_cm)
    if contrast is None:
        return angular_width_arcmin(width_mm, distance_cm)
    return retinal_contrast(width_mm, contrast, distance_cm) / C_SEEN


def visible(width_mm: float, contrast: float | None, distance_cm: float) -> bool:
    """Whether a normal observer sees the line at `distance_cm` (index >= 1)."""
    return visibility_index(width_mm, contrast, distance_cm) >= 1.0


def threshold_contrast(width_mm: float, distance_cm: float) -> float:
    """The contrast at which a line of this width is just visible at `distance_cm`:
    C_SEEN * (a + W) / a (about C_SEEN for wide lines; inf for a line of no width)."""
    _check(width_mm, None, distance_cm)
    a = angular_width_arcmin(width_mm, distance_cm)
    return C_SEEN * (a + LINE_SPREAD_ARCMIN) / a if a > 0 else math.inf


def visible_up_to_cm(width_mm: float, contrast: float | None) -> float:
    """The farthest distance (cm) from which the line is visible (its index is 1 there, above 1 nearer).
    0 when no distance shows it: a line no wider than nothing, or one whose contrast is at most C_SEEN
    (its retinal contrast stays below the threshold however near). Width-only (contrast None): the
    distance at which it is 1 arc-minute wide."""
    _check(width_mm, contrast, 1.0)
    if width_mm == 0:
        return 0.0
    if contrast is None:
        a_min = 1.0
    elif contrast <= C_SEEN:
        return 0.0  # even as wide as it is near, its retinal contrast stays below the threshold
    else:
        # c * a / (a + W) = C_SEEN  <=>  a = C_SEEN * W / (c - C_SEEN)
        a_min = C_SEEN * LINE_SPREAD_ARCMIN / (contrast - C_SEEN)
    return width_mm / (a_min * TAN_ARCMIN) / 10.0
