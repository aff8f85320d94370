"""Grades a refurbisher can trust (issue 18), through the API on the tiny model: no evidence, no grade;
which defects counted; zones that follow the view; and reviewers and storage coping with `ungradable`.

The tiny model here calibrates scratch confidences down (offset -3), so a faint red bar is a candidate
(confidence about 0.1) beside the strong bar (about 1.0) that counts.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from model.rules import load_standard
from serving.db import GradingGrade
from tests.serving.conftest import Keys, encode, post_grading
from tests.serving.test_review_pages import form_tokens, sign_in
from tests.serving.tiny_model import build_tiny_model, device_photo, tiny_card

H = Keys.h
STANDARDS = ("backmarket", "ctia", "r2")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    card = tiny_card()
    thresholds = card.thresholds.model_copy(update={"confidence_offset": {"scratch": -3.0}})
    path = tmp_path_factory.mktemp("evidence-model") / "tiny.onnx"
    build_tiny_model(path, card.model_copy(update={"thresholds": thresholds}))
    return path


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # TestClient speaks plain http


def _png(img: np.ndarray) -> tuple[str, bytes, str]:
    return ("p.png", encode(img, "PNG"), "image/png")


def scratched_with_candidate() -> np.ndarray:
    img = device_photo()  # a strong red bar across the device: a sure scratch
    img[150:160, 300:500] = (160, 20, 25)  # a faint one: a candidate below the cut
    return img


def no_device() -> np.ndarray:
    return device_photo(device=False)


def dark_scratched(sure: bool = False) -> np.ndarray:
    """Too dark to use (bad exposure), yet the model still finds a scratch on it: a short faint one it
    is unsure of, or (`sure`) a long one it is sure of."""
    img = np.full((400, 400, 3), 4, np.uint8)
    if sure:
        img[185:205, 100:300] = (230, 0, 0)
    else:
        img[185:192, 100:125] = (230, 0, 0)
    return img


def test_a_device_no_usable_photo_shows_is_ungradable_under_every_standard(client, keys):
    r = post_grading(client, keys.a, [_png(no_device()), _png(dark_scratched())])
    assert r.status_code == 201, r.text
    body = r.json()
    assert [p["quality"] for p in body["photos"]] == ["no_device", "bad_exposure"]
    assert set(body["grades"]) == set(STANDARDS)
    for name, g in body["grades"].items():
        assert g["grade"] == "ungradable" and not g["listable"] and g["needs_review"]
        # every grade of the standard, at 0: a reviewer's choices, and nothing to be sure of
        assert g["probabilities"] == dict.fromkeys(load_standard(name).grade_names, 0.0)
        assert g["reasons"] == {"ungradable": ["no usable photo of the device: nothing to grade from"]}
        assert g["advice"][0].startswith("photo 1: no device found") and "retake" in g["advice"][0]
        assert g["advice"][1].startswith("photo 2: too dark or blown out")
        assert g["missing_views"] == ["front", "back"]
    assert (
        body["needs_review"]
        and "backmarket: ungradable, no usable photo of the device" in body["review_reasons"]
    )
    # what the dark photo shows is listed for the reviewer, but nothing counted: there is no grade
    (scratch,) = body["photos"][1]["defects"]
    assert scratch["confidence"] < 0.5 and scratch["counted"] is False and scratch["role"] == "defect"

    # stored, listed and filtered like any grade
    got = client.get(f"/v1/gradings/{body['id']}", headers=H(keys.a)).json()
    assert got["grades"] == body["grades"]
    listed = client.get("/v1/gradings", params={"grade": "ungradable"}, headers=H(keys.a)).json()
    assert [i["id"] for i in listed["items"]] == [body["id"]]
    assert listed["items"][0]["grades"] == dict.fromkeys(STANDARDS, "ungradable")
    with client.app.state.svc.sessions() as s:
        assert {g.grade for g in s.query(GradingGrade).filter_by(grading_id=body["id"])} == {"ungradable"}


def test_sure_damage_on_an_unusable_photo_still_forces_the_last_grade(client, keys):
    """Poor photos hide defects; they do not invent sure ones. A long scratch the model is sure of, on a
    dark photo, makes Back Market's last grade whatever else the device shows; the standards where it
    does not decide the grade stay ungradable."""
    body = post_grading(client, keys.a, [_png(no_device()), _png(dark_scratched(sure=True))]).json()
    bm = body["grades"]["backmarket"]
    assert bm["grade"] == load_standard("backmarket").grade_names[-1] and not bm["listable"]
    assert bm["missing_views"] == ["front", "back"] and any(
        a.startswith("photo 2: too dark") for a in bm["advice"]
    )
    assert body["grades"]["ctia"]["grade"] == body["grades"]["r2"]["grade"] == "ungradable"
    (scratch,) = body["photos"][1]["defects"]
    assert scratch["confidence"] > 0.9 and scratch["counted"] is True


def test_one_usable_front_photo_is_graded_and_says_it_lacks_the_back(client, keys):
    body = post_grading(client, keys.a, [_png(scratched_with_candidate())], data={"views": "front"}).json()
    bm = body["grades"]["backmarket"]
    assert bm["grade"] not in ("ungradable", "Premium") and bm["missing_views"] == ["back"]
    # The back could only lower a grade: one that is not already the last goes to review for it.
    ctia = body["grades"]["ctia"]
    assert ctia["grade"] != load_standard("ctia").grade_names[-1] and ctia["needs_review"]
    assert body["needs_review"]
    lacks = [r for r in body["review_reasons"] if r.startswith("no usable back photo: graded without it (")]
    assert len(lacks) == 1 and "ctia" in lacks[0]  # named with the standards it left unsure
    assert bm["needs_review"] == (bm["grade"] != load_standard("backmarket").grade_names[-1])
    assert any(a.startswith("no usable back photo") for a in bm["advice"])
    defects = body["photos"][0]["defects"]
    assert all(isinstance(d["counted"], bool) for d in defects)
    counted = [d for d in defects if d["counted"]]
    candidates = [d for d in defects if not d["counted"]]
    assert len(counted) == 1 and counted[0]["confidence"] > 0.9
    assert len(candidates) == 1 and candidates[0]["confidence"] < 0.5
    # the reasons speak of what counted: one scratch, on the screen a front photo shows
    reason = bm["reasons"]["Premium"][0]
    assert reason.startswith("1 scratch on the screen") and "back" not in reason
    assert {d["zone"] for d in defects} == {"screen"}


def test_a_second_photo_of_the_back_completes_the_views(client, keys):
    photos = [_png(device_photo(scratch=False)), _png(device_photo(scratch=False))]
    body = post_grading(client, keys.a, photos, data={"views": "front,back"}).json()
    assert all(g["missing_views"] == [] for g in body["grades"].values())
    assert body["grades"]["backmarket"]["grade"] == "Premium" and not body["needs_review"]


def test_zones_follow_the_view(client, keys):
    """The tiny model's zone map calls the whole device a screen; on a back photo there is no screen,
    so the same scratch is on the back (body), and the reasons say so."""
    photo = encode(device_photo())
    for view, zone, words in [("front", "screen", "on the screen"), ("back", "body", "on the back")]:
        body = post_grading(client, keys.a, [("p.jpg", photo, "image/jpeg")], data={"views": view}).json()
        (scratch,) = body["photos"][0]["defects"]
        assert scratch["zone"] == zone
        assert words in body["grades"]["backmarket"]["reasons"]["Premium"][0]


def test_the_overlay_draws_what_counted_apart_from_candidates(client, keys):
    body = post_grading(client, keys.a, [_png(scratched_with_candidate())], data={"views": "front"}).json()
    ov = client.get(body["photos"][0]["overlay_url"], headers=H(keys.a))
    assert ov.status_code == 200 and ov.headers["content-type"] == "image/png"
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(ov.content)).convert("RGB")).astype(int)
    amber = (np.abs(img - np.array([255, 196, 0])).sum(axis=-1) < 30).sum()
    assert amber > 200  # the counted scratch's thick outline and full label


def test_a_reviewer_sees_the_counted_defects_and_overrules_ungradable_to_a_grade(client, keys):
    ungradable = post_grading(client, keys.a, [_png(no_device())]).json()
    graded = post_grading(client, keys.a, [_png(scratched_with_candidate())], data={"views": "front"}).json()
    assert sign_in(client, keys.auditor).status_code == 303

    queue = client.get("/review/queue?view=review").text
    row = queue[queue.index(ungradable["id"][:8]) :]
    assert "ungradable" in row[:3000] and re.search(r'class="low">0%', row[:3000])

    page = client.get(f"/review/gradings/{graded['id']}").text
    assert 'class="candidates-toggle"' in page and "Show 1 not counted" in page
    assert page.count('<span class="badge status-counted">Counted</span>') == 1
    assert page.count('<span class="badge status-candidate">Not counted</span>') == 1
    assert "c-counted" in page and "c-candidate" in page
    assert "Not seen: no usable back photo, graded without it." in page

    gid = ungradable["id"]
    page = client.get(f"/review/gradings/{gid}").text
    assert "No grade: no usable photo of the device: nothing to grade from." in page
    # the overrule form makes the reviewer pick a real grade for each standard
    assert page.count("ungradable: pick one</option>") == len(STANDARDS)
    tok = form_tokens(page)
    r = client.post(
        f"/review/gradings/{gid}/overrule",
        data={**tok, "standard": list(STANDARDS), "grade": ["Good", "C", "C4"], "reason": "seen in person"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    review = client.get(f"/v1/gradings/{gid}", headers=H(keys.a)).json()["review"]
    assert review["status"] == "overruled"
    assert review["grades"] == {"backmarket": "Good", "ctia": "C", "r2": "C4"}
    assert sorted(review["overruled"]) == sorted(STANDARDS)


def test_the_batch_grader_writes_ungradable_and_counted(tmp_path, model_path):
    from serving.batch_grader import run_batch
    from serving.photo_batch import Batch

    (tmp_path / "in").mkdir()
    for name, img in [("table.png", no_device()), ("front.png", scratched_with_candidate())]:
        (tmp_path / "in" / name).write_bytes(encode(img, "PNG"))
    out = tmp_path / "grades.jsonl"
    code = run_batch(
        Batch((tmp_path / "in",), jsonl=out), overlays=tmp_path / "ov", model_path=model_path, threads=1
    )
    assert code == 0
    recs = {r["file"].rsplit("/", 1)[-1]: r for r in map(json.loads, out.read_text().splitlines())}
    table, front = recs["table.png"], recs["front.png"]
    assert table["grades"] == dict.fromkeys(STANDARDS, "ungradable") and table["needs_review"]
    assert table["advice"]["ctia"][0].startswith("photo 1: no device found")
    assert table["missing_views"]["ctia"] == ["front", "back"]
    assert sorted(d["counted"] for d in front["defects"]) == [False, True]
    assert (tmp_path / "ov" / "front.png").exists()


def test_a_confirmed_ungradable_grading_exports_its_photos_without_grade_labels(client, keys, tmp_path):
    """'ungradable' is a verdict on the photos, not a grade of the device: it never becomes a label."""
    from datetime import UTC, datetime, timedelta

    from model.manifest import read_manifest
    from serving.db import ApiKey, Grading
    from serving.review import events
    from serving.review.export import export_reviews

    gid = post_grading(client, keys.a, [_png(no_device())]).json()["id"]
    svc = client.app.state.svc
    with svc.sessions() as s:
        who = s.query(ApiKey).filter_by(role="auditor").one().id
        events.confirm(s, s.get(Grading, gid), who, "nothing to see", None)
    since = datetime.now(UTC) - timedelta(hours=1)
    summary = export_reviews(svc.sessions, svc.blobs, tmp_path / "out", since, val_fraction=0.0)
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert summary.gradings == 1 and record.grades == {} and summary.grade_labels == 0


def test_overruling_one_standard_of_an_ungradable_grading_leaves_the_others_as_they_are(client, keys):
    from serving.db import ApiKey, Grading
    from serving.review import events

    gid = post_grading(client, keys.a, [_png(no_device())]).json()["id"]
    svc = client.app.state.svc
    with svc.sessions() as s:
        who = s.query(ApiKey).filter_by(role="auditor").one().id
        row = s.get(Grading, gid)
        unchanged = {"ctia": "ungradable", "r2": "ungradable"}
        events.overrule(s, row, who, {"backmarket": "Good", **unchanged}, "seen in person", None)
        assert events.load_state(s, row).current_grades() == {"backmarket": "Good", **unchanged}


def test_a_grade_the_devices_unknown_size_decides_says_so_in_the_review_reasons():
    """A laptop lid's dent measured without the laptop's model, near Fair's 10 mm: the grading goes to
    review, and the reason names the unknown size and the remedy."""
    from model.instances import DefectInstance, Measurement
    from model.rules import grade
    from serving.pipeline import Device, DeviceGrading

    dent = DefectInstance(
        type="dent",
        zone="body",
        measurement=Measurement(units="relative", length=0.034, width=0.01, area=1e-4),
    )
    result = grade([dent], "backmarket", device_kind="laptop", review_threshold=0.0)
    graded = DeviceGrading(
        photos=[],
        grades={"backmarket": result},
        device=Device(kind="laptop"),
        model_version="t",
        model_name="t",
        model_sha256="0" * 64,
    )
    assert result.grade == "Unlistable" and graded.needs_review
    assert graded.review_reasons == [
        "backmarket: Unlistable depends on the device's size, which is unknown (sizes estimated from a "
        "typical one): give the device model, or check"
    ]


def test_a_probability_just_under_the_review_threshold_reads_as_under_it():
    """0.958 against 0.96 was written "0.96 < 0.96"; the reason now shows the digits that tell them apart."""
    from model.instances import mm
    from model.rules import grade
    from serving.pipeline import Device, DeviceGrading, below

    assert below(0.52, 0.96) == ("0.52", "0.96")
    assert below(0.958, 0.96) == ("0.958", "0.960")
    assert below(0.95999, 0.96) == ("0.9599", "0.9600")
    result = grade([mm("scratch", "screen", 5.0, confidence=0.5)], "backmarket")
    p = result.probabilities[result.grade]
    just_above = result.model_copy(update={"review_threshold": p + 0.0005})
    graded = DeviceGrading(
        photos=[],
        grades={"backmarket": just_above},
        device=Device(),
        model_version="t",
        model_name="t",
        model_sha256="0" * 64,
    )
    (reason,) = graded.review_reasons
    shown, threshold = reason.removeprefix(f"backmarket: top grade {result.grade} has probability ").split(
        " < "
    )
    assert float(shown) < float(threshold)
