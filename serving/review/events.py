"""Review and dispute events of a grading, and the grading's current state folded from them.

A grading's stored body (the model's answer) is never rewritten. Everything people do to it afterwards
is appended to `grading_events` as one event each — who (API key id), when, what (kind), before and
after — and the current state is always `fold(body, events)`: the original plus the events, in order.
This module owns the event kinds and payloads, appending them (with an optimistic check that nobody
else changed the grading in between) and folding them; the review queue's SQL is in queue.py.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from model.taxonomy import DefectType, Zone
from serving.db import ApiKey, Grading, GradingEvent
from serving.schemas import is_measured, visibility_of

GRADED = "graded"
DISPUTED = "disputed"
CONFIRMED = "review_confirmed"
OVERRULED = "grade_overruled"
DEFECT_REJECTED = "defect_rejected"
DEFECT_RETYPED = "defect_retyped"
DEFECT_ADDED = "defect_added"
PHOTOS_ERASED = "photos_erased"  # retention or an erase request (serving/retention.py): the photos are gone

VERDICTS = (CONFIRMED, OVERRULED)
REVIEW_KINDS = (CONFIRMED, OVERRULED, DEFECT_REJECTED, DEFECT_RETYPED, DEFECT_ADDED)

DEFECT_TYPES = tuple(t.value for t in DefectType)
ZONES = tuple(z.value for z in Zone)


class ReviewConflict(Exception):
    """The grading changed since the reviewer loaded it (another reviewer's event came first)."""


class ReviewInvalid(ValueError):
    """A review action that does not fit the grading (unknown defect, grade, photo, ...)."""


@dataclass
class Defect:
    id: str  # "p<photo>-d<k>" for the model's k-th defect of a photo, "p<photo>-a<hex>" for added ones
    photo: int
    type: str
    zone: str | None
    box: tuple[float, float, float, float]
    polygon: list[tuple[float, float]]
    confidence: float | None  # None: drawn by a reviewer
    size: str  # for people: "3.1 mm × 0.2 mm", "4.0% of length", "120 × 14 px (drawn)"
    origin: str = "model"  # "model" or "reviewer"
    status: str = "kept"  # "kept" or "false"
    original_type: str | None = None  # set once a reviewer changed the type
    seen: str = ""  # where a contrast was measured: "contrast 0.08, visible at 20 cm: yes, at 50 cm: no"

    @property
    def corrected(self) -> bool:
        return self.origin == "reviewer" or self.status == "false" or self.original_type is not None


@dataclass
class Dispute:
    event_id: int
    created_at: datetime
    actor: str | None
    role: str | None
    reason: str
    photos: list[dict]
    resolution: dict | None = None  # {event_id, kind, created_at, actor, outcome, grades, reason}

    @property
    def open(self) -> bool:
        return self.resolution is None


@dataclass
class GradeState:
    standard: str
    grade: str  # current
    original: str  # the model's
    choices: list[str]  # the standard's grades, best first

    @property
    def overruled(self) -> bool:
        return self.grade != self.original


@dataclass
class ReviewState:
    grades: dict[str, GradeState]
    defects: dict[int, list[Defect]]
    disputes: list[Dispute]
    events: list[GradingEvent]
    needs_review: bool
    verdict: GradingEvent | None = None  # the latest confirm/overrule
    reviewers: list[str] = field(default_factory=list)

    @property
    def last_event_id(self) -> int:
        return max((e.id for e in self.events), default=0)

    @property
    def open_disputes(self) -> list[Dispute]:
        return [d for d in self.disputes if d.open]

    @property
    def reviewed(self) -> bool:
        return any(e.kind in REVIEW_KINDS for e in self.events)

    @property
    def status(self) -> str:
        """disputed, overruled, confirmed, in_review (defects corrected, no verdict yet), needs_review, graded."""
        if self.open_disputes:
            return "disputed"
        if self.verdict is not None:
            return "overruled" if any(g.overruled for g in self.grades.values()) else "confirmed"
        if self.reviewed:
            return "in_review"
        return "needs_review" if self.needs_review else "graded"

    def current_grades(self) -> dict[str, str]:
        return {name: g.grade for name, g in self.grades.items()}

    def find_defect(self, defect_id: str) -> Defect:
        for defects in self.defects.values():
            for d in defects:
                if d.id == defect_id:
                    return d
        raise ReviewInvalid("that defect is not on this grading")


def _mm(x: float) -> str:
    # hairlines in hundredths: the visibility tiers turn on widths like 0.06 and 0.15 mm
    return f"{x:.2f}" if x < 1 else f"{x:.1f}"


def _size(d: dict) -> str:
    """A stored defect's size for people. A crack's is what its lines traced ("traced 7.7% of length"):
    on real photos they are often a small part of a glass judged cracked as a whole, which the page
    outlines whole (`model.damage.judge_zone_damage`), and the reasons quote no crack's size."""
    if not is_measured(d):
        return "not measured"
    traced = "traced " if d.get("type") == "crack" else ""
    if d.get("units") == "mm" or d.get("length_mm") is not None:
        length = d.get("length_mm", d.get("length"))
        return f"{traced}{length:.1f} mm × {_mm(d.get('width') or 0.0)} mm"
    if d.get("length_rel") is not None or d.get("units") == "relative":
        rel = d.get("length_rel", d.get("length")) or 0.0
        return f"{traced}{100 * rel:.1f}% of length"
    return ""


def _seen(d: dict) -> str:
    """A measured contrast and what it means at Back Market's distances; '' without a contrast (the
    coarse pass, gradings stored before contrasts were kept). The stored `visibility` block as answered,
    derived from width and contrast where a stored defect has none."""
    contrast = d.get("contrast")
    if contrast is None:
        return ""
    words = f"contrast {contrast:.2g}"
    v = d.get("visibility") or visibility_of(d)
    if not v:  # relative units: no width in mm to judge it by
        return words

    def yes(key: str) -> str:
        return "yes" if v.get(key) else "no"

    return f"{words}, visible at 20 cm: {yes('visible_at_20cm')}, at 50 cm: {yes('visible_at_50cm')}"


def _drawn_size(box) -> str:
    x0, y0, x1, y1 = box
    return f"{x1 - x0:.0f} × {y1 - y0:.0f} px (drawn)"


def fold(body: dict, events: list[GradingEvent]) -> ReviewState:
    """The grading's current state: its stored body with every event applied in order."""
    grades = {
        name: GradeState(name, g["grade"], g["grade"], list(g.get("probabilities") or [g["grade"]]))
        for name, g in body["grades"].items()
    }
    defects: dict[int, list[Defect]] = {}
    for p in body["photos"]:
        defects[p["index"]] = [
            Defect(
                id=f"p{p['index']}-d{k}",
                photo=p["index"],
                type=d["type"],
                zone=d.get("zone"),
                box=tuple(d["box"]),
                polygon=[tuple(xy) for xy in d.get("polygon") or []],
                confidence=d.get("confidence"),
                size=_size(d),
                seen=_seen(d),
            )
            for k, d in enumerate(p["defects"])
        ]
    state = ReviewState(grades, defects, [], sorted(events, key=lambda e: e.id), bool(body["needs_review"]))
    for e in state.events:
        p = e.payload or {}
        if e.kind in REVIEW_KINDS and e.actor and e.actor not in state.reviewers:
            state.reviewers.append(e.actor)
        if e.kind == DISPUTED:
            state.disputes.append(
                Dispute(e.id, e.created_at, e.actor, p.get("role"), p.get("reason", ""), p.get("photos", []))
            )
        elif e.kind in VERDICTS:
            for name, grade in (p.get("after") or {}).items():
                if name in grades:
                    grades[name].grade = grade
            state.verdict = e
            resolution = {
                "event_id": e.id,
                "kind": e.kind,
                "created_at": e.created_at,
                "actor": e.actor,
                "outcome": "overruled" if e.kind == OVERRULED else "confirmed",
                "grades": dict(p.get("after") or {}),
                "reason": p.get("reason") or p.get("note") or "",
            }
            for d in state.disputes:
                if d.open:
                    d.resolution = resolution
        elif e.kind == DEFECT_REJECTED:
            _find(state, p.get("defect")).status = "false"
        elif e.kind == DEFECT_RETYPED:
            d = _find(state, p.get("defect"))
            if d.original_type is None:
                d.original_type = d.type
            d.type = (p.get("after") or {}).get("type", d.type)
        elif e.kind == DEFECT_ADDED:
            a = p.get("after") or {}
            photo = int(p.get("photo", 0))
            box = tuple(a["box"])
            state.defects.setdefault(photo, []).append(
                Defect(
                    id=p["defect"],
                    photo=photo,
                    type=a["type"],
                    zone=a.get("zone"),
                    box=box,
                    polygon=[tuple(xy) for xy in a.get("polygon") or []],
                    confidence=None,
                    size=_drawn_size(box),
                    origin="reviewer",
                )
            )
    return state


def _find(state: ReviewState, defect_id: str | None) -> Defect:
    try:
        return state.find_defect(str(defect_id))
    except ReviewInvalid:  # an event that names an unknown defect cannot change anything: show as-is
        return Defect("?", -1, "?", None, (0, 0, 0, 0), [], None, "")


# -- reading and appending ----------------------------------------------------------------------


def events_of(s: Session, grading_id: str) -> list[GradingEvent]:
    return list(
        s.scalars(select(GradingEvent).where(GradingEvent.grading_id == grading_id).order_by(GradingEvent.id))
    )


def load_state(s: Session, row: Grading) -> ReviewState:
    return fold(row.body, events_of(s, row.id))


def states_of(s: Session, rows: list[Grading]) -> dict[str, ReviewState]:
    """Folded state of several gradings with one query for their events."""
    ids = [r.id for r in rows]
    by_id: dict[str, list[GradingEvent]] = {i: [] for i in ids}
    if ids:
        for e in s.scalars(select(GradingEvent).where(GradingEvent.grading_id.in_(ids))):
            by_id[e.grading_id].append(e)
    return {r.id: fold(r.body, by_id[r.id]) for r in rows}


def actor_names(s: Session, key_ids) -> dict[str, str]:
    """API key id -> 'name (role)' for display; the id itself where the key has no name."""
    ids = {k for k in key_ids if k}
    if not ids:
        return {}
    out = {}
    for k in s.scalars(select(ApiKey).where(ApiKey.id.in_(ids))):
        who = k.name or f"key {k.id}"
        out[k.id] = f"{who} ({k.role}{', ' + k.tenant if k.tenant else ''})"
    return out


def append(
    s: Session, row: Grading, actor: str, kind: str, payload: dict[str, Any], expected_last: int | None
) -> GradingEvent:
    """Append one event; with `expected_last`, refuse (ReviewConflict) if another event came after it."""
    if expected_last is not None:
        # PostgreSQL: lock the grading row so two reviewers' check-then-append cannot interleave.
        s.execute(select(Grading.id).where(Grading.id == row.id).with_for_update())
        last = s.scalar(select(func.max(GradingEvent.id)).where(GradingEvent.grading_id == row.id)) or 0
        if last != expected_last:
            raise ReviewConflict(f"grading {row.id} changed since it was loaded")
    event = GradingEvent(
        grading_id=row.id, created_at=datetime.now(UTC), actor=actor, kind=kind, payload=payload
    )
    s.add(event)
    from serving.webhooks import outbox  # webhook rows commit with their event: at-least-once (issue 21)

    outbox.enqueue(s, row, event)
    s.commit()
    return event


def confirm(s: Session, row: Grading, actor: str, note: str, expected_last: int | None) -> GradingEvent:
    state = load_state(s, row)
    grades = state.current_grades()
    payload = {
        "before": grades,
        "after": grades,
        "note": note.strip(),
        "resolves": [d.event_id for d in state.open_disputes],
    }
    return append(s, row, actor, CONFIRMED, payload, expected_last)


def overrule(
    s: Session, row: Grading, actor: str, new_grades: dict[str, str], reason: str, expected_last: int | None
) -> GradingEvent:
    reason = reason.strip()
    if not reason:
        raise ReviewInvalid("overruling a grade needs a reason")
    state = load_state(s, row)
    before = state.current_grades()
    for name, grade in new_grades.items():
        if name not in state.grades:
            raise ReviewInvalid(f"this grading has no {name} grade")
        if grade == before[name]:  # unchanged (an ungradable grade left as it is): nothing to check
            continue
        if grade not in state.grades[name].choices:
            raise ReviewInvalid(f"{grade!r} is not a {name} grade")
    after = {**before, **new_grades}
    if after == before:
        raise ReviewInvalid("pick at least one grade that differs from the current one (or confirm instead)")
    payload = {
        "before": {k: before[k] for k in before if before[k] != after[k]},
        "after": {k: after[k] for k in after if before[k] != after[k]},
        "reason": reason,
        "resolves": [d.event_id for d in state.open_disputes],
    }
    return append(s, row, actor, OVERRULED, payload, expected_last)


def _defect_dict(d: Defect) -> dict:
    return {"type": d.type, "zone": d.zone, "box": list(d.box), "confidence": d.confidence}


def reject_defect(
    s: Session, row: Grading, actor: str, defect_id: str, reason: str, expected_last: int | None
) -> GradingEvent:
    d = load_state(s, row).find_defect(defect_id)
    if d.status == "false":
        raise ReviewInvalid("that defect is already marked false")
    payload = {
        "photo": d.photo,
        "defect": d.id,
        "before": _defect_dict(d),
        "after": None,
        "reason": reason.strip(),
    }
    return append(s, row, actor, DEFECT_REJECTED, payload, expected_last)


def retype_defect(
    s: Session, row: Grading, actor: str, defect_id: str, new_type: str, expected_last: int | None
) -> GradingEvent:
    if new_type not in DEFECT_TYPES:
        raise ReviewInvalid(f"{new_type!r} is not a defect type")
    d = load_state(s, row).find_defect(defect_id)
    if d.type == new_type:
        raise ReviewInvalid(f"that defect is already a {new_type}")
    payload = {"photo": d.photo, "defect": d.id, "before": {"type": d.type}, "after": {"type": new_type}}
    return append(s, row, actor, DEFECT_RETYPED, payload, expected_last)


def add_defect(
    s: Session,
    row: Grading,
    actor: str,
    photo: int,
    defect_type: str,
    zone: str | None,
    box: tuple[float, float, float, float],
    reason: str,
    expected_last: int | None,
) -> GradingEvent:
    if defect_type not in DEFECT_TYPES:
        raise ReviewInvalid(f"{defect_type!r} is not a defect type")
    if zone is not None and zone not in ZONES:
        raise ReviewInvalid(f"{zone!r} is not a zone")
    photos = {p["index"]: p for p in row.body["photos"]}
    if photo not in photos:
        raise ReviewInvalid(f"this grading has no photo {photo + 1}")
    w, h = photos[photo]["width"], photos[photo]["height"]
    x0, y0, x1, y1 = box
    x0, x1 = sorted((max(0.0, min(w, x0)), max(0.0, min(w, x1))))
    y0, y1 = sorted((max(0.0, min(h, y0)), max(0.0, min(h, y1))))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ReviewInvalid("draw a box at least 2 pixels wide and high inside the photo")
    box = (round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1))
    polygon = [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])]
    payload = {
        "photo": photo,
        "defect": f"p{photo}-a{secrets.token_hex(4)}",
        "before": None,
        "after": {"type": defect_type, "zone": zone, "box": list(box), "polygon": [list(p) for p in polygon]},
        "reason": reason.strip(),
    }
    return append(s, row, actor, DEFECT_ADDED, payload, expected_last)


def graded(s: Session, body: dict, at: datetime, actor: str | None) -> GradingEvent:
    """A new grading's first event: added in the transaction that stores the grading, not committed."""
    payload = {
        "model_version": body["model"]["version"],
        "rules_versions": body["rules_versions"],
        "grades": {name: g["grade"] for name, g in body["grades"].items()},
        "needs_review": body["needs_review"],
    }
    event = GradingEvent(grading_id=body["id"], created_at=at, actor=actor, kind=GRADED, payload=payload)
    s.add(event)
    return event


def dispute(s: Session, row: Grading, actor: str, role: str, reason: str, photos: list[dict]) -> GradingEvent:
    payload = {
        "before": None,
        "after": {"status": "disputed"},
        "reason": reason.strip(),
        "role": role,
        "photos": photos,
    }
    return append(s, row, actor, DISPUTED, payload, None)
