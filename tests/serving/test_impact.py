"""Impact of gradings (issue 22): every grading answers its impact with method version and source;
GET /v1/impact sums it per tenant by the grade that stands (JSON and CSV), never across tenants; bad
periods are 422 invalid_period, never 500; the review page shows the impact."""

from __future__ import annotations

import csv
import io

import pytest

from model.impact import method_version
from serving.db import Grading
from tests.serving.conftest import post_grading
from tests.serving.test_review_pages import form_tokens, sign_in


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # TestClient speaks plain http


def grade(client, token, jpeg, **data):
    r = post_grading(client, token, [("front.jpg", jpeg, "image/jpeg")], data=data)
    assert r.status_code == 201, r.text
    return r.json()


def set_grades(client, gid: str, grades: dict[str, str]) -> None:
    """Make a stored grading's model grades these (as if the model had said so, in its body and its
    indexed grade rows): the tiny test model's grades are whatever it happens to say."""
    import copy

    from serving.db import GradingGrade

    with client.app.state.svc.sessions() as s:
        for row in s.query(GradingGrade).filter_by(grading_id=gid):
            row.grade = grades[row.standard]
        g = s.get(Grading, gid)
        body = copy.deepcopy(g.body)
        for name, grade_name in grades.items():
            body["grades"][name]["grade"] = grade_name
        g.body = body
        s.commit()


def test_every_grading_answers_its_impact_with_method_version_and_source(client, keys, jpeg):
    body = grade(client, keys.a, jpeg, device_model="iPhone 13")
    imp = body["impact"]
    assert imp["method_version"] == method_version()
    assert imp["basis"] == "iPhone 13" and imp["estimated"] is False
    assert "Product Environmental Report: iPhone 13" in imp["source"]
    assert imp["if_listed_kg_co2e"] == 44.6 and imp["if_listed_ewaste_kg"] == 0.174
    listable = all(g["listable"] for g in body["grades"].values())
    assert imp["listed"] is listable
    assert imp["avoided_kg_co2e"] == (44.6 if listable else 0.0)
    # GET answers the same, and the figures are stored for the summary
    assert client.get(f"/v1/gradings/{body['id']}", headers=keys.h(keys.a)).json()["impact"] == imp
    with client.app.state.svc.sessions() as s:
        row = s.get(Grading, body["id"])
        assert (row.impact_method, row.impact_kg_co2e, row.impact_mass_kg, row.impact_estimated) == (
            method_version(),
            44.6,
            0.174,
            False,
        )

    unknown = grade(client, keys.a, jpeg, device_kind="tablet")["impact"]
    assert unknown["estimated"] is True and unknown["basis"] == "average tablet"
    assert unknown["if_listed_kg_co2e"] == 42.0 and "estimated" in unknown["source"]


def test_summary_sums_listed_gradings_per_tenant_and_never_shows_another_tenants(client, keys, jpeg):
    a1 = grade(client, keys.a, jpeg, device_model="iPhone 13")["id"]
    a2 = grade(client, keys.a, jpeg, device_model="iPhone 12")["id"]
    a3 = grade(client, keys.a, jpeg, device_model="iPhone 11")["id"]
    b1 = grade(client, keys.b, jpeg, device_model="MacBook Air M1")["id"]
    listable = {"backmarket": "Good", "ctia": "B", "r2": "C4"}
    set_grades(client, a1, listable)
    set_grades(client, a2, listable)
    set_grades(client, a3, {**listable, "backmarket": "Unlistable"})  # avoids nothing as a listing
    set_grades(client, b1, listable)

    a = client.get("/v1/impact", headers=keys.h(keys.a))
    assert a.status_code == 200, a.text
    (acme,) = a.json()["tenants"]
    assert acme["tenant"] == "acme"
    assert (acme["gradings"], acme["listed"], acme["not_listed"], acme["without_impact"]) == (3, 2, 1, 0)
    assert acme["avoided_kg_co2e"] == pytest.approx(44.6 + 50.9)
    assert acme["ewaste_kg"] == pytest.approx(0.174 + 0.162)
    assert acme["estimated"] == 0 and acme["method_versions"] == [method_version()]

    # tenant B sees only its own sum, even when it asks for A's
    for params in ({}, {"tenant": "acme"}):
        b = client.get("/v1/impact", params=params, headers=keys.h(keys.b)).json()["tenants"]
        assert [t["tenant"] for t in b] == ["bolt"]
        assert b[0]["avoided_kg_co2e"] == pytest.approx(158.3) and b[0]["estimated"] == 1
    # a tenant with nothing graded gets its own zero line, not somebody else's
    from serving.auth import create_key

    with client.app.state.svc.sessions() as s:
        empty = create_key(s, "refurbisher", "empty")[1]
    (e,) = client.get("/v1/impact", headers=keys.h(empty)).json()["tenants"]
    assert e == {**e, "tenant": "empty", "gradings": 0, "avoided_kg_co2e": 0.0}

    # auditors see every tenant, or one
    both = client.get("/v1/impact", headers=keys.h(keys.auditor)).json()["tenants"]
    assert [t["tenant"] for t in both] == ["acme", "bolt"]
    only = client.get("/v1/impact", params={"tenant": "bolt"}, headers=keys.h(keys.auditor)).json()
    assert [t["tenant"] for t in only["tenants"]] == ["bolt"]

    # the CSV says the same
    r = client.get("/v1/impact", params={"format": "csv"}, headers=keys.h(keys.a))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1 and rows[0]["tenant"] == "acme"
    assert rows[0]["avoided_kg_co2e"] == "95.5" and rows[0]["listed"] == "2"
    assert rows[0]["method_versions"] == method_version()
    assert "bolt" not in r.text


def test_summary_uses_the_grade_that_stands_after_review(client, keys, jpeg):
    gid = grade(client, keys.a, jpeg, device_model="iPhone 13")["id"]
    set_grades(client, gid, {"backmarket": "Good", "ctia": "B", "r2": "C4"})

    def acme():
        return client.get("/v1/impact", headers=keys.h(keys.a)).json()["tenants"][0]

    assert acme()["avoided_kg_co2e"] == 44.6
    sign_in(client, keys.auditor)
    page = client.get(f"/review/gradings/{gid}")
    r = client.post(
        f"/review/gradings/{gid}/overrule",
        data={
            **form_tokens(page.text),
            "standard": "backmarket",
            "grade": "Unlistable",
            "reason": "cracked back glass",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert (acme()["listed"], acme()["not_listed"], acme()["avoided_kg_co2e"]) == (0, 1, 0.0)
    now = client.get(f"/v1/gradings/{gid}", headers=keys.h(keys.a)).json()[
        "impact"
    ]  # GET: the grade that stands
    assert (now["listed"], now["avoided_kg_co2e"], now["if_listed_kg_co2e"]) == (False, 0.0, 44.6)
    page = client.get(f"/review/gradings/{gid}")
    r = client.post(
        f"/review/gradings/{gid}/overrule",
        data={
            **form_tokens(page.text),
            "standard": "backmarket",
            "grade": "Fair",
            "reason": "the crack was a reflection",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert (acme()["listed"], acme()["avoided_kg_co2e"]) == (1, 44.6)


def test_period_bounds_and_bad_periods(client, keys, jpeg):
    grade(client, keys.a, jpeg, device_model="iPhone 13")
    h = keys.h(keys.a)
    past = client.get("/v1/impact", params={"to": "2020-01-01T00:00:00Z"}, headers=h).json()
    assert past["tenants"][0]["gradings"] == 0
    now = client.get(
        "/v1/impact", params={"from": "2020-01-01", "to": "2999-01-01T00:00:00+02:00"}, headers=h
    )
    assert now.status_code == 200 and now.json()["tenants"][0]["gradings"] == 1
    assert now.json()["from"].startswith("2020-01-01T00:00:00")
    extreme = client.get("/v1/impact", params={"from": "0001-01-01T00:00:00Z"}, headers=h)
    assert extreme.status_code == 200 and extreme.json()["tenants"][0]["gradings"] == 1
    for params in (
        {"from": "0001-01-01T00:00:00+05:00"},
        {"to": "9999-12-31T23:59:59-05:00"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"from": "2026-01-01", "to": "2026-01-01"},
    ):
        r = client.get("/v1/impact", params=params, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "invalid_period", (params, r.text)
    for params in ({"from": "yesterday"}, {"format": "xml"}):
        r = client.get("/v1/impact", params=params, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "invalid_request", params
    assert client.get("/v1/impact").status_code == 401


def test_review_page_shows_the_impact(client, keys, jpeg):
    gid = grade(client, keys.a, jpeg, device_model="iPhone 13")["id"]
    set_grades(client, gid, {"backmarket": "Good", "ctia": "B", "r2": "C4"})
    sign_in(client, keys.auditor)
    html = client.get(f"/review/gradings/{gid}").text
    assert 'id="impact"' in html
    assert "kg CO2e" in html and "avoided" in html
    assert "v" + method_version() in html and "Product Environmental Report: iPhone 13" in html
    unknown = grade(client, keys.a, jpeg, device_kind="laptop")["id"]
    set_grades(client, unknown, {"backmarket": "Unlistable", "ctia": "E", "r2": "C7"})
    html = client.get(f"/review/gradings/{unknown}").text
    assert "avoids nothing as a listing" in html and "estimated" in html
