"""The shown-recall benchmark (benchmarks/bench_shown.py): each true defect counts once in its zone and
once in "all", in its photo_step band and in "shown" from 8 grey levels; a set made without
`--measure-shown` is refused with its manifest named; a measured set runs through the bundled files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.manifest import read_manifest
from tests.benchmarks import load_bench
from training.metrics import GtInstance, Match
from training.synth import SynthConfig, generate

ROOT = Path(__file__).resolve().parents[2]
BASE = {"p_real_background": 0.0, "p_composite": 0.0}


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_shown")


def _gt(zone: str, step: float | None) -> GtInstance:
    return GtInstance("scratch", np.zeros((4, 4), bool), 5.0, zone, step)


def test_each_defect_counts_in_its_zone_band_and_shown(bench):
    found = object()  # any prediction: matched
    matches = [
        Match("scratch", found, _gt("frame", 1.0)),
        Match("scratch", None, _gt("frame", 2.0)),
        Match("scratch", found, _gt("frame", 30.0)),
        Match("scratch", None, _gt("body", 8.0)),
        Match("scratch", found, None),  # a false scratch: no truth to count
        Match("chip", found, _gt("frame", 50.0)),  # another type
        Match("scratch", found, _gt("frame", None)),  # not measured
    ]
    t = bench.tally(matches, "scratch")
    assert t["frame"]["0-3"] == [1, 2]
    assert t["frame"][">= 20"] == [1, 1]
    assert t["frame"]["shown"] == [1, 1]
    assert t["frame"]["all"] == [2, 3]
    assert t["body"]["8-20"] == [0, 1] and t["body"]["shown"] == [0, 1]
    assert t["all"]["all"] == [2, 4] and t["all"]["shown"] == [1, 2]
    assert [bench.band_of(s) for s in (0.0, 2.99, 3.0, 19.9, 20.0, 255.0)] == [
        "0-3",
        "0-3",
        "3-8",
        "8-20",
        ">= 20",
        ">= 20",
    ]


def test_photos_count_in_their_view_group_and_in_all(bench):
    assert [bench.view_group(v) for v in ("front", "back", "top", "left", None)] == [
        "front",
        "back",
        "side",
        "side",
        "unknown",
    ]
    photos = [
        {"view": "front", "right": True, "found": 2, "true": 3, "false": 1, "errors": [0.1, 0.3]},
        {"view": "side", "right": False, "found": 1, "true": 4, "false": 2, "errors": [1.0]},
        {"view": "side", "right": None, "found": 0, "true": 1, "false": 0, "errors": []},
    ]
    t = bench.by_view(photos)
    assert t["front"] == {
        "photos": 1,
        "right": 1,
        "graded": 1,
        "found": 2,
        "true": 3,
        "false": 1,
        "median_length_error": pytest.approx(0.2),
    }
    assert (t["side"]["photos"], t["side"]["right"], t["side"]["graded"]) == (2, 0, 1)
    assert (t["side"]["found"], t["side"]["true"], t["side"]["false"]) == (1, 5, 2)
    assert t["all"]["graded"] == 2 and t["all"]["true"] == 8
    assert t["all"]["median_length_error"] == pytest.approx(0.3)


def test_a_set_made_without_measuring_is_refused_by_name(bench, tmp_path):
    path = generate(SynthConfig(seed=1, size=128, **BASE), 3, tmp_path / "plain", progress=False)
    with pytest.raises(SystemExit, match=r"plain/manifest\.jsonl.*--measure-shown"):
        bench.main(["-m", f"{path}@train,val,test"])


@pytest.mark.slow
def test_a_measured_set_prints_its_table(bench, tmp_path, capsys):
    path = generate(
        SynthConfig(seed=4, size=384, measure_shown=True, **BASE), 6, tmp_path / "m", progress=False
    )
    out = tmp_path / "t.json"
    model = str(ROOT / "models/default.onnx")
    assert bench.main(["-m", f"{path}@train,val,test", "--model", model, "--json", str(out)]) == 0
    assert "| all |" in capsys.readouterr().out
    table = json.loads(out.read_text())["table"]
    steps = [i.photo_step for r in read_manifest(path) for i in r.instances if i.type.value == "scratch"]
    assert steps  # the seed draws scratches
    found, true = table["all"]["all"]
    assert true == len(steps) and 0 <= found <= true
    assert table["all"].get("shown", [0, 0])[1] == sum(s >= bench.SHOWN_AT for s in steps)
    views = json.loads(out.read_text())["by_view"]
    assert views["all"]["photos"] == 6 and views["all"]["true"] == len(steps)
    assert views["all"]["found"] == found
    assert sum(v["photos"] for g, v in views.items() if g != "all") == 6
