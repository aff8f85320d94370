"""The device catalogue: coverage, sane dimensions, tolerant lookup."""

from __future__ import annotations

import pytest

from model.catalogue import UnknownDeviceError, devices, lookup_device, normalise_name
from model.taxonomy import DeviceKind


def test_catalogue_covers_at_least_40_models_of_every_family():
    names = [d.name for d in devices()]
    assert len(names) >= 40
    for family in ("iPhone", "Galaxy S", "Galaxy A", "Pixel", "iPad", "MacBook Air", "MacBook Pro"):
        assert any(n.startswith(family) for n in names), family


@pytest.mark.parametrize("spec", devices(), ids=lambda d: d.name)
def test_dimensions_are_plausible_for_the_kind(spec):
    assert spec.length >= spec.width > spec.depth
    lo, hi = {DeviceKind.PHONE: (120, 175), DeviceKind.TABLET: (190, 290), DeviceKind.LAPTOP: (290, 370)}[
        spec.kind
    ]
    assert lo <= spec.length <= hi


@pytest.mark.parametrize("query", ["iPhone 15 Pro", "iphone15pro", "  IPHONE-15-PRO ", "Apple iPhone 15 Pro"])
def test_lookup_is_case_spacing_and_maker_tolerant(query):
    spec = lookup_device(query)
    assert spec.name == "iPhone 15 Pro"
    assert spec.length == pytest.approx(146.6)


def test_plus_and_aliases():
    assert lookup_device("galaxy s24 plus").name == "Galaxy S24+"
    assert lookup_device("Galaxy S24+").length == pytest.approx(158.5)
    assert lookup_device("ipad mini 6").kind is DeviceKind.TABLET


def test_similar_names_stay_distinct():
    assert lookup_device("iPhone 15").length != lookup_device("iPhone 15 Plus").length
    assert normalise_name("iPhone 15 Pro Max") != normalise_name("iPhone 15 Pro")


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UnknownDeviceError) as info:
        lookup_device("iPhone 15 Prp")
    assert "iPhone 15 Pro" in info.value.suggestions
    assert "did you mean" in str(info.value)
    with pytest.raises(UnknownDeviceError):
        lookup_device("Nokia 3310")


def test_the_older_models_refurbishers_sell_most_are_known_and_kept_apart():
    # iPhone X, XS and XR differ by one letter; the X and XS share their size, the XR does not.
    assert lookup_device("iPhone X").name == "iPhone X" and lookup_device("iphone 10").name == "iPhone X"
    assert lookup_device("iPhone XS").name == "iPhone XS"
    assert lookup_device("iPhone XR").length == pytest.approx(150.9) != lookup_device("iPhone X").length
    assert lookup_device("iPhone XS Max").width == pytest.approx(77.4)
    assert lookup_device("iPhone SE 2020").name == "iPhone SE (2nd generation)"
    assert lookup_device("iPhone SE 2022").name == "iPhone SE (3rd generation)"
    assert lookup_device("iPhone 8").length == pytest.approx(138.4)
    assert lookup_device("Galaxy S20 Plus").name == "Galaxy S20+"
    assert lookup_device("Samsung Galaxy S10e").depth == pytest.approx(7.9)
