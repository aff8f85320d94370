"""Grading standards as data: the pydantic schema of a standard's YAML file, and its loading.

A standard is an ordered list of grades, best first. Each grade holds limits; a limit selects
instances by zone and defect type and bounds how many there may be, how large each may be and (for
lines) from how near a buyer may not see it (`invisible_at_cm`, `model.visibility`). The
last grade has no limits: it is what no better grade admits (e.g. "Unlistable"). A malformed file is
a `StandardError` naming the file, the field and the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.taxonomy import GRADED_DEFECT_TYPES, LINEAR_DEFECT_TYPES, DefectType, DeviceKind, Zone

BUNDLED_DIR = "rules/standards"
# The grade of a device that no usable photo shows (`model.rules.engine.ungradable`): no standard may
# name a grade so, or a reviewer could not tell "no evidence" from a grade the rules gave.
UNGRADABLE = "ungradable"


class StandardError(ValueError):
    """A standard file that cannot be used; the message names the file, the field and the problem."""


class Limit(BaseModel):
    """Bounds on the instances of `types` in `zones`: how many, how large each one, how visible.

    `invisible_at_cm` (lines only: scratches, cracks): each instance must be invisible to a normal
    observer at that distance, its visibility index (`model.visibility`) below 1. An instance whose
    contrast was measured (the fine pass) is judged on its width and contrast, and `max_width_mm` does
    not apply to it: visibility is the criterion the width stood in for. An instance without a contrast
    (the coarse pass, the synthetic generator) is judged by width alone: by `max_width_mm` where the limit
    sets one (the standard's stand-in, kept so those instances grade as before), else by the width-only
    criterion (at least 1 arc-minute wide at that distance is visible). Relative-unit instances (scale
    unknown) are judged by width alone, as before: `max_width_rel`, else `max_width_mm` on their
    estimated width, else the width-only criterion on it; their contrast is not used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: tuple[Zone, ...]
    types: tuple[DefectType, ...]
    max_count: int | None = Field(default=None, ge=0)
    max_length_mm: float | None = Field(default=None, gt=0)
    max_width_mm: float | None = Field(default=None, gt=0)
    max_area_mm2: float | None = Field(default=None, gt=0)
    # Relative fallbacks (fractions of the device length, area in its square) for photos whose scale is
    # unknown. Where absent, the mm bounds apply to an estimate from the reference device length.
    max_length_rel: float | None = Field(default=None, gt=0)
    max_width_rel: float | None = Field(default=None, gt=0)
    max_area_rel: float | None = Field(default=None, gt=0)
    # Back Market's "invisible at 20 cm": see the class docstring.
    invisible_at_cm: float | None = Field(default=None, gt=0)

    @field_validator("zones", "types", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if isinstance(value, str):
            value = [z.value for z in Zone] if value == "any" else [value]
        return value

    @field_validator("types")
    @classmethod
    def _no_smudges(cls, value: tuple[DefectType, ...]) -> tuple[DefectType, ...]:
        if DefectType.SMUDGE in value:
            raise ValueError("smudges are cleanable dirt and never lower a grade; remove 'smudge'")
        if not value:
            raise ValueError("a limit needs at least one defect type")
        return value

    @model_validator(mode="after")
    def _bounds_something(self) -> Limit:
        bounds = (
            self.max_count,
            self.max_length_mm,
            self.max_width_mm,
            self.max_area_mm2,
            self.invisible_at_cm,
        )
        if all(b is None for b in bounds):
            raise ValueError(
                "a limit must set max_count, a size bound (max_length_mm, ...) or invisible_at_cm"
            )
        return self

    @model_validator(mode="after")
    def _visibility_of_lines(self) -> Limit:
        if self.invisible_at_cm is not None and not set(self.types) <= LINEAR_DEFECT_TYPES:
            others = sorted(t.value for t in self.types if t not in LINEAR_DEFECT_TYPES)
            raise ValueError(
                f"invisible_at_cm is a line's visibility (scratch, crack); not for {', '.join(others)}"
            )
        return self

    @property
    def is_bar(self) -> bool:
        return self.max_count == 0

    def size_words(self, fmt: Callable[[float], str]) -> list[str]:
        """Its size bounds in words ("3 mm long", "0.15 mm wide", "4 mm²", "invisible at 20 cm (by width
        alone: 0.15 mm wide)"), mm numbers written by `fmt`."""
        words = [f"{fmt(self.max_length_mm)} mm long"] if self.max_length_mm is not None else []
        if self.max_width_mm is not None and self.invisible_at_cm is None:
            words.append(f"{fmt(self.max_width_mm)} mm wide")
        if self.max_area_mm2 is not None:
            words.append(f"{fmt(self.max_area_mm2)} mm²")
        if self.invisible_at_cm is not None:
            alone = (
                "" if self.max_width_mm is None else f" (by width alone: {fmt(self.max_width_mm)} mm wide)"
            )
            words.append(f"invisible at {self.invisible_at_cm:g} cm{alone}")
        return words


class Grade(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    summary: str
    listable: bool = True
    limits: tuple[Limit, ...] = ()


class ExampleDefect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: DefectType
    zone: Zone
    length_mm: float = Field(ge=0)
    width_mm: float = Field(default=0.1, ge=0)
    area_mm2: float | None = Field(default=None, ge=0)
    # As the fine pass measures it (`model.instances.Measurement.contrast`); None: not measured.
    contrast: float | None = Field(default=None, ge=0, le=1)


class Example(BaseModel):
    """A documented example: these defects must grade as `expect` (checked by the test suite)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    defects: tuple[ExampleDefect, ...] = ()
    expect: str


class Standard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    standard: str  # short machine name, e.g. "backmarket"
    title: str
    version: str
    source: str
    review_threshold: float = Field(default=0.8, gt=0, le=1)
    # Used to turn relative measurements into estimated millimetres when the scale is unknown.
    reference_length_mm: dict[DeviceKind, float] = Field(
        default_factory=lambda: {DeviceKind.PHONE: 150.0, DeviceKind.TABLET: 250.0, DeviceKind.LAPTOP: 310.0}
    )
    grades: tuple[Grade, ...] = Field(min_length=2)
    examples: tuple[Example, ...] = ()

    @model_validator(mode="after")
    def _well_formed(self) -> Standard:
        names = [g.name for g in self.grades]
        if len(set(names)) != len(names):
            raise ValueError(f"grade names must be unique, got {names}")
        if any(n.strip().lower() == UNGRADABLE for n in names):
            raise ValueError(
                f"{UNGRADABLE!r} is reserved for devices no usable photo shows, not a grade name"
            )
        if self.grades[-1].limits:
            raise ValueError(
                f"the last grade ({names[-1]}) must have no limits: it takes what no grade admits"
            )
        for ex in self.examples:
            if ex.expect not in names:
                raise ValueError(f"example {ex.name!r} expects unknown grade {ex.expect!r}")
        return self

    @property
    def grade_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.grades)

    def index(self, grade_name: str) -> int:
        return self.grade_names.index(grade_name)


def _format_error(path: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{path}: field {field}: {err['msg']}")
    return "\n".join(lines)


def parse_standard(text: str, source: str) -> Standard:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StandardError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise StandardError(f"{source}: field (top level): expected a mapping, got {type(data).__name__}")
    try:
        return Standard.model_validate(data)
    except ValidationError as exc:
        raise StandardError(_format_error(source, exc)) from exc


def load_standard_file(path: str | Path) -> Standard:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StandardError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_standard(text, str(path))


def _bundled():
    return resources.files("model").joinpath(BUNDLED_DIR)


def list_standards() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in _bundled().iterdir() if p.name.endswith(".yaml"))


@cache
def load_standard(name: str) -> Standard:
    """A bundled standard by name ("backmarket", "ctia", "r2"), or a YAML file by path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return load_standard_file(name)
    if name not in list_standards():
        raise StandardError(f"unknown standard {name!r}; bundled: {', '.join(list_standards())}")
    res = _bundled().joinpath(f"{name}.yaml")
    std = parse_standard(res.read_text(encoding="utf-8"), f"model/{BUNDLED_DIR}/{name}.yaml")
    if std.standard != name:
        raise StandardError(f"model/{BUNDLED_DIR}/{name}.yaml: field standard: must equal the file name")
    return std


GRADED_TYPES = frozenset(GRADED_DEFECT_TYPES)
