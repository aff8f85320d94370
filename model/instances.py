"""A measured defect instance: the unit the network's post-processing produces and the rules consume.

Measurements are in millimetres when the photo's scale is known (device model from the catalogue, or
a size given by the caller); otherwise they are fractions of the device's length (`units="relative"`),
and the grading rules fall back to relative limits. A line measured by the fine pass also has a contrast,
which with its width says how visible it is to a buyer (`model.visibility`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.taxonomy import DefectType, View, Zone

Units = Literal["mm", "relative"]


class Measurement(BaseModel):
    """Size of one defect. `length` is along the defect (skeleton length for scratches and cracks).

    `contrast`: the luminance change at the centre of a fully resolved line, as a fraction of the
    surface's luminance (0..1), as the fine pass measures it; None where it was not measured (the coarse
    pass, blobs). The grading rules read a line's visibility from its width and contrast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: Units
    length: float = Field(ge=0)
    width: float = Field(ge=0)
    area: float = Field(ge=0)  # mm² or fraction of the device length squared
    contrast: float | None = Field(default=None, ge=0, le=1)


class DefectInstance(BaseModel):
    """One defect found on one photo of a device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: DefectType
    zone: Zone
    photo_index: int = Field(default=0, ge=0)
    view: View | None = None
    # Box in the photo's pixel coordinates: x0, y0, x1, y1.
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # Outline in the photo's pixel coordinates, as [x, y] pairs.
    polygon: list[tuple[float, float]] = Field(default_factory=list)
    # Probability that the defect is real (calibrated on validation data).
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    measurement: Measurement
    # "defect": graded by the rules. "evidence": a piece of a zone-level defect (a fragment of a crack
    # pattern whose zone was judged cracked as a whole, `model.damage`): drawn and listed as what the
    # judgement rests on, never counted on its own, so one shattered screen is one crack in the reasons;
    # also a scratch on glass a counted crack lies on (`model.damage.lines_on_cracked_glass`).
    role: Literal["defect", "evidence"] = "defect"

    @model_validator(mode="after")
    def _box_ordered(self) -> DefectInstance:
        x0, y0, x1, y1 = self.box
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box must be x0<=x1 and y0<=y1, got {self.box}")
        return self

    @property
    def scaled(self) -> bool:
        return self.measurement.units == "mm"


def mm(
    defect_type: DefectType | str,
    zone: Zone | str,
    length: float,
    width: float = 0.1,
    area: float | None = None,
    confidence: float = 1.0,
    contrast: float | None = None,
    **kwargs,
) -> DefectInstance:
    """Shorthand for a defect measured in millimetres (tests, examples, the CLI)."""
    return DefectInstance(
        type=DefectType(defect_type),
        zone=Zone(zone),
        confidence=confidence,
        measurement=Measurement(
            units="mm",
            length=length,
            width=width,
            area=length * width if area is None else area,
            contrast=contrast,
        ),
        **kwargs,
    )
