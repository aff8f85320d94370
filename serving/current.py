"""The grade that stands: what GET /v1/gradings/{id} answers once a reviewer has confirmed or overruled.

The stored body is never rewritten (review is a log of events). On reading, `standing` puts the grade
that now stands at the top level: `grades[standard].grade` and `.listable` are the reviewer's where a
reviewer overruled that standard (`source: "review"`), the model's otherwise. Beside them, `original`
holds the model's grades exactly as first answered, and `review` the review state. A client that reads
`grades[...].grade` therefore always gets the grade to list the device under.
"""

from __future__ import annotations

import copy
from functools import cache

from pydantic import Field

from serving.review.schemas import GradingReviewedOut, ReviewOut
from serving.schemas import StandardGradeOut


class GradingCurrentOut(GradingReviewedOut):
    original: dict[str, StandardGradeOut] | None = Field(
        default=None,
        description="the grades as the model first answered them, before any review; `grades` holds the "
        "grade that stands now",
    )


@cache
def _listable(standard: str, grade: str) -> bool | None:
    from model.rules import StandardError, load_standard

    try:
        std = load_standard(standard)
    except StandardError:
        return None
    return next((g.listable for g in std.grades if g.name == grade), None)


def standing(body: dict, review: ReviewOut | None) -> dict:
    """`body` (a stored grading) with the grades that stand now, `original` and `review` beside them."""
    original = copy.deepcopy(body["grades"])
    grades = {}
    for name, g in body["grades"].items():
        now = review.grades.get(name, g["grade"]) if review is not None else g["grade"]
        if now != g["grade"]:
            listable = _listable(name, now)
            g = {**g, "grade": now, "listable": g["listable"] if listable is None else listable}
            g["source"] = "review"
        grades[name] = g
    out = {**body, "grades": grades, "original": original, "review": review}
    if body.get("impact"):  # issue 22: whether the device counts as a listing follows the grade that stands
        from serving.impact import standing_impact

        out["impact"] = standing_impact(body["impact"], {n: g["grade"] for n, g in grades.items()})
    return out
