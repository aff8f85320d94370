"""The wrong-grade census (benchmarks/bench_grade_errors.py): a stricter grade is traced to the counted
instance that alone decides it, false or over-measured; a more lenient one to the true defect that alone
reaches the truth, missed (shown or hidden), found but not counted, or under-measured; a photo counts
once per cause; a measured set runs through the bundled files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.instances import mm
from model.manifest import LabelledInstance, read_manifest
from tests.benchmarks import load_bench
from training.metrics import true_grades
from training.synth import SynthConfig, generate

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["Premium", "Excellent", "Good", "Fair", "Unlistable"]


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_grade_errors")


def _label(type_: str, zone: str, length: float, width: float, step: float | None) -> LabelledInstance:
    return LabelledInstance(
        type=type_, zone=zone, mask="m.png", length_mm=length, width_mm=width, photo_step=step
    )


class _Record:
    def __init__(self, instances):
        self.instances = instances


def test_a_stricter_grade_is_traced_to_the_instance_that_alone_decides_it(bench):
    crack = mm("crack", "screen", 30.0, 0.2)  # Unlistable alone
    gouge = mm("scratch", "frame", 6.0, 0.25)  # Good alone
    hairline = mm("scratch", "frame", 0.5, 0.02)  # within Premium
    candidate = mm("crack", "body", 20.0, 0.2, confidence=0.2)  # under the rules' cut: never counted
    matched = {id(gouge): True}  # the gouge is a true one, measured too large
    causes = bench.stricter_causes([crack, gouge, hairline, candidate], matched, "phone", "Unlistable", ORDER)
    assert causes == ["false crack on screen"]  # without the gouge it is still Unlistable
    assert bench.stricter_causes([gouge, hairline], matched, "phone", "Good", ORDER) == [
        "over-measured scratch on frame"
    ]
    # Two cracks: taking either away leaves the other, so no single one decides.
    two = [crack, mm("crack", "screen", 40.0, 0.2)]
    assert bench.stricter_causes(two, {}, "phone", "Unlistable", ORDER) == ["several together"]


def test_a_lenient_grade_is_traced_to_the_true_defect_that_alone_reaches_the_truth(bench):
    record = _Record(
        [
            _label("crack", "screen", 50.0, 0.2, 70.0),  # 0: Unlistable alone
            _label("chip", "frame", 6.0, 2.0, 2.0),  # 1: Unlistable alone (over 5 mm), hardly shown
            _label("scratch", "frame", 0.5, 0.02, 40.0),  # 2: Premium alone: never a cause
            _label("dent", "body", 12.0, 5.0, None),  # 3: Unlistable alone, step not measured
        ]
    )
    causes = bench.lenient_causes(record, {0: False}, "phone", "Unlistable", ORDER)
    assert causes == [
        "found, not counted crack on screen",  # its fragments were matched, none counted
        "missed chip on frame, hidden",
        "missed dent on body, step unknown",
    ]
    causes = bench.lenient_causes(record, {0: True, 1: False}, "phone", "Unlistable", ORDER)
    assert causes[:2] == ["found, not counted chip on frame", "missed dent on body, step unknown"]
    assert causes[2] == "under-measured crack on screen"
    assert "missed chip on frame, shown" in bench.lenient_causes(
        _Record([_label("chip", "frame", 6.0, 2.0, 8.0)]), {}, "phone", "Unlistable", ORDER
    )
    # Eleven 2 mm frame scratches are Fair together (Good allows at most 10); none alone is.
    many = _Record([_label("scratch", "frame", 2.0, 0.1, 30.0) for _ in range(11)])
    assert bench.lenient_causes(many, {}, "phone", "Fair", ORDER) == ["several together"]


def test_each_photo_counts_once_per_cause(bench):
    rows = [
        {"direction": "right", "causes": []},
        {"direction": "lenient", "causes": ["missed chip on frame, shown", "missed scratch on frame, shown"]},
        {"direction": "lenient", "causes": ["missed chip on frame, shown"]},
        {"direction": "stricter", "causes": ["false crack on body"]},
        {"direction": "ungradable", "causes": []},
    ]
    t = bench.census(rows)
    assert (t["photos"], t["right"]) == (5, 1)
    assert t["lenient"] == {
        "photos": 2,
        "causes": {"missed chip on frame, shown": 2, "missed scratch on frame, shown": 1},
    }
    assert t["stricter"] == {"photos": 1, "causes": {"false crack on body": 1}}


@pytest.mark.slow
def test_a_synthetic_set_prints_its_census(bench, tmp_path, capsys):
    base = {"p_real_background": 0.0, "p_composite": 0.0, "measure_shown": True}
    path = generate(SynthConfig(seed=4, size=384, **base), 6, tmp_path / "m", progress=False)
    out = tmp_path / "e.json"
    model = str(ROOT / "models/default.onnx")
    assert bench.main(["-m", f"{path}@train,val,test", "--model", model, "--json", str(out), "--list"]) == 0
    printed = capsys.readouterr().out
    assert "Back Market per photo:" in printed
    got = json.loads(out.read_text())
    photos, table = got["photos"], got["census"]
    graded = [
        r for r in read_manifest(path) if true_grades(r).get("backmarket")
    ]  # a photo of no device has none
    assert len(photos) == table["photos"] == len(graded) > 0
    wrong = [p for p in photos if p["direction"] in ("stricter", "lenient")]
    assert table["right"] == sum(p["direction"] == "right" for p in photos)
    assert all(p["causes"] for p in wrong) and not any(p["causes"] for p in photos if p not in wrong)
    for p in wrong:  # --list prints each wrong photo with its causes
        assert f"{p['image']}: truth {p['truth']}, graded {p['graded']}: " in printed
