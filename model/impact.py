"""What selling a graded device refurbished instead of a new one saves: avoided emissions and e-waste.

Torch-free and pure: the figures live in `model/data/footprints.yaml` (every number with its source), and
`docs/impact.md` explains the method in words. For one device:

    production  = the new device's life-cycle footprint (kg CO2e) x the share of it from production
    avoided     = max(0, production - the kind's refurbishment footprint)
    e-waste     = the device's mass, kept in use instead of becoming waste

The device model's published footprint is used where the file has one; otherwise the kind's average,
and the answer says "estimated" (so does an unknown model, or a grading without a model). A device
counts only as a listing: when every standard it was graded under calls its grade listable. A device
graded Unlistable (or ungradable) avoids nothing as a listing; it may still be repaired or recycled.
The file's `version` is the method version, recorded with every grading like the rules' versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.catalogue import devices as catalogue_devices
from model.taxonomy import DeviceKind

UNGRADABLE = "ungradable"  # model.rules.schema.UNGRADABLE, repeated to keep this module's imports light


class KindFootprint(BaseModel):
    """A kind's average: used for models without a published footprint, and for unknown models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_kg_co2e: float = Field(gt=0)
    production_share: float = Field(gt=0, le=1)
    refurbishment_kg_co2e: float = Field(ge=0)
    source: str = Field(min_length=10)
    mass_kg: float = Field(gt=0)
    mass_source: str = Field(min_length=10)


class DeviceFootprint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    footprint: Literal["published", "kind average"]
    total_kg_co2e: float | None = Field(default=None, gt=0)
    production_share: float | None = Field(default=None, gt=0, le=1)
    source: str | None = None
    mass_kg: float | None = Field(default=None, gt=0)
    mass_source: str | None = None

    @model_validator(mode="after")
    def _sourced(self) -> DeviceFootprint:
        figures = (self.total_kg_co2e, self.production_share, self.source)
        if self.footprint == "published" and any(v is None for v in figures):
            raise ValueError(
                f"{self.name}: a published footprint needs total_kg_co2e, production_share, source"
            )
        if self.footprint == "kind average" and any(v is not None for v in figures):
            raise ValueError(f"{self.name}: a model on the kind's average gives no figures of its own")
        if (self.mass_kg is None) != (self.mass_source is None):
            raise ValueError(f"{self.name}: mass_kg and mass_source go together")
        return self


class Footprints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    method: str
    refurbishment_share: float = Field(gt=0, lt=1)
    refurbishment_source: str
    kinds: dict[DeviceKind, KindFootprint]
    devices: tuple[DeviceFootprint, ...]

    @model_validator(mode="after")
    def _complete(self) -> Footprints:
        missing = [k.value for k in DeviceKind if k not in self.kinds]
        if missing:
            raise ValueError(f"no average for {', '.join(missing)}")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError("a device is listed twice")
        return self


@cache
def load_footprints() -> Footprints:
    text = resources.files("model").joinpath("data/footprints.yaml").read_text(encoding="utf-8")
    try:
        data = Footprints.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a broken bundled file is a packaging bug: say where
        raise ValueError(f"model/data/footprints.yaml: {exc}") from exc
    known = {d.name for d in catalogue_devices()}
    strangers = [d.name for d in data.devices if d.name not in known]
    if strangers:
        raise ValueError(f"model/data/footprints.yaml: not in the device catalogue: {', '.join(strangers)}")
    return data


@cache
def _by_name() -> dict[str, DeviceFootprint]:
    return {d.name: d for d in load_footprints().devices}


def method_version() -> str:
    return load_footprints().version


def avoided_kg_co2e(total_kg_co2e: float, production_share: float, refurbishment_kg_co2e: float) -> float:
    """The method's arithmetic: the new device's production footprint less refurbishing, never below 0."""
    return max(0.0, total_kg_co2e * production_share - refurbishment_kg_co2e)


@dataclass(frozen=True)
class DeviceImpact:
    """What listing one device refurbished avoids, whatever its grade (the grade decides if it counts)."""

    basis: str  # the catalogue model whose figures are used, or "average phone"
    kind: str
    new_kg_co2e: float
    production_share: float
    refurbishment_kg_co2e: float
    avoided_kg_co2e: float  # rounded to 0.1 kg
    ewaste_kg: float  # rounded to 1 g
    footprint_estimated: bool
    mass_estimated: bool
    sources: dict[str, str] = field(default_factory=dict)
    method: str = ""
    method_version: str = ""

    @property
    def estimated(self) -> bool:
        return self.footprint_estimated or self.mass_estimated


def device_impact(device_model: str | None, kind: DeviceKind | str) -> DeviceImpact:
    """The figures for a catalogue model's name (`DeviceSpec.name`), or the kind's average when the
    model is None or has no published footprint."""
    data = load_footprints()
    kind = DeviceKind(kind)
    avg = data.kinds[kind]
    entry = _by_name().get(device_model) if device_model else None
    published = entry is not None and entry.footprint == "published"
    total = entry.total_kg_co2e if published else avg.total_kg_co2e
    share = entry.production_share if published else avg.production_share
    has_mass = entry is not None and entry.mass_kg is not None
    return DeviceImpact(
        basis=device_model if entry is not None else f"average {kind.value}",
        kind=kind.value,
        new_kg_co2e=total,
        production_share=share,
        refurbishment_kg_co2e=avg.refurbishment_kg_co2e,
        avoided_kg_co2e=round(avoided_kg_co2e(total, share, avg.refurbishment_kg_co2e), 1),
        ewaste_kg=round(entry.mass_kg if has_mass else avg.mass_kg, 3),
        footprint_estimated=not published,
        mass_estimated=not has_mass,
        sources={
            "footprint": entry.source if published else f"estimated: the {kind.value} average ({avg.source})",
            "mass": entry.mass_source
            if has_mass
            else f"estimated: the {kind.value} average ({avg.mass_source})",
            "refurbishment": data.refurbishment_source,
        },
        method=data.method,
        method_version=data.version,
    )


def is_listed(grades: Mapping[str, tuple[str, bool]]) -> bool:
    """A device counts as a listing when it has grades and every standard calls its grade listable.
    `grades`: standard -> (grade, listable)."""
    return bool(grades) and all(listable and grade != UNGRADABLE for grade, listable in grades.values())


def listing_impact(dev: DeviceImpact, grades: Mapping[str, tuple[str, bool]]) -> dict:
    """The API's `impact` object for a device with these grades (standard -> (grade, listable))."""
    listed = is_listed(grades)
    if listed:
        note = (
            f"Sold refurbished instead of new, it avoids making a new {dev.basis}: "
            f"{dev.new_kg_co2e:g} kg CO2e x {dev.production_share:.0%} from production, less "
            f"{dev.refurbishment_kg_co2e:g} kg CO2e for refurbishing; {dev.ewaste_kg:g} kg of device kept in use."
        )
    else:
        blocking = [(s, g) for s, (g, ok) in grades.items() if not ok or g == UNGRADABLE]
        if not grades:
            why = "no grade"
        elif all(g == UNGRADABLE for _, g in blocking):
            why = "ungradable (no usable photo of the device)"
        else:
            why = ", ".join(f"graded {g} ({s})" for s, g in blocking if g != UNGRADABLE) + ", not listable"
        note = (
            f"{why[0].upper()}{why[1:]}: it avoids nothing as a listing; it may still be repaired "
            "(then graded again) or recycled."
        )
    if dev.estimated:
        parts = [
            p for p, est in (("footprint", dev.footprint_estimated), ("mass", dev.mass_estimated)) if est
        ]
        why = (
            "no device model given"
            if dev.basis.startswith("average ")
            else "no published figure for this model"
        )
        note += f" Estimated: the {dev.kind} average {' and '.join(parts)} ({why})."
    return {
        "listed": listed,
        "avoided_kg_co2e": dev.avoided_kg_co2e if listed else 0.0,
        "ewaste_kg": dev.ewaste_kg if listed else 0.0,
        "if_listed_kg_co2e": dev.avoided_kg_co2e,
        "if_listed_ewaste_kg": dev.ewaste_kg,
        "estimated": dev.estimated,
        "basis": dev.basis,
        "new_device_kg_co2e": dev.new_kg_co2e,
        "production_share": dev.production_share,
        "refurbishment_kg_co2e": dev.refurbishment_kg_co2e,
        "method": dev.method,
        "method_version": dev.method_version,
        "source": dev.sources["footprint"],
        "sources": dict(dev.sources),
        "note": note,
    }
