"""A line's measured contrast and its visibility through the service: answered by the API, stored with the
grading and read back, enough to work the grade out again from the record; shown on the review page; listed
by the offline grader; and gradings stored before contrasts were kept still load and display.

The tiny model has no fine network, so `fine_contrast` stands in for the fine pass: every scratch the
model finds becomes what the fine pass reports for a hairline, 2.5 mm long and 0.12 mm wide, with a
contrast. Photographed from the back, Back Market grades it by visibility: at contrast 0.08 it is visible
at 20 cm but not at 50 cm, so Good; by width alone (no contrast) it would be Excellent.
"""

from __future__ import annotations

import copy
import json

import pytest

from model.instances import DefectInstance, Measurement, mm
from model.rules import load_standard
from model.rules.engine import grade
from model.taxonomy import View
from model.visibility import visibility_index, visible_up_to_cm
from serving import examples
from serving.db import Grading
from serving.schemas import defect_out, visibility_of
from tests.serving.conftest import Keys, pg_and_sqlite, post_grading
from tests.serving.test_review_pages import sign_in

H = Keys.h
LENGTH, WIDTH, CONTRAST = 2.5, 0.12, 0.08
SEEN = "contrast 0.08, visible at 20 cm: yes, at 50 cm: no"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # TestClient speaks plain http


def _as_fine_pass(inst: DefectInstance, contrast: float) -> DefectInstance:
    m = inst.measurement
    if inst.type.value != "scratch":
        return inst
    if m.units == "mm":
        m = Measurement(units="mm", length=LENGTH, width=WIDTH, area=LENGTH * WIDTH, contrast=contrast)
    else:
        m = m.model_copy(update={"contrast": contrast})
    return inst.model_copy(update={"measurement": m})


@pytest.fixture
def fine_contrast(monkeypatch):
    """The served pipeline's instances, each scratch measured as the fine pass would (module docstring)."""
    import serving.pipeline as pipeline

    real = pipeline.photo_instances

    def measured(*args, **kwargs):
        return [_as_fine_pass(i, CONTRAST) for i in real(*args, **kwargs)]

    monkeypatch.setattr(pipeline, "photo_instances", measured)


@pytest.fixture
def graded(client, keys, jpeg, fine_contrast) -> dict:
    r = post_grading(
        client,
        keys.a,
        [("back.jpg", jpeg, "image/jpeg")],
        data={"device_model": "iPhone 13", "views": "back", "standard": "backmarket"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def _expected_visibility(width: float, contrast: float) -> dict:
    return {
        "index_at_20cm": round(visibility_index(width, contrast, 20), 3),
        "index_at_50cm": round(visibility_index(width, contrast, 50), 3),
        "visible_at_20cm": True,
        "visible_at_50cm": False,
        "visible_up_to_cm": round(visible_up_to_cm(width, contrast), 1),
    }


def _instances(body: dict) -> list[DefectInstance]:
    """The defects of a stored grading as the rules read them: what the record must carry."""
    out = []
    for p in body["photos"]:
        for d in p["defects"]:
            out.append(
                DefectInstance(
                    type=d["type"],
                    zone=d["zone"],
                    photo_index=p["index"],
                    view=p["view"],
                    confidence=d["confidence"],
                    role=d["role"],
                    measurement=Measurement(
                        units=d["units"],
                        length=d["length"],
                        width=d["width"],
                        area=d["area"],
                        contrast=d.get("contrast"),
                    ),
                )
            )
    return out


@pg_and_sqlite
def test_a_measured_contrast_is_answered_stored_and_read_back(client, keys, graded):
    (scratch,) = graded["photos"][0]["defects"]
    assert scratch["type"] == "scratch" and scratch["zone"] == "body" and scratch["units"] == "mm"
    assert scratch["width"] == pytest.approx(WIDTH) and scratch["contrast"] == CONTRAST
    assert scratch["visibility"] == _expected_visibility(WIDTH, CONTRAST)
    assert scratch["visibility"]["index_at_20cm"] > 1 > scratch["visibility"]["index_at_50cm"]
    bm = graded["grades"]["backmarket"]
    assert bm["grade"] == "Good"
    assert any("visible at 20 cm (from up to 25 cm)" in r for r in bm["reasons"]["Excellent"])

    got = client.get(f"/v1/gradings/{graded['id']}", headers=H(keys.a))
    assert got.status_code == 200
    assert got.json()["photos"] == graded["photos"]  # GET answers what POST answered
    with client.app.state.svc.sessions() as s:
        stored = s.get(Grading, graded["id"]).body["photos"][0]["defects"][0]
    assert stored["contrast"] == CONTRAST and stored["visibility"] == scratch["visibility"]


def test_the_stored_defects_reproduce_a_grade_decided_by_visibility(client, keys, graded):
    body = client.get(f"/v1/gradings/{graded['id']}", headers=H(keys.a)).json()
    instances = _instances(body)
    std = load_standard("backmarket")
    assert body["rules_versions"]["backmarket"] == std.version
    again = grade(instances, std, device_kind=body["device_kind"], views={View.BACK})
    assert again.grade == body["grades"]["backmarket"]["grade"] == "Good"
    assert again.barred == body["grades"]["backmarket"]["reasons"]
    # The contrast is what decided it: the same defects without it grade by width alone.
    blind = [
        i.model_copy(update={"measurement": i.measurement.model_copy(update={"contrast": None})})
        for i in instances
    ]
    assert grade(blind, std, device_kind=body["device_kind"], views={View.BACK}).grade == "Excellent"


def test_the_review_page_shows_the_contrast_and_visibility(client, keys, graded):
    sign_in(client, keys.auditor)
    html = client.get(f"/review/gradings/{graded['id']}").text
    assert f"{LENGTH:.1f} mm × {WIDTH:.2f} mm" in html
    assert SEEN in html


def _rewrite_defects(client, gid: str, change) -> None:
    with client.app.state.svc.sessions() as s:
        row = s.get(Grading, gid)
        body = copy.deepcopy(row.body)
        for p in body["photos"]:
            for d in p["defects"]:
                change(d)
        row.body = body
        s.commit()


def test_gradings_stored_before_contrasts_load_and_display(client, keys, graded):
    gid = graded["id"]
    sign_in(client, keys.auditor)
    # Stored with a contrast but before the visibility block: worked out on reading, as first answered.
    _rewrite_defects(client, gid, lambda d: d.pop("visibility"))
    (d,) = client.get(f"/v1/gradings/{gid}", headers=H(keys.a)).json()["photos"][0]["defects"]
    assert d["contrast"] == CONTRAST and d["visibility"] == graded["photos"][0]["defects"][0]["visibility"]
    assert SEEN in client.get(f"/review/gradings/{gid}").text
    # Stored before contrasts were kept: neither key. Both read back null; the page shows the size only.
    _rewrite_defects(client, gid, lambda d: d.pop("contrast"))
    with client.app.state.svc.sessions() as s:
        assert "contrast" not in s.get(Grading, gid).body["photos"][0]["defects"][0]
    r = client.get(f"/v1/gradings/{gid}", headers=H(keys.a))
    assert r.status_code == 200
    (d,) = r.json()["photos"][0]["defects"]
    assert d["contrast"] is None and d["visibility"] is None and d["counted"]
    page = client.get(f"/review/gradings/{gid}")
    assert page.status_code == 200 and "mm ×" in page.text and "contrast" not in page.text.lower()
    assert client.get(f"/v1/gradings/{gid}/overlays/0", headers=H(keys.a)).status_code == 200


def test_the_batch_grader_lists_contrast_and_visibility(tmp_path, model_path, jpeg, fine_contrast):
    from serving.batch_grader import run_batch
    from serving.photo_batch import Batch

    (tmp_path / "back.jpg").write_bytes(jpeg)
    out = tmp_path / "out.jsonl"
    batch = Batch((tmp_path / "back.jpg",), standard="backmarket", device_model="iPhone 13", jsonl=out)
    code = run_batch(batch, model_path=model_path, threads=1)
    assert code == 0
    (rec,) = [json.loads(x) for x in out.read_text().splitlines()]
    (d,) = rec["defects"]
    assert d["contrast"] == CONTRAST and d["visibility"] == _expected_visibility(WIDTH, CONTRAST)
    assert rec["photos"][0]["defects"] == [d]


def test_visibility_only_where_a_contrast_and_mm_are_known():
    line = defect_out(mm("scratch", "body", LENGTH, WIDTH, contrast=CONTRAST))
    assert line["visibility"] == _expected_visibility(WIDTH, CONTRAST)
    assert defect_out(mm("scratch", "body", LENGTH, WIDTH))["visibility"] is None  # coarse pass
    assert defect_out(mm("chip", "body", 1.0, 1.0, contrast=0.3))["visibility"] is None  # not a line
    relative = DefectInstance(
        type="scratch",
        zone="body",
        measurement=Measurement(units="relative", length=0.02, width=0.001, area=2e-5, contrast=0.3),
    )
    out = defect_out(relative)
    assert out["contrast"] == 0.3 and out["visibility"] is None  # no width in mm to judge it by
    faint = defect_out(mm("crack", "body", LENGTH, 0.3, contrast=0.04))["visibility"]
    assert faint["visible_up_to_cm"] == 0 and not faint["visible_at_20cm"]  # below threshold anywhere
    # The documented example answer is what the service would say.
    for d in examples.GRADING["photos"][0]["defects"]:
        assert d["visibility"] == visibility_of(d)
