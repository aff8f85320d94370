"""The queue as CSV (the page's filters, a link on the page) and the model-vs-reviewers page: per standard
the confusion table of model grade and grade after review, the share kept, per reviewer; defects and
photos numbered from 1 in the history."""

from __future__ import annotations

import csv
import io

import pytest

from tests.serving.conftest import post_grading
from tests.serving.test_review_pages import form_tokens, sign_in


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # TestClient speaks plain http


@pytest.fixture
def world(client, keys, jpeg, clean_jpeg):
    ids = []
    for k, (photo, tenant_key) in enumerate([(jpeg, keys.a), (clean_jpeg, keys.a), (jpeg, keys.b)]):
        r = post_grading(
            client,
            tenant_key,
            [("front.jpg", photo, "image/jpeg")],
            data={"device_model": "iPhone 13", "external_ref": f"=SKU-{k}"},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json())
    assert sign_in(client, keys.auditor).status_code == 303
    return client, ids


def _overrule(client, g: dict, standard: str) -> str:
    now = g["grades"][standard]["grade"]
    new = next(x for x in g["grades"][standard]["probabilities"] if x != now)
    tok = form_tokens(client.get(f"/review/gradings/{g['id']}").text)
    r = client.post(
        f"/review/gradings/{g['id']}/overrule",
        data={**tok, "standard": standard, "grade": new, "reason": "visible at an angle"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return new


def _confirm(client, g: dict) -> None:
    tok = form_tokens(client.get(f"/review/gradings/{g['id']}").text)
    r = client.post(f"/review/gradings/{g['id']}/confirm", data=tok, follow_redirects=False)
    assert r.status_code == 303


def test_the_queue_downloads_as_csv_with_the_pages_filters(world):
    client, gs = world
    page = client.get("/review/queue?view=recent&tenant=acme").text
    assert 'href="/review/queue.csv?view=recent&amp;tenant=acme" download' in page
    new = _overrule(client, gs[0], "ctia")
    r = client.get("/review/queue.csv?view=recent&tenant=acme")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and r.headers["x-rows"] == "2"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["grading_id"] for x in rows] == [gs[1]["id"], gs[0]["id"]]  # newest first, as the tab
    assert {x["tenant"] for x in rows} == {"acme"}
    first = rows[1]
    assert first["ctia_model"] == gs[0]["grades"]["ctia"]["grade"] and first["ctia_now"] == new
    assert first["status"] == "overruled" and first["external_ref"] == "'=SKU-0"  # no formula
    assert first["url"] == f"/review/gradings/{gs[0]['id']}" and first["graded_at_utc"].endswith("Z")
    review = list(csv.DictReader(io.StringIO(client.get("/review/queue.csv?view=review").text)))
    assert gs[0]["id"] not in {x["grading_id"] for x in review}  # decided: out of the review queue


def test_the_csv_and_the_stats_need_a_reviewer(client, keys):
    for url in ("/review/queue.csv", "/review/stats"):
        r = client.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/review/signin")


def test_stats_show_how_often_reviewers_keep_the_models_grade(world):
    client, gs = world
    empty = client.get("/review/stats")
    assert empty.status_code == 200 and "No reviewed gradings" in empty.text
    new = _overrule(client, gs[0], "ctia")
    _confirm(client, gs[1])
    page = client.get("/review/stats")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "Read from 2 reviewed gradings" in html
    ctia = gs[0]["grades"]["ctia"]["grade"]
    # ctia: one kept (the confirmed grading), one overruled
    assert "ctia: 50% kept" in html and "(1 of 2)" in html
    assert f"Model's <strong>{ctia}</strong> overruled to {new} (1)" in html
    assert "backmarket: 100% kept" in html and "r2: 100% kept" in html
    assert "Per reviewer" in html
    from tests.serving.test_review_pages import events_of

    assert events_of(client, gs[0]["id"])[-1].kind == "grade_overruled"
    filtered = client.get("/review/stats?standard=ctia&tenant=acme").text
    assert "ctia: 50% kept" in filtered and "backmarket:" not in filtered
    assert "No reviewed gradings" in client.get("/review/stats?tenant=bolt").text


def test_the_history_numbers_defects_and_photos_from_1(world):
    client, gs = world
    g = gs[0]
    html = client.get(f"/review/gradings/{g['id']}").text
    defect_id = next(
        line.split("/defects/")[1].split("/")[0] for line in html.splitlines() if "/reject" in line
    )
    tok = form_tokens(html)
    r = client.post(
        f"/review/gradings/{g['id']}/defects/{defect_id}/reject", data=tok, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].endswith("msg=defect_rejected#photo-0")
    html = client.get(r.headers["location"]).text
    assert "Defect 1 on photo 1 marked false" in html and defect_id + " marked" not in html
    tok = form_tokens(html)
    r = client.post(
        f"/review/gradings/{g['id']}/defects",
        data={**tok, "photo": 0, "type": "dent", "zone": "screen", "x0": 1, "y0": 1, "x1": 40, "y1": 40},
        follow_redirects=False,
    )
    assert r.headers["location"].endswith("msg=defect_added#photo-0")
    html = client.get(r.headers["location"]).text
    n = len(g["photos"][0]["defects"]) + 1  # drawn defects come last: the model's keep their numbers
    assert f"Missed defect added: Defect {n} on photo 1" in html
    assert "Defect 1 on photo 1 marked false" in html
    bad = client.post(
        f"/review/gradings/{g['id']}/defects",
        data={**form_tokens(html), "photo": 4, "type": "dent", "x0": 1, "y0": 1, "x1": 9, "y1": 9},
    )
    assert bad.status_code == 422 and "no photo 5" in bad.text
