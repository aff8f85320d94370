"""Disputes: POST /v1/gradings/{id}/disputes by the owner or an auditor (another tenant gets 404), extra
photos, validation, and the resolution seen through GET /v1/gradings/{id} (backward compatible)."""

from __future__ import annotations

import pytest

from serving.db import GradingEvent
from serving.review import events, queue
from serving.schemas import GradingOut
from tests.serving.conftest import Keys, pg_and_sqlite, post_grading

H = Keys.h


@pytest.fixture
def gid(client, keys, jpeg):
    return post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")]).json()["id"]


def dispute(client, token, gid, reason="the scratch is a reflection", photos=()):
    files = [("photos", p) for p in photos] or None
    return client.post(f"/v1/gradings/{gid}/disputes", data={"reason": reason}, files=files, headers=H(token))


@pg_and_sqlite
def test_owner_disputes_and_sees_it_open(client, keys, gid, clean_jpeg):
    before = client.get(f"/v1/gradings/{gid}", headers=H(keys.a)).json()
    assert before["review"] == {
        "status": before["review"]["status"],
        "grades": {k: g["grade"] for k, g in before["grades"].items()},
        "overruled": [],
        "reviewed_at": None,
        "disputes": [],
    }
    assert before["review"]["status"] in {"graded", "needs_review"}
    r = dispute(client, keys.a, gid, photos=[("close.jpg", clean_jpeg, "image/jpeg")])
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["status"] == "open" and d["resolution"] is None and d["grading_id"] == gid
    assert d["reason"] == "the scratch is a reflection" and d["created_at"].endswith("Z")
    assert d["photos"][0]["filename"] == "close.jpg" and d["photos"][0]["bytes"] == len(clean_jpeg)
    assert client.app.state.svc.blobs.get(d["photos"][0]["sha256"]) == clean_jpeg
    after = client.get(f"/v1/gradings/{gid}", headers=H(keys.a)).json()
    assert after["review"]["status"] == "disputed" and after["review"]["disputes"] == [d]
    # everything that was there before is unchanged (backward compatible)
    assert {k: v for k, v in after.items() if k != "review"} == {
        k: v for k, v in before.items() if k != "review"
    }
    GradingOut.model_validate(after)


def test_other_tenant_gets_404_and_auditor_or_admin_may_dispute(client, keys, gid):
    r = dispute(client, keys.b, gid)
    assert r.status_code == 404 and r.json()["code"] == "grading_not_found"
    assert dispute(client, "rg_x_nope", gid).status_code == 401
    assert dispute(client, keys.auditor, gid, "spot check: looks too harsh").status_code == 201
    assert dispute(client, keys.admin, gid, "escalated by support").status_code == 201
    with client.app.state.svc.sessions() as s:
        roles = [e.payload["role"] for e in s.query(GradingEvent).filter_by(grading_id=gid, kind="disputed")]
    assert roles == ["auditor", "admin"]
    assert dispute(client, keys.a, "0" * 36).status_code == 404


def test_bad_disputes_are_refused_and_leave_no_event(client, keys, gid):
    assert dispute(client, keys.a, gid, reason="").status_code == 422
    assert dispute(client, keys.a, gid, reason="   ").status_code == 422
    assert dispute(client, keys.a, gid, reason="x" * 2001).status_code == 422
    r = dispute(client, keys.a, gid, photos=[("a.txt", b"hello", "text/plain")])
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = dispute(client, keys.a, gid, photos=[("a.jpg", b"not a jpeg at all", "image/jpeg")])
    assert r.status_code == 422 and r.json()["code"] == "not_an_image"
    r = dispute(client, keys.a, gid, photos=[("a.jpg", b"", "image/jpeg")])
    assert r.status_code == 422
    r = client.post(f"/v1/gradings/{gid}/disputes", json={"reason": "json is not a form"}, headers=H(keys.a))
    assert r.status_code == 422 and set(r.json()) == {"code", "message"}
    with client.app.state.svc.sessions() as s:
        assert s.query(GradingEvent).filter_by(grading_id=gid, kind="disputed").count() == 0


def test_resolution_is_visible_to_the_owner(client, keys, gid):
    from serving.db import ApiKey, Grading

    dispute(client, keys.a, gid, "first")
    dispute(client, keys.a, gid, "second, with more detail")
    svc = client.app.state.svc
    with svc.sessions() as s:
        row = s.get(Grading, gid)
        auditor_id = s.query(ApiKey).filter_by(role="auditor").one().id
        st = events.load_state(s, row)
        ctia = st.grades["ctia"]
        new = next(g for g in ctia.choices if g != ctia.grade)
        events.overrule(s, row, auditor_id, {"ctia": new}, "dent on the frame", st.last_event_id)
    body = client.get(f"/v1/gradings/{gid}", headers=H(keys.a)).json()
    review = body["review"]
    assert review["status"] == "overruled" and review["overruled"] == ["ctia"]
    assert review["grades"]["ctia"] == new and body["original"]["ctia"]["grade"] == ctia.original
    assert body["grades"]["ctia"]["grade"] == new and body["grades"]["ctia"]["source"] == "review"
    assert review["reviewed_at"] is not None
    assert [d["status"] for d in review["disputes"]] == ["resolved", "resolved"]
    res = review["disputes"][0]["resolution"]
    assert (
        res["outcome"] == "overruled"
        and res["grades"] == {"ctia": new}
        and res["reason"] == "dent on the frame"
    )
    # a later dispute opens again; a confirmation resolves it with the current (overruled) grades
    dispute(client, keys.a, gid, "still wrong")
    assert client.get(f"/v1/gradings/{gid}", headers=H(keys.a)).json()["review"]["status"] == "disputed"
    with svc.sessions() as s:
        row = s.get(Grading, gid)
        events.confirm(s, row, auditor_id, "checked again", None)
    review = client.get(f"/v1/gradings/{gid}", headers=H(keys.a)).json()["review"]
    assert review["status"] == "overruled" and review["disputes"][-1]["resolution"]["outcome"] == "confirmed"
    assert review["disputes"][-1]["resolution"]["grades"]["ctia"] == new


def test_disputed_gradings_enter_and_leave_the_queue(client, keys, gid):
    from serving.db import Grading

    svc = client.app.state.svc
    with svc.sessions() as s:
        assert gid not in {g.id for g in queue.queue_page(s, "disputed", queue.QueueFilters(), 50, 0)}
    dispute(client, keys.a, gid)
    with svc.sessions() as s:
        assert [g.id for g in queue.queue_page(s, "disputed", queue.QueueFilters(), 50, 0)] == [gid]
        assert gid not in {g.id for g in queue.queue_page(s, "review", queue.QueueFilters(), 50, 0)}
        assert queue.queue_counts(s, queue.QueueFilters())["disputed"] == 1
        events.confirm(s, s.get(Grading, gid), "someone", "", None)
        assert queue.queue_counts(s, queue.QueueFilters())["disputed"] == 0


# One upload check (service.check_photo) serves gradings and disputes: both refuse the same files alike.
SAME_UPLOADS = [
    ("text", "a.txt", b"hello", "text/plain", 415, "unsupported_media_type"),
    ("pdf", "a.pdf", b"%PDF-1.4", "application/pdf", 415, "unsupported_media_type"),
    ("empty", "a.jpg", b"", "image/jpeg", 422, "empty_file"),
    ("empty octet-stream", "a.bin", b"", "application/octet-stream", 422, "empty_file"),
    ("not an image", "a.jpg", b"not a jpeg at all" * 10, "image/jpeg", 422, "not_an_image"),
    ("photo, type in capitals with a parameter", "A.JPG", None, "IMAGE/JPEG; q=1", 201, None),
]


@pytest.mark.parametrize(
    "name, data, ctype, status, code", [c[1:] for c in SAME_UPLOADS], ids=[c[0] for c in SAME_UPLOADS]
)
def test_gradings_and_disputes_refuse_the_same_uploads(
    client, keys, gid, jpeg, name, data, ctype, status, code
):
    photo = (name, jpeg if data is None else data, ctype)
    graded = post_grading(client, keys.a, [photo])
    disputed = dispute(client, keys.a, gid, photos=[photo])
    assert (graded.status_code, disputed.status_code) == (status, status), (graded.text, disputed.text)
    if code is not None:
        assert graded.json()["code"] == disputed.json()["code"] == code


def test_the_upload_check_limits_size_and_type():
    from serving.errors import ApiError
    from serving.service import Upload, check_photo

    check_photo(0, Upload(b"x" * 10, "a.jpg", "image/jpeg"), max_bytes=10)  # at the limit: taken
    check_photo(0, Upload(b"x", None, None), max_bytes=10)  # no type given: the decoder decides
    for upload, status, code in [
        (Upload(b"x" * 11, "a.jpg", "image/jpeg"), 413, "file_too_large"),
        (Upload(b"", "a.jpg", "image/jpeg"), 422, "empty_file"),
        (Upload(b"x", "a.gif", "image/gif"), 415, "unsupported_media_type"),
    ]:
        with pytest.raises(ApiError) as err:
            check_photo(3, upload, max_bytes=10)
        assert (err.value.status, err.value.code) == (status, code)
        assert err.value.message.startswith("photo 4: ")  # index 3: the fourth photo
