"""API bodies of review and disputes: a grading's review state (added to GET /v1/gradings/{id}), disputes.

`GradingReviewedOut` extends the grading body with one optional field, `review`, so clients written
against `GradingOut` keep working; the stored body is never changed, `review` is folded from events.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from serving.schemas import GradingOut

if TYPE_CHECKING:  # the events module loads SQLAlchemy: clients read these schemas without it
    from serving.review.events import Dispute, ReviewState

ReviewStatus = Literal["graded", "needs_review", "in_review", "disputed", "confirmed", "overruled"]


class DisputePhotoOut(BaseModel):
    sha256: str = Field(description="SHA-256 of the photo's bytes, hex")
    filename: str | None = Field(description="the file name sent, if any")
    content_type: str | None = Field(description="the content type sent")
    bytes: int = Field(description="size of the photo")


class ResolutionOut(BaseModel):
    outcome: Literal["confirmed", "overruled"] = Field(
        description="'confirmed': the grades stand; 'overruled': a reviewer changed at least one"
    )
    resolved_at: datetime = Field(description="when the reviewer decided, UTC")
    grades: dict[str, str] = Field(description="the grade per standard after the review")
    reason: str = Field(description="the reviewer's reason (overrule) or note (confirm)")


class DisputeOut(BaseModel):
    id: int = Field(description="the dispute's id")
    grading_id: str = Field(description="the grading disputed")
    created_at: datetime = Field(description="when it was sent, UTC")
    reason: str = Field(description="why the grade is wrong, as sent")
    photos: list[DisputePhotoOut] = Field(description="the extra photos sent with it")
    status: Literal["open", "resolved"] = Field(
        description="'open' until a reviewer confirms or overrules the grading"
    )
    resolution: ResolutionOut | None = Field(
        default=None, description="the reviewer's decision, once resolved"
    )


class ReviewOut(BaseModel):
    status: ReviewStatus = Field(
        description="graded / needs_review (nobody looked yet), in_review (defects corrected, no verdict), "
        "disputed (an open dispute), confirmed, overruled"
    )
    grades: dict[str, str] = Field(description="the grade per standard now: the model's unless overruled")
    overruled: list[str] = Field(description="standards whose grade a reviewer changed")
    reviewed_at: datetime | None = Field(description="when a reviewer last confirmed or overruled, UTC")
    disputes: list[DisputeOut] = Field(description="every dispute, oldest first, with its resolution")


class GradingReviewedOut(GradingOut):
    review: ReviewOut | None = Field(
        default=None, description="what the quality team's review and disputes did to this grading"
    )


def dispute_out(grading_id: str, d: Dispute) -> DisputeOut:
    res = d.resolution
    return DisputeOut(
        id=d.event_id,
        grading_id=grading_id,
        created_at=d.created_at,
        reason=d.reason,
        photos=[DisputePhotoOut(**p) for p in d.photos],
        status="open" if res is None else "resolved",
        resolution=None
        if res is None
        else ResolutionOut(
            outcome=res["outcome"],
            resolved_at=res["created_at"],
            grades=res["grades"],
            reason=res["reason"],
        ),
    )


def review_out(grading_id: str, state: ReviewState) -> ReviewOut:
    verdict = state.verdict
    return ReviewOut(
        status=state.status,
        grades=state.current_grades(),
        overruled=sorted(n for n, g in state.grades.items() if g.overruled),
        reviewed_at=verdict.created_at if verdict is not None else None,
        disputes=[dispute_out(grading_id, d) for d in state.disputes],
    )


def review_of(sessions, body: dict) -> ReviewOut:
    """The review part of GET /v1/gradings/{id}, for a body the caller may already read."""
    from serving.review.events import events_of, fold

    with sessions() as s:
        return review_out(body["id"], fold(body, events_of(s, body["id"])))
