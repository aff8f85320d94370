"""Reference data the API answers with: the bundled grading standards (their grades and limits in
words) and the device catalogue, searchable. Pydantic bodies and their builders; no FastAPI here, so the
Python client reads the same schemas. Routes: serving/routes/reference.py."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, Field

from model.catalogue import DeviceSpec, devices, load_catalogue, normalise_name
from model.rules import list_standards, load_standard
from model.rules.engine import ZONE_WORDS
from model.rules.schema import Limit, Standard
from model.taxonomy import plural


class LimitOut(BaseModel):
    zones: list[str] = Field(description="where it applies: screen, body, frame, camera")
    types: list[str] = Field(description="the defect types it counts: scratch, crack, chip, dent, stain")
    max_count: int | None = Field(description="how many at most (0: none allowed; null: any number)")
    max_length_mm: float | None = Field(description="the longest each may be, mm (null: no limit)")
    max_width_mm: float | None = Field(
        description="the widest each may be, mm (null: no limit); with `invisible_at_cm`, it applies only "
        "to lines without a measured contrast (it stands in for their visibility)"
    )
    max_area_mm2: float | None = Field(description="the largest area each may have, mm² (null: no limit)")
    invisible_at_cm: float | None = Field(
        default=None,
        description="scratches and cracks only: each must be invisible to a normal observer from this "
        "distance, cm (a defect's `visibility`; docs/visibility.md); null: no visibility bound",
    )
    words: str = Field(
        description="the limit in words, e.g. 'on the back and frame: at most 5 scratches, ...'"
    )


class GradeDefOut(BaseModel):
    name: str = Field(description="the grade, as gradings answer it", examples=["Excellent"])
    summary: str = Field(description="the grade in a sentence")
    listable: bool = Field(description="whether a marketplace may list a device at this grade")
    limits: list[LimitOut] = Field(description="what the grade allows; the last grade takes everything else")


class StandardOut(BaseModel):
    name: str = Field(description="the name gradings use (`standard`)", examples=["backmarket"])
    title: str = Field(description="the standard's full name", examples=["Back Market"])
    version: str = Field(description="the version of its rules", examples=["2026.11.0"])
    source: str = Field(description="where the grades and their thresholds come from")
    review_threshold: float = Field(description="a grade less likely than this goes to review")
    grades: list[GradeDefOut] = Field(description="best first")


class DeviceOut(BaseModel):
    name: str = Field(description="the name to send as `device_model`", examples=["iPhone 13"])
    kind: str = Field(
        description="phone, tablet or laptop",
        examples=["phone"],
        json_schema_extra={"enum": ["phone", "tablet", "laptop"]},
    )
    length_mm: float = Field(description="longest outer side")
    width_mm: float = Field(description="the other outer side")
    depth_mm: float = Field(description="thickness")
    aliases: list[str] = Field(description="other names that find it")


class DevicesOut(BaseModel):
    catalogue_version: str = Field(description="the version of the device catalogue")
    items: list[DeviceOut] = Field(description="the devices that match")
    total: int = Field(description="how many match")
    suggestions: list[str] = Field(
        default_factory=list, description="with `q` and no match: the closest device names"
    )


def _fmt(x: float) -> str:
    return f"{x:g}"


def _join(words: list[str], last: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def limit_words(lim: Limit) -> str:
    """e.g. 'on the back and frame: at most 5 scratches, each up to 3 mm long, 0.15 mm wide'."""
    many = [plural(t, 2).split(" ", 1)[1] for t in lim.types]
    zones = sorted(lim.zones, key=list(ZONE_WORDS).index)
    where = "anywhere" if len(zones) == len(ZONE_WORDS) else "on the " + _join([ZONE_WORDS[z] for z in zones])
    if lim.is_bar:
        return f"{where}: no {_join(many, 'or')}"
    if lim.max_count is None:
        count = f"any number of {_join(many, 'or')}"
    elif len(lim.types) == 1:
        count = f"at most {plural(lim.types[0], lim.max_count)}"
    else:
        count = f"at most {lim.max_count} {_join(many, 'or')} in all"
    sizes = lim.size_words(_fmt)
    if not sizes:
        return f"{where}: {count}"
    # "each up to 3 mm long, invisible at 20 cm", but "each invisible at 20 cm" when that is all
    lead = "each " if sizes[0].startswith("invisible") else "each up to "
    return f"{where}: {count}, {lead}" + ", ".join(sizes)


def standard_out(std: Standard) -> StandardOut:
    return StandardOut(
        name=std.standard,
        title=std.title,
        version=std.version,
        source=std.source,
        review_threshold=std.review_threshold,
        grades=[
            GradeDefOut(
                name=g.name,
                summary=g.summary,
                listable=g.listable,
                limits=[
                    LimitOut(
                        zones=[str(z) for z in lim.zones],
                        types=[str(t) for t in lim.types],
                        max_count=lim.max_count,
                        max_length_mm=lim.max_length_mm,
                        max_width_mm=lim.max_width_mm,
                        max_area_mm2=lim.max_area_mm2,
                        invisible_at_cm=lim.invisible_at_cm,
                        words=limit_words(lim),
                    )
                    for lim in g.limits
                ],
            )
            for g in std.grades
        ],
    )


def standards_out() -> list[StandardOut]:
    return [standard_out(load_standard(n)) for n in list_standards()]


def device_out(d: DeviceSpec) -> DeviceOut:
    return DeviceOut(
        name=d.name,
        kind=d.kind.value,
        length_mm=d.length,
        width_mm=d.width,
        depth_mm=d.depth,
        aliases=list(d.aliases),
    )


def closest_devices(q: str, n: int = 3) -> list[str]:
    """The catalogue's names closest to `q` (difflib on the normalised names and aliases)."""
    keys: dict[str, str] = {}
    for d in devices():
        for alias in (d.name, *d.aliases):
            keys.setdefault(normalise_name(alias), d.name)
    close = difflib.get_close_matches(normalise_name(q), keys, n=n * 2, cutoff=0.6)
    return list(dict.fromkeys(keys[k] for k in close))[:n]


def search_devices(q: str | None = None, kind: str | None = None) -> DevicesOut:
    """Devices whose name or an alias contains `q` (case, spacing and punctuation ignored)."""
    key = normalise_name(q) if q else ""
    found = [
        d
        for d in devices()
        if (kind is None or d.kind.value == kind)
        and (not key or any(key in normalise_name(a) for a in (d.name, *d.aliases)))
    ]
    return DevicesOut(
        catalogue_version=load_catalogue().version,
        items=[device_out(d) for d in found],
        total=len(found),
        suggestions=closest_devices(q) if q and not found else [],
    )
