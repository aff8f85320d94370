"""GET /v1/gradings/{id} answers the grade that stands: a reviewer's overrule at the top level
(`grades[standard].grade`, `.listable`, `source: "review"`), the model's answer under `original`."""

from __future__ import annotations

from serving.db import ApiKey, Grading
from serving.review import events
from serving.schemas import GradingOut
from tests.serving.conftest import Keys, post_grading

H = Keys.h


def test_an_overruled_grade_stands_at_the_top_and_the_models_is_kept(client, keys, clean_jpeg):
    posted = post_grading(client, keys.a, [("a.jpg", clean_jpeg, "image/jpeg")]).json()
    assert {g["source"] for g in posted["grades"].values()} == {"model"}
    before = client.get(f"/v1/gradings/{posted['id']}", headers=H(keys.a)).json()
    assert before["grades"] == before["original"] == posted["grades"]
    assert posted["grades"]["backmarket"]["listable"]

    svc = client.app.state.svc
    with svc.sessions() as s:
        row = s.get(Grading, posted["id"])
        auditor = s.query(ApiKey).filter_by(role="auditor").one().id
        events.overrule(s, row, auditor, {"backmarket": "Unlistable"}, "cracked camera glass", None)
    after = client.get(f"/v1/gradings/{posted['id']}", headers=H(keys.a)).json()
    bm = after["grades"]["backmarket"]
    assert bm["grade"] == "Unlistable" and bm["listable"] is False and bm["source"] == "review"
    # the model's probabilities and reasons stay, and its answer is whole under `original`
    assert bm["probabilities"] == posted["grades"]["backmarket"]["probabilities"]
    assert after["original"] == posted["grades"]
    assert after["grades"]["ctia"] == posted["grades"]["ctia"]
    assert (
        after["review"]["status"] == "overruled" and after["review"]["grades"]["backmarket"] == "Unlistable"
    )
    # the rest of the body is as it was (the impact follows the grade that stands), still a GradingOut
    follows = {"grades", "review", "impact"}
    assert {k: v for k, v in after.items() if k not in follows} == {
        k: v for k, v in before.items() if k not in follows
    }
    GradingOut.model_validate(after)
