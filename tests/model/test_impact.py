"""model/impact.py and model/data/footprints.yaml: every catalogue device has a sourced footprint or is
marked as using its kind's average; the method's arithmetic on documented examples (docs/impact.md)."""

from __future__ import annotations

import pytest

from model.catalogue import devices
from model.impact import (
    avoided_kg_co2e,
    device_impact,
    is_listed,
    listing_impact,
    load_footprints,
    method_version,
)
from model.taxonomy import DeviceKind


def test_every_catalogue_device_has_a_sourced_footprint_or_uses_its_kinds_average():
    data = load_footprints()
    entries = {d.name: d for d in data.devices}
    assert set(entries) == {d.name for d in devices()}
    for spec in devices():
        e = entries[spec.name]
        if e.footprint == "published":
            assert e.total_kg_co2e and e.production_share and e.source and len(e.source) > 20, spec.name
            assert any(y in e.source for y in ("2018", "2019", "2020", "2021", "2022", "2023", "2024")), (
                spec.name
            )
        else:
            assert e.footprint == "kind average" and e.total_kg_co2e is None and e.source is None
            assert device_impact(spec.name, spec.kind).footprint_estimated
        assert e.mass_kg and e.mass_source, spec.name  # every catalogue device has a published weight
    for kind in DeviceKind:
        avg = data.kinds[kind]
        assert avg.source and avg.mass_source and avg.refurbishment_kg_co2e > 0


def test_published_figures_are_few_and_only_where_cited():
    published = {d.name for d in load_footprints().devices if d.footprint == "published"}
    assert published == {"iPhone 11", "iPhone 12", "iPhone 13"}


def test_kind_averages_follow_their_stated_derivation():
    data = load_footprints()
    phones = [d for d in data.devices if d.footprint == "published"]  # all phones today
    phone = data.kinds[DeviceKind.PHONE]
    mean_total = sum(d.total_kg_co2e for d in phones) / len(phones)
    mean_production = sum(d.total_kg_co2e * d.production_share for d in phones) / len(phones)
    assert phone.total_kg_co2e == pytest.approx(mean_total, abs=0.05)
    assert phone.production_share == pytest.approx(mean_production / mean_total, abs=0.005)
    kinds = {d.name: d.kind for d in devices()}
    for kind, avg in data.kinds.items():
        masses = [d.mass_kg for d in data.devices if kinds[d.name] == kind]
        assert avg.mass_kg == pytest.approx(sum(masses) / len(masses), abs=0.001), kind
        # refurbishment: the ADEME 2022 share of the kind's average production footprint
        expected = data.refurbishment_share * avg.total_kg_co2e * avg.production_share
        assert avg.refurbishment_kg_co2e == pytest.approx(expected, abs=0.05), kind


@pytest.mark.parametrize(
    ("model", "kind", "avoided", "mass", "estimated"),
    [
        # docs/impact.md, worked examples
        ("iPhone 13", "phone", 44.6, 0.174, False),  # 64 x 0.81 - 7.2 = 44.64
        ("iPhone 12", "phone", 50.9, 0.162, False),  # 70 x 0.83 - 7.2 = 50.9
        ("iPhone 11", "phone", 49.7, 0.194, False),  # 72 x 0.79 - 7.2 = 49.68
        ("Galaxy S24", "phone", 48.4, 0.167, True),  # phone average: 68.7 x 0.81 - 7.2 = 48.447
        (None, "phone", 48.4, 0.188, True),
        (None, "tablet", 42.0, 0.478, True),  # 61.9 x 0.78 - 6.3 = 41.982
        ("MacBook Air 13-inch (M1, 2020)", "laptop", 158.3, 1.29, True),  # 193 x 0.943 - 23.7 = 158.299
    ],
)
def test_the_methods_arithmetic_on_documented_examples(model, kind, avoided, mass, estimated):
    d = device_impact(model, kind)
    assert d.avoided_kg_co2e == avoided
    assert d.ewaste_kg == mass
    assert d.estimated is estimated
    assert d.method_version == method_version() == load_footprints().version


def test_avoided_never_goes_below_zero():
    assert avoided_kg_co2e(10.0, 0.5, 7.0) == pytest.approx(0.0)
    assert avoided_kg_co2e(100.0, 0.8, 7.2) == pytest.approx(72.8)


def test_unlistable_and_ungradable_devices_avoid_nothing_as_a_listing():
    d = device_impact("iPhone 13", "phone")
    listed = listing_impact(d, {"backmarket": ("Good", True), "ctia": ("B", True)})
    assert listed["listed"] and listed["avoided_kg_co2e"] == 44.6 and listed["ewaste_kg"] == 0.174
    assert not listed["estimated"] and "Product Environmental Report: iPhone 13" in listed["source"]

    unlistable = listing_impact(d, {"backmarket": ("Unlistable", False), "ctia": ("D", True)})
    assert not unlistable["listed"]
    assert unlistable["avoided_kg_co2e"] == 0.0 and unlistable["ewaste_kg"] == 0.0
    assert unlistable["if_listed_kg_co2e"] == 44.6  # what a listing would avoid, for a review to restore
    assert "Unlistable" in unlistable["note"] and "repaired" in unlistable["note"]

    ungradable = listing_impact(d, {"backmarket": ("ungradable", False)})
    assert not ungradable["listed"] and ungradable["avoided_kg_co2e"] == 0.0
    assert ungradable["note"].startswith("Ungradable")
    assert not is_listed({})


def test_an_estimate_says_so_in_words():
    out = listing_impact(device_impact(None, "laptop"), {"backmarket": ("Good", True)})
    assert out["estimated"] and out["basis"] == "average laptop"
    assert "Estimated" in out["note"] and "estimated" in out["source"]
