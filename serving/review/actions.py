"""The reviewer's actions on a grading: confirm, overrule, and mark false, retype or add a defect.

Each is a POST from the grading's page carrying the session's CSRF token and the id of the last event
the reviewer saw (`version`), so two reviewers cannot silently overwrite each other: the second gets
"changed since you opened it". These shared parameters arrive as one dependency, `ActionDep`. An
action appends one event (events.py) and redirects back to the page (POST/redirect/GET); one that does
not fit the grading shows the page again with the reason (422).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from serving.db import Grading
from serving.deps import AppState, StateDep
from serving.review import events, sessions
from serving.review.html import error_page, see_other
from serving.review.pages import grading_page, load_grading, not_found
from serving.review.sessions import Reviewer
from serving.review.signin import ReviewerDep

router = APIRouter(prefix="/review", include_in_schema=False)

Text = Annotated[str, Form(max_length=2000)]  # a reason or a note
Choice = Annotated[str, Form(max_length=50)]  # a defect type or zone, from the page's menus


@dataclass(frozen=True)
class Action:
    """One review action's request: who acts on which grading, with which form token, having seen
    which last event."""

    request: Request
    state: AppState
    reviewer: Reviewer
    grading_id: str
    csrf: str
    version: int

    @property
    def actor(self) -> str:
        return self.reviewer.principal.key_id

    def run(self, done: str, change: Callable[[Session, Grading], object], anchor: str = "") -> Response:
        """Check the CSRF token, run `change(session, row)` (which appends an event), redirect back to
        what changed (`anchor`: the photo's card; the history for a verdict), the confirmation pinned
        at the top of the window."""
        request, reviewer, grading_id = self.request, self.reviewer, self.grading_id
        if not sessions.csrf_ok(reviewer.csrf, self.csrf):
            message = "This form was sent without a valid security token. Reload the page and try again."
            return error_page(request, reviewer, "The form expired", message, 403)
        with self.state.sessions() as s:
            row = load_grading(s, grading_id)
            if row is None:
                return not_found(request, reviewer, grading_id)
            try:
                change(s, row)
            except events.ReviewConflict:
                return see_other(f"/review/gradings/{grading_id}?msg=conflict#review")
            except events.ReviewInvalid as exc:
                s.rollback()
                return grading_page(request, self.state, reviewer, grading_id, error=str(exc), status=422)
        return see_other(f"/review/gradings/{grading_id}?msg={done}#{anchor or 'history'}")


def action(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    grading_id: str,
    csrf: Annotated[str, Form(max_length=200)] = "",
    version: Annotated[int, Form(ge=0)] = 0,
) -> Action:
    return Action(request, state, reviewer, grading_id, csrf, version)


ActionDep = Annotated[Action, Depends(action)]


def _photo_anchor(defect_id: str) -> str:
    """The card of the photo a defect is on: its id is "p<photo>-d<k>" or "p<photo>-a<hex>"."""
    head = defect_id.split("-", 1)[0]
    return f"photo-{head[1:]}" if head[:1] == "p" and head[1:].isdigit() else "photos"


@router.post("/gradings/{grading_id}/confirm")
def confirm(act: ActionDep, note: Text = "") -> Response:
    return act.run("confirmed", lambda s, row: events.confirm(s, row, act.actor, note, act.version))


@router.post("/gradings/{grading_id}/overrule")
def overrule(
    act: ActionDep,
    standard: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    grade: Annotated[list[str], Form()] = [],  # noqa: B006
    reason: Text = "",
) -> Response:
    def change(s: Session, row: Grading) -> None:
        if len(standard) != len(grade):
            raise events.ReviewInvalid("give one grade per standard")
        events.overrule(s, row, act.actor, dict(zip(standard, grade, strict=True)), reason, act.version)

    return act.run("overruled", change)


@router.post("/gradings/{grading_id}/defects/{defect_id}/reject")
def reject_defect(act: ActionDep, defect_id: str, reason: Text = "") -> Response:
    return act.run(
        "defect_rejected",
        lambda s, row: events.reject_defect(s, row, act.actor, defect_id, reason, act.version),
        _photo_anchor(defect_id),
    )


@router.post("/gradings/{grading_id}/defects/{defect_id}/retype")
def retype_defect(act: ActionDep, defect_id: str, type: Choice = "") -> Response:
    return act.run(
        "defect_retyped",
        lambda s, row: events.retype_defect(s, row, act.actor, defect_id, type, act.version),
        _photo_anchor(defect_id),
    )


@router.post("/gradings/{grading_id}/defects")
def add_defect(
    act: ActionDep,
    photo: Annotated[int, Form(ge=0, le=99)] = 0,
    type: Choice = "",
    zone: Choice = "",
    x0: Annotated[float, Form()] = 0.0,
    y0: Annotated[float, Form()] = 0.0,
    x1: Annotated[float, Form()] = 0.0,
    y1: Annotated[float, Form()] = 0.0,
    reason: Text = "",
) -> Response:
    def change(s: Session, row: Grading) -> None:
        if not all(map(math.isfinite, (x0, y0, x1, y1))):
            raise events.ReviewInvalid("box corners must be numbers")
        box = (x0, y0, x1, y1)
        events.add_defect(s, row, act.actor, photo, type, zone or None, box, reason, act.version)

    return act.run("defect_added", change, f"photo-{photo}")
