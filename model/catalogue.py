"""The bundled device catalogue: outer dimensions of common devices, and tolerant lookup by name.

The catalogue gives every photo a scale: once post-processing knows the device's outline in pixels and
its length in mm, every defect can be measured in mm.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.taxonomy import DeviceKind


class DeviceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: DeviceKind
    length: float = Field(gt=0, description="longest outer side, mm")
    width: float = Field(gt=0, description="shorter outer side, mm")
    depth: float = Field(gt=0, description="thickness, mm")
    aliases: tuple[str, ...] = ()


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    devices: tuple[DeviceSpec, ...]


class UnknownDeviceError(KeyError):
    """Raised for a device model that the catalogue does not know, with close matches."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown device model {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def normalise_name(name: str) -> str:
    """Case-, spacing- and punctuation-tolerant key: 'iPhone 15 Pro' == 'iphone15pro' == 'IPHONE-15-PRO'."""
    key = name.lower().replace("+", "plus")
    return re.sub(r"[^a-z0-9.]", "", key)


@cache
def load_catalogue() -> Catalogue:
    text = resources.files("model").joinpath("data/devices.yaml").read_text(encoding="utf-8")
    try:
        return Catalogue.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a broken bundled file is a packaging bug: say where
        raise ValueError(f"model/data/devices.yaml: {exc}") from exc


@cache
def _index() -> dict[str, DeviceSpec]:
    index: dict[str, DeviceSpec] = {}
    for spec in load_catalogue().devices:
        for alias in (spec.name, *spec.aliases):
            key = normalise_name(alias)
            if key in index and index[key] != spec:
                raise ValueError(f"device catalogue: {alias!r} names both {index[key].name} and {spec.name}")
            index[key] = spec
    return index


def lookup_device(name: str) -> DeviceSpec:
    """The catalogue entry for `name`; raises UnknownDeviceError with suggestions when unknown."""
    key = normalise_name(name)
    index = _index()
    if key in index:
        return index[key]
    # A leading maker name ("Apple iPhone 15", "Samsung Galaxy S24") is common in listings.
    for maker in ("apple", "samsung", "google"):
        if key.startswith(maker) and key[len(maker) :] in index:
            return index[key[len(maker) :]]
    import difflib

    close = difflib.get_close_matches(key, index.keys(), n=3, cutoff=0.75)
    raise UnknownDeviceError(name, sorted({index[k].name for k in close}))


def devices() -> tuple[DeviceSpec, ...]:
    return load_catalogue().devices
