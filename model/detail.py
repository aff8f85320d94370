"""Whether a photo shows the device finely enough to tell the top grades apart, and what to ask for if not.

Back Market's Premium, Excellent and Good differ by scratches a buyer sees at 20 or 50 cm: hairlines
0.05-0.3 mm wide (the grader scale in `model/rules/standards/backmarket.yaml`). A scratch that narrow
is a pixel or less even at 0.05 mm per pixel, and vanishes at the 0.2-0.5 mm per pixel of a device
that fills a tenth of a web photo. The fine-pass design (docs/fine-pass.md) needs about 0.08 mm per
pixel on the device or finer; a photo coarser than that cannot decide those tiers, whatever the
network, so the refurbisher is asked for a closer photo with the reason and the pixel count to aim for.

The device's length in pixels comes from its outline (`model.postprocess.estimate_scale`); its length
in millimetres from the catalogue when the caller names the model, else a typical length for its kind
(the advice then says "about").
"""

from __future__ import annotations

from model.taxonomy import DeviceKind

FINE_MM_PER_PX = 0.08  # the fine pass's coarsest useful detail on the device (docs/fine-pass.md)
# Typical long sides when the model is not named: a 6.1-6.7" phone, an 11" tablet, a 13-14" laptop lid.
NOMINAL_LENGTH_MM = {DeviceKind.PHONE: 150.0, DeviceKind.TABLET: 250.0, DeviceKind.LAPTOP: 310.0}


def device_mm_per_px(length_px: float, length_mm: float | None, kind: DeviceKind) -> tuple[float, bool]:
    """Millimetres per photo pixel on the device, and whether that is estimated (no catalogue length)."""
    mm = length_mm if length_mm else NOMINAL_LENGTH_MM[kind]
    return mm / max(length_px, 1.0), not length_mm


def detail_advice(
    photo_number: int,
    length_px: float | None,
    length_mm: float | None,
    kind: DeviceKind,
    share: float = 1.0,
) -> str | None:
    """Retake advice for a photo whose device is too coarse for the hairline tiers (None when it is fine
    enough or no device was measured). `photo_number` counts from 1, as people do. `length_px`: the
    device's length at the photo's scale (`Scale.device_length_px`); `share`: the long side the photo
    shows, as a share of that length (`model.plane.view_share`: a phone's top edge shows its width),
    which is what the advice counts pixels along."""
    if not length_px:
        return None
    per_px, estimated = device_mm_per_px(length_px, length_mm, kind)
    if per_px <= FINE_MM_PER_PX:
        return None
    mm = length_mm if length_mm else NOMINAL_LENGTH_MM[kind]
    want = mm * share / FINE_MM_PER_PX
    about = "about " if estimated else ""
    along = "along its length" if share >= 1.0 else "along the edge the photo shows"
    return (
        f"photo {photo_number}: the device spans {length_px * share:.0f} px ({about}{per_px:.2f} mm a "
        f"pixel), too coarse for the hairline scratches that separate the top grades (they need "
        f"{FINE_MM_PER_PX} mm a pixel): those grades could not be told apart; retake closer, the device "
        f"filling the frame ({about}{want:.0f} px {along})"
    )
