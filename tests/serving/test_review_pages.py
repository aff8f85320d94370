"""Review pages over HTTP (TestClient): sign-in and cookies, CSRF on every form, the queue with counts,
filters and pages, a grading's page, and every review action as an append-only event."""

from __future__ import annotations

import io
import itertools
import math
import re

import pytest
from PIL import Image

from serving.db import Grading, GradingEvent
from tests.serving.conftest import pg_and_sqlite, post_grading, store_defects

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
VERSION = re.compile(r'name="version" value="(\d+)"')


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # TestClient speaks plain http


def sign_in(client, token: str, next_url: str = "/review/queue"):
    form = client.get("/review/signin", params={"next": next_url})
    assert form.status_code == 200
    csrf = CSRF.search(form.text).group(1)
    return client.post(
        "/review/signin", data={"api_key": token, "csrf": csrf, "next": next_url}, follow_redirects=False
    )


def form_tokens(html: str) -> dict[str, str]:
    return {"csrf": CSRF.search(html).group(1), "version": VERSION.search(html).group(1)}


def events_of(client, gid: str) -> list[GradingEvent]:
    with client.app.state.svc.sessions() as s:
        return list(s.query(GradingEvent).filter_by(grading_id=gid).order_by(GradingEvent.id))


@pytest.fixture
def graded(client, keys, jpeg):
    return post_grading(
        client,
        keys.a,
        [("front.jpg", jpeg, "image/jpeg")],
        data={"device_model": "iPhone 13", "external_ref": "SKU-1"},
    ).json()


@pytest.fixture
def auditor(client, keys):
    r = sign_in(client, keys.auditor)
    assert r.status_code == 303 and r.headers["location"] == "/review/queue"
    return client


def test_pages_need_a_session_and_sign_in_sets_a_strict_httponly_cookie(client, keys):
    r = client.get("/review/queue?view=disputed", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/signin?next=")
    r = sign_in(client, keys.auditor, "/review/queue?view=disputed")
    assert r.status_code == 303 and r.headers["location"] == "/review/queue?view=disputed"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("rg_review="))
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/review" in low and "secure" not in low
    page = client.get("/review/queue")
    assert page.status_code == 200 and "Review queue" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    # only the token's hash is stored
    token = client.cookies.get("rg_review")
    from serving.db import ReviewSession

    with client.app.state.svc.sessions() as s:
        hashes = [r.id_hash for r in s.query(ReviewSession)]
    assert token and token not in hashes and len(hashes) == 1


def test_cookie_is_secure_by_default(tmp_path, model_path, model_dir, keys):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.auth import create_key
    from serving.settings import Settings

    s = Settings(model_path=model_path, models_dir=model_dir, data_dir=tmp_path / "d2", intra_op_threads=1)
    with TestClient(create_app(s), base_url="https://testserver") as c:
        with c.app.state.svc.sessions() as db:
            token = create_key(db, "auditor")[1]
        r = sign_in(c, token)
        cookie = next(x for x in r.headers.get_list("set-cookie") if x.startswith("rg_review="))
        assert "secure" in cookie.lower()


def test_refurbisher_and_unknown_keys_are_refused(client, keys):
    r = sign_in(client, keys.a)
    assert r.status_code == 403 and "belongs to a refurbisher" in r.text
    assert "rg_review=" not in "".join(r.headers.get_list("set-cookie"))
    assert sign_in(client, "rg_nope_nope").status_code == 401
    assert client.get("/review/queue", follow_redirects=False).status_code == 303
    # a refurbisher's bearer key does not open the pages either
    r = client.get("/review/queue", headers={"Authorization": f"Bearer {keys.a}"}, follow_redirects=False)
    assert r.status_code == 303


def test_signin_form_needs_its_csrf_token_and_next_stays_on_site(client, keys):
    client.get("/review/signin")
    r = client.post(
        "/review/signin", data={"api_key": keys.auditor, "csrf": "forged"}, follow_redirects=False
    )
    assert r.status_code == 403 and "rg_review=" not in "".join(r.headers.get_list("set-cookie"))
    for evil in ("//evil.example/x", "https://evil.example/", "/review\\..\\x"):
        client.cookies.clear()
        assert sign_in(client, keys.auditor, evil).headers["location"] == "/review/queue"


def test_sign_out_ends_the_session_server_side(auditor, keys):
    token = auditor.cookies.get("rg_review")
    page = auditor.get("/review/queue")
    r = auditor.post("/review/signout", data={"csrf": "wrong"}, follow_redirects=False)
    assert r.status_code == 403
    r = auditor.post(
        "/review/signout", data={"csrf": CSRF.search(page.text).group(1)}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/review/signin?msg=signed_out"
    auditor.cookies.set("rg_review", token, path="/review")  # a copied cookie is dead too
    assert auditor.get("/review/queue", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(auditor, keys):
    from datetime import UTC, datetime

    from serving.auth import hash_token
    from serving.db import ApiKey

    with auditor.app.state.svc.sessions() as s:
        s.query(ApiKey).filter_by(secret_hash=hash_token(keys.auditor)).one().revoked_at = datetime.now(UTC)
        s.commit()
    assert auditor.get("/review/queue", follow_redirects=False).status_code == 303


def test_every_form_refuses_a_missing_or_foreign_csrf_token(auditor, graded, keys):
    gid = graded["id"]
    html = auditor.get(f"/review/gradings/{gid}").text
    version = VERSION.search(html).group(1)
    other = auditor.__class__(auditor.app)  # a second browser, signed in as the admin
    sign_in(other, keys.admin)
    other_csrf = CSRF.search(other.get("/review/queue").text).group(1)
    forms = [
        (f"/review/gradings/{gid}/confirm", {}),
        (f"/review/gradings/{gid}/overrule", {"standard": "ctia", "grade": "E", "reason": "x"}),
        (f"/review/gradings/{gid}/defects/p0-d0/reject", {}),
        (f"/review/gradings/{gid}/defects/p0-d0/retype", {"type": "crack"}),
        (
            f"/review/gradings/{gid}/defects",
            {"photo": 0, "type": "dent", "x0": 1, "y0": 1, "x1": 50, "y1": 50},
        ),
    ]
    for url, data in forms:
        for csrf in (None, "forged", other_csrf):
            payload = {**data, "version": version} | ({"csrf": csrf} if csrf else {})
            r = auditor.post(url, data=payload, follow_redirects=False)
            assert r.status_code == 403, (url, csrf, r.status_code)
    assert [e.kind for e in events_of(auditor, gid)] == ["graded"]


ACTIONS = [
    ("confirm", {}),
    ("overrule", {"standard": "ctia", "grade": "E", "reason": "x"}),
    ("defects/p0-d0/reject", {}),
    ("defects/p0-d0/retype", {"type": "crack"}),
    ("defects", {"photo": 0, "type": "dent", "x0": 1, "y0": 1, "x1": 50, "y1": 50}),
]


def test_every_action_shares_session_grading_and_version_checks(client, keys, graded):
    """The parameters all five actions share (one dependency): the session is checked first, then the
    form's version, then the grading; none of these refusals appends an event."""
    gid = graded["id"]
    for action, data in ACTIONS:
        r = client.post(f"/review/gradings/{gid}/{action}", data=data, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/review/signin?next="), action
    sign_in(client, keys.auditor)
    tokens = form_tokens(client.get(f"/review/gradings/{gid}").text)
    for action, data in ACTIONS:
        r = client.post(f"/review/gradings/{gid}/{action}", data={**data, **tokens, "version": "-1"})
        assert r.status_code == 422 and r.json()["code"] == "invalid_request", action
        r = client.post(f"/review/gradings/{'0' * 36}/{action}", data={**data, **tokens})
        assert r.status_code == 404 and "Grading not found" in r.text, action
    assert [e.kind for e in events_of(client, gid)] == ["graded"]


def test_grading_page_shows_photos_defects_grades_versions_and_history(auditor, graded):
    gid = graded["id"]
    r = auditor.get(f"/review/gradings/{gid}")
    assert r.status_code == 200
    html = r.text
    assert "iPhone 13" in html and "SKU-1" in html and graded["model"]["version"] in html
    for name, version in graded["rules_versions"].items():
        assert name in html and version in html
    defects = graded["photos"][0]["defects"]
    assert defects, "the tiny model should find the red scratch"
    assert html.count('class="defect t-') == len(defects)
    assert f"{defects[0]['confidence']:.2f}" in html and "mm ×" in html
    assert 'class="overlay-toggle"' in html and "Graded by model" in html
    assert "right on validation devices" not in html  # the tiny model's card has no grade calibration
    photo = auditor.get(f"/review/gradings/{gid}/photos/0")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert auditor.get(f"/review/gradings/{gid}/photos/5").status_code == 404
    missing = auditor.get(f"/review/gradings/{'0' * 36}")
    assert missing.status_code == 404 and "Grading not found" in missing.text


@pg_and_sqlite
def test_overrule_needs_a_reason_and_is_an_event_with_before_and_after(auditor, graded, keys):
    gid = graded["id"]
    ctia = graded["grades"]["ctia"]["grade"]
    new = next(g for g in graded["grades"]["ctia"]["probabilities"] if g != ctia)
    tok = form_tokens(auditor.get(f"/review/gradings/{gid}").text)
    r = auditor.post(
        f"/review/gradings/{gid}/overrule", data={**tok, "standard": "ctia", "grade": new, "reason": "  "}
    )
    assert r.status_code == 422 and "needs a reason" in r.text
    r = auditor.post(
        f"/review/gradings/{gid}/overrule", data={**tok, "standard": "ctia", "grade": ctia, "reason": "same"}
    )
    assert r.status_code == 422 and "differs" in r.text
    r = auditor.post(
        f"/review/gradings/{gid}/overrule",
        data={**tok, "standard": "ctia", "grade": "Z", "reason": "bad grade"},
    )
    assert r.status_code == 422
    assert [e.kind for e in events_of(auditor, gid)] == ["graded"]
    r = auditor.post(
        f"/review/gradings/{gid}/overrule",
        data={**tok, "standard": "ctia", "grade": new, "reason": "hairline crack under the glare"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("msg=overruled#history")
    ev = events_of(auditor, gid)[-1]
    assert ev.kind == "grade_overruled" and ev.payload["before"] == {"ctia": ctia}
    assert ev.payload["after"] == {"ctia": new} and ev.payload["reason"] == "hairline crack under the glare"
    assert ev.actor and ev.created_at is not None
    page = auditor.get(r.headers["location"]).text
    assert (
        "Grade overruled" in page
        and "hairline crack under the glare" in page
        and "Overruled · model said" in page
    )
    # the stored grading is untouched: current state = original + events
    with auditor.app.state.svc.sessions() as s:
        row = s.get(Grading, gid)
        assert row.body["grades"]["ctia"]["grade"] == ctia and {
            g.grade for g in row.grades if g.standard == "ctia"
        } == {ctia}
    # a stale form (version before the overrule) is refused, nothing appended
    r = auditor.post(f"/review/gradings/{gid}/confirm", data=tok, follow_redirects=False)
    assert r.status_code == 303 and "msg=conflict" in r.headers["location"]
    assert "Someone else changed this grading" in auditor.get(r.headers["location"]).text
    assert len(events_of(auditor, gid)) == 2


def test_confirm_and_defect_corrections_fold_into_the_current_state(auditor, graded):
    from serving.review.events import load_state

    gid = graded["id"]

    def post(url, **data):
        tok = form_tokens(auditor.get(f"/review/gradings/{gid}").text)
        return auditor.post(url, data={**tok, **data}, follow_redirects=False)

    n = len(graded["photos"][0]["defects"])
    assert post(f"/review/gradings/{gid}/defects/p0-d0/retype", type="crack").status_code == 303
    assert post(f"/review/gradings/{gid}/defects/p0-d0/retype", type="crack").status_code == 422  # no-op
    assert post(f"/review/gradings/{gid}/defects/p0-d9/reject").status_code == 422
    assert (
        post(
            f"/review/gradings/{gid}/defects", photo=0, type="dent", zone="screen", x0=10, y0=10, x1=11, y1=90
        ).status_code
        == 422
    )
    r = post(
        f"/review/gradings/{gid}/defects", photo=0, type="dent", zone="screen", x0=300, y0=120, x1=260, y1=200
    )
    assert r.status_code == 303
    if n > 1:
        assert post(f"/review/gradings/{gid}/defects/p0-d1/reject", reason="reflection").status_code == 303
    assert post(f"/review/gradings/{gid}/confirm", note="looks right now").status_code == 303
    kinds = [e.kind for e in events_of(auditor, gid)]
    assert kinds[:3] == ["graded", "defect_retyped", "defect_added"] and kinds[-1] == "review_confirmed"
    with auditor.app.state.svc.sessions() as s:
        st = load_state(s, s.get(Grading, gid))
    assert st.status == "confirmed" and not any(g.overruled for g in st.grades.values())
    d0 = st.find_defect("p0-d0")
    assert d0.type == "crack" and d0.original_type == "scratch"
    added = [d for d in st.defects[0] if d.origin == "reviewer"]
    assert len(added) == 1 and added[0].box == (260.0, 120.0, 300.0, 200.0) and added[0].zone == "screen"
    added_event = events_of(auditor, gid)[2]
    assert added_event.payload["before"] is None and added_event.payload["after"]["type"] == "dent"
    html = auditor.get(f"/review/gradings/{gid}").text
    assert (
        "(model: scratch)" in html
        and "Added" in html
        and "Grades confirmed" in html
        and "looks right now" in html
    )


@pg_and_sqlite
def test_queue_tabs_counts_filters_and_pages(auditor, client, keys, jpeg, clean_jpeg, monkeypatch):
    from serving.review import pages

    ids = [
        post_grading(client, k, [("p.jpg", photo, "image/jpeg")]).json()["id"]
        for k, photo in [(keys.a, jpeg), (keys.a, clean_jpeg), (keys.b, jpeg)]
    ]
    assert post_grading(client, keys.a, [("p.jpg", jpeg, "image/jpeg")]).status_code == 201
    with client.app.state.svc.sessions() as s:
        needs = {g.id for g in s.query(Grading).filter_by(needs_review=True)}
        total = s.query(Grading).count()
    r = client.post(f"/v1/gradings/{ids[0]}/disputes", data={"reason": "it is mint"}, headers=keys.h(keys.a))
    assert r.status_code == 201
    html = auditor.get("/review/queue?view=recent").text
    counts = dict(re.findall(r'class="tab"[^>]*>([A-Za-z ]+?) <span class="count">(\d+)</span>', html))
    assert counts == {
        "Needs review": str(len(needs - {ids[0]})),
        "Disputed": "1",
        "Recent": str(total),
    }
    disputed = auditor.get("/review/queue?view=disputed").text
    assert ids[0] in disputed and ids[1] not in disputed and "1 open dispute" in disputed
    bolt = auditor.get("/review/queue?view=recent&tenant=bolt").text
    assert ids[2] in bolt and ids[0] not in bolt and "(filtered)" in bolt
    assert ids[0] not in auditor.get("/review/queue?view=recent&date_to=2000-01-01").text
    assert ids[0] in auditor.get("/review/queue?view=recent&date_from=2000-01-01&model_version=tiny-1").text
    assert ids[0] not in auditor.get("/review/queue?view=recent&model_version=other").text
    grade = next(iter(client.get(f"/v1/gradings/{ids[1]}", headers=keys.h(keys.a)).json()["grades"].values()))
    graded_like = auditor.get(
        f"/review/queue?view=recent&standard={grade['standard']}&grade={grade['grade']}"
    ).text
    assert ids[1] in graded_like
    # nonsense filters are ignored, not errors
    assert auditor.get("/review/queue?view=nope&date_from=garbage&page=x").status_code == 200
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    p1 = auditor.get("/review/queue?view=recent").text
    assert f"Showing 1–2 of {total}" in p1 and "Page 1 of 2" in p1 and 'rel="next"' in p1
    p2 = auditor.get("/review/queue?view=recent&page=2").text
    assert f"Showing 3–{total} of {total}" in p2 and 'rel="prev"' in p2
    newest_first = re.findall(r"/review/gradings/([0-9a-f-]{36})", p1 + p2)
    assert len(set(newest_first)) == total


def test_dispute_photos_and_static_files(auditor, client, graded, keys, clean_jpeg):
    gid = graded["id"]
    r = client.post(
        f"/v1/gradings/{gid}/disputes",
        data={"reason": "see the close-up"},
        files=[("photos", ("close.jpg", clean_jpeg, "image/jpeg"))],
        headers=keys.h(keys.a),
    )
    event_id = r.json()["id"]
    html = auditor.get(f"/review/gradings/{gid}").text
    url = f"/review/gradings/{gid}/disputes/{event_id}/photos/0"
    assert url in html and "see the close-up" in html
    assert auditor.get(url).content == clean_jpeg
    assert auditor.get(f"/review/gradings/{gid}/disputes/{event_id}/photos/1").status_code == 404
    assert auditor.get(f"/review/gradings/{'0' * 36}/disputes/{event_id}/photos/0").status_code == 404
    for name, ctype in [
        ("review.css", "text/css"),
        ("review.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ]:
        r = auditor.get(f"/review/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)
    assert auditor.get("/review/static/..%2Fapp.py").status_code == 404
    assert auditor.get("/review/static/review.html").status_code == 404
    # the photo routes need a session too
    client.cookies.clear()
    assert client.get(url, follow_redirects=False).status_code == 303
    assert client.get(f"/review/gradings/{gid}/photos/0", follow_redirects=False).status_code == 303


def test_user_text_is_escaped_and_next_in_queue_walks_the_oldest_first(auditor, client, keys, jpeg, graded):
    gid = graded["id"]
    later = post_grading(client, keys.b, [("p.jpg", jpeg, "image/jpeg")]).json()["id"]
    for g, token in ((later, keys.b), (gid, keys.a)):
        r = client.post(
            f"/v1/gradings/{g}/disputes",
            data={"reason": "<script>alert(1)</script> & <b>bold</b>"},
            headers=keys.h(token),
        )
        assert r.status_code == 201
    html = auditor.get(f"/review/gradings/{gid}").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in html
    assert 'href="/review/next?view=disputed"' in auditor.get("/review/queue?view=disputed").text
    r = auditor.get("/review/next?view=disputed", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith(
        f"/review/gradings/{gid}?back="
    )  # oldest
    tok = form_tokens(auditor.get(f"/review/gradings/{gid}").text)
    r = auditor.post(f"/review/gradings/{gid}/confirm", data=tok)
    assert "Next disputed" in r.text  # after a verdict, the way on
    r = auditor.get("/review/next?view=disputed", follow_redirects=False)
    assert r.headers["location"].startswith(f"/review/gradings/{later}?")
    tok = form_tokens(auditor.get(f"/review/gradings/{later}").text)
    auditor.post(f"/review/gradings/{later}/confirm", data=tok)
    r = auditor.get("/review/next?view=disputed", follow_redirects=False)
    assert r.headers["location"] == "/review/queue?view=disputed"


def test_photos_browsers_cannot_show_are_served_as_jpeg_renditions(auditor, client, keys):
    import io

    from PIL import Image

    from tests.serving.conftest import encode
    from tests.serving.tiny_model import device_photo

    tiff = encode(device_photo(), "TIFF")
    gid = post_grading(client, keys.a, [("scan.tif", tiff, "image/tiff")]).json()["id"]
    r = auditor.get(f"/review/gradings/{gid}/photos/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (800, 600)  # the size the outlines are drawn in


def test_calibrated_gradings_say_so_and_the_queue_shows_the_given_grades_probability(
    tmp_path, settings, clean_jpeg
):
    """Back Market's best grade calibrated to be right 30% of the time (else the next grade, 70%): a
    clean device is still graded Premium, and the queue's certainty is that 30%, not the 70%."""
    from fastapi.testclient import TestClient

    from model.rules import load_standard
    from serving.app import create_app
    from serving.auth import create_key
    from tests.serving.tiny_model import build_tiny_model, calibrated_card

    path = tmp_path / "calibrated.onnx"
    card = calibrated_card("backmarket", load_standard("backmarket").grade_names, first_right=0.3)
    build_tiny_model(path, card)
    with TestClient(create_app(settings.model_copy(update={"model_path": path}))) as client:
        with client.app.state.svc.sessions() as s:
            refurbisher, auditor = create_key(s, "refurbisher", "acme")[1], create_key(s, "auditor")[1]
        body = post_grading(client, refurbisher, [("front.jpg", clean_jpeg, "image/jpeg")]).json()
        bm = body["grades"]["backmarket"]
        assert bm["grade"] == "Premium" and bm["probabilities"]["Premium"] == 0.3 and bm["needs_review"]
        assert "calibrated on 50" in bm["method"]
        assert sign_in(client, auditor).status_code == 303
        html = client.get(f"/review/gradings/{body['id']}").text
        assert (
            html.count("(how often such a grading was right on validation devices)") == 1
        )  # backmarket only
        queue = client.get("/review/queue").text
        assert '<span class="low">30%</span>' in queue and "70%" not in queue


def test_markers_of_defects_piled_on_one_spot_do_not_overlap():
    """Numbered markers sat on each box's top-left corner: on an MSD screen, two candidates' numbers
    covered each other. Now each takes the first free spot near its box, inside the photo, in page
    order (the counted first, so showing the candidates moves none of theirs)."""
    from serving.review.pages import marker_spots

    r = 10.0
    boxes = [(100.0, 100.0, 104.0, 140.0)] * 6 + [(0.0, 0.0, 30.0, 5.0), (300.0, 50.0, 400.0, 60.0)]
    spots = marker_spots(boxes, r, 640, 480)
    assert all(math.dist(a, b) >= 2 * r for a, b in itertools.combinations(spots, 2))
    assert all(r <= x <= 640 - r and r <= y <= 480 - r for x, y in spots)
    assert spots[0] == (100.0, 100.0) and spots[-1] == (300.0, 50.0)  # where there is room: its corner
    assert all(math.dist(s, (100.0, 100.0)) <= 6 * r + 1e-6 for s in spots[:6])  # near its box
    assert marker_spots(boxes[:2], r, 640, 480) == spots[:2]  # later markers move no earlier one


def test_a_glass_outlined_whole_is_marked_big_and_its_dashed_box_hidden(auditor, graded, jpeg):
    """A crack outlined as the whole screen (a glass judged cracked as a whole) is its own mark on the
    page, as on the overlay: its dashed box would frame the table round a tilted phone, and its
    number sits on the outline. A small defect keeps its box."""
    gid = graded["id"]
    w, h = Image.open(io.BytesIO(jpeg)).size
    glass = [[0.3 * w, 0.1 * h], [0.9 * w, 0.3 * h], [0.7 * w, 0.9 * h], [0.1 * w, 0.7 * h]]
    small = [[10, 10], [40, 10], [40, 14], [10, 14]]
    base = {"zone": "screen", "role": "defect", "units": "relative", "length": 0.1, "width": 0.0}
    stored = store_defects(
        auditor,
        gid,
        [
            base
            | {
                "type": "crack",
                "confidence": 0.99,
                "polygon": glass,
                "box": [0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h],
            },
            base | {"type": "scratch", "confidence": 0.9, "polygon": small, "box": [10, 10, 40, 14]},
        ],
    )
    assert (stored["width"], stored["height"]) == (w, h)
    html = auditor.get(f"/review/gradings/{gid}").text
    marks = re.findall(r'<g class="defect ([^"]*)" id="mark-(p0-d\d)">', html)
    classes = {mark: cls.split() for cls, mark in marks}
    assert "big" in classes["p0-d0"] and "big" not in classes["p0-d1"]
    # Its marker sits on the outline (the vertex nearest its box's top-left corner), not off the device.
    cx, cy = (
        float(v)
        for v in re.search(r'id="mark-p0-d0">.*?<circle cx="([\d.]+)" cy="([\d.]+)"', html, re.S).groups()
    )
    assert (cx, cy) == pytest.approx((0.3 * w, 0.1 * h))
    css = auditor.get("/review/static/review.css").text
    assert ".defect.big .box { display: none; }" in css
