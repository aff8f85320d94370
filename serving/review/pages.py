"""The review pages people read: the queue (tabs, filters, pages), a grading with its history, and
the static files they load. Each needs a reviewer session (signin.ReviewerDep); the forms on a grading's
page post to actions.py, which shows the page again (`grading_page`) when an action does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from model.rules.schema import UNGRADABLE
from serving.db import Grading
from serving.deps import StateDep
from serving.impact import standing_impact
from serving.overlays import is_own_mark
from serving.review import events, queue
from serving.review.html import FLASH, PACKAGE, error_page, page, safe_next, see_other
from serving.review.sessions import Reviewer
from serving.review.signin import ReviewerDep
from serving.schemas import is_counted
from serving.times import day_after, day_start

STATIC = {"review.css": "text/css", "review.js": "text/javascript", "favicon.svg": "image/svg+xml"}
PAGE_SIZE = 25
CONFLICT = "Someone else changed this grading since you opened it. Check the history, then try again."
QUEUE_LABELS = {"review": "Needs review", "disputed": "Disputed", "recent": "Recent"}

router = APIRouter(prefix="/review", include_in_schema=False)


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def queue_filters(
    tenant: str = "",
    standard: str = "",
    grade: str = "",
    date_from: str = "",
    date_to: str = "",
    model_version: str = "",
) -> tuple[queue.QueueFilters, dict[str, str]]:
    """The queue's filters from its query parameters, and the parameters as the page shows them back."""
    d_from, d_to = _date(date_from), _date(date_to)
    filters = queue.QueueFilters(
        tenant=tenant[:100] or None,
        standard=standard[:50] or None,
        grade=grade[:50] or None,
        date_from=day_start(d_from) if d_from else None,
        date_to=day_after(d_to) if d_to else None,  # None after 9999-12-31: no end
        model_version=model_version[:100] or None,
    )
    params = {
        "tenant": tenant,
        "standard": standard,
        "grade": grade,
        "date_from": d_from.isoformat() if d_from else "",
        "date_to": d_to.isoformat() if d_to else "",
        "model_version": model_version,
    }
    return filters, params


# The queue's filters as a route's query parameters: the page and its CSV take the same ones.
QueueFiltersDep = Annotated[tuple[queue.QueueFilters, dict[str, str]], Depends(queue_filters)]


@router.get("/queue")
def show_queue(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    filtered: QueueFiltersDep,
    view: str = "review",
) -> HTMLResponse:
    view = view if view in queue.QUEUES else "review"
    page_no = _int(request.query_params.get("page"), 1)
    filters, params = filtered
    with state.sessions() as s:
        counts = queue.queue_counts(s, filters)
        pages = max(1, math.ceil(counts[view] / PAGE_SIZE))
        page_no = min(max(1, page_no), pages)
        rows = queue.queue_page(s, view, filters, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
        states = events.states_of(s, rows)
        choices = queue.filter_choices(s)
    active = {k: v for k, v in params.items() if v}

    def url(**kw) -> str:
        q = {"view": view, **active, **kw}
        return "/review/queue?" + urlencode({k: v for k, v in q.items() if v not in ("", None)})

    items = [_queue_item(r, states[r.id]) for r in rows]
    first = (page_no - 1) * PAGE_SIZE + 1 if items else 0
    return page(
        request,
        "review_queue.html",
        {
            "reviewer": reviewer,
            "csrf": reviewer.csrf,
            "view": view,
            "view_label": QUEUE_LABELS[view],
            "queues": [
                (q, QUEUE_LABELS[q], counts[q], url(view=q, page=None) if q != view else None)
                for q in queue.QUEUES
            ],
            "counts": counts,
            "params": params,
            "filtered": bool(active),
            "choices": choices,
            "items": items,
            "page_no": page_no,
            "pages": pages,
            "first": first,
            "last": first + len(items) - 1 if items else 0,
            "prev_url": url(page=page_no - 1) if page_no > 1 else None,
            "next_url": url(page=page_no + 1) if page_no < pages else None,
            "back": url(page=page_no if page_no > 1 else None),
            "csv_url": "/review/queue.csv?" + urlencode({"view": view, **active}),
        },
    )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _queue_item(row: Grading, state: events.ReviewState) -> dict:
    # The probability of the model's own grade, the least sure standard first: with calibrated
    # probabilities another grade can be likelier than the one given, and that is not certainty.
    # An ungradable device has no grade to be sure of: 0.
    probs = [
        0.0 if g["grade"] == UNGRADABLE else (g.get("probabilities") or {}).get(g["grade"], 1.0)
        for g in row.body["grades"].values()
    ]
    return {
        "id": row.id,
        "short": row.id[:8],
        "created": row.created_at,
        "tenant": row.tenant,
        "ref": row.external_ref,
        "device": row.device_model or row.device_kind.capitalize(),
        "grades": state.grades,
        "certainty": min(probs) if probs else None,
        "status": state.status,
        "photos": len(row.body["photos"]),
        "defects": sum(1 for ds in state.defects.values() for d in ds if d.status == "kept"),
        "disputes": len(state.open_disputes),
        "model_version": row.model_version,
    }


@router.get("/next")
def next_in_queue(state: StateDep, _reviewer: ReviewerDep, view: str = "review") -> RedirectResponse:
    """The first grading of a work queue (oldest first), or the queue itself when it is empty."""
    view = view if view in ("review", "disputed") else "review"
    with state.sessions() as s:
        rows = queue.queue_page(s, view, queue.QueueFilters(), 1, 0)
    if not rows:
        return see_other(f"/review/queue?view={view}")
    return see_other(f"/review/gradings/{rows[0].id}?back={quote(f'/review/queue?view={view}')}")


def load_grading(s, grading_id: str) -> Grading | None:
    """Any tenant's grading (reviewers see all); None for an unknown id."""
    return s.get(Grading, grading_id) if len(grading_id) <= 36 else None


def not_found(request: Request, reviewer: Reviewer, grading_id: str) -> HTMLResponse:
    return error_page(request, reviewer, "Grading not found", f"There is no grading {grading_id}.", 404)


@dataclass
class HistoryEntry:
    id: int
    when: datetime
    who: str
    kind: str
    title: str
    changes: list[tuple[str, str, str]]  # (what, before, after)
    text: str  # reason / note
    photos: list[tuple[str, str]]  # (label, url)


def _defect_words(p: dict, numbers: dict[str, str]) -> str:
    """'Defect 2 on photo 1': a defect as the page numbers it (both counted from 1)."""
    photo = int(p.get("photo", 0)) + 1
    n = numbers.get(str(p.get("defect")))
    return f"Defect {n} on photo {photo}" if n else f"A defect on photo {photo}"


def _history(
    grading_id: str, evs: list, names: dict[str, str], numbers: dict[str, str] | None = None
) -> list[HistoryEntry]:
    numbers = numbers or {}
    out = []
    for e in evs:
        p = e.payload or {}
        who = names.get(e.actor or "", f"key {e.actor}" if e.actor else "system")
        changes, photos, text = [], [], p.get("reason") or p.get("note") or ""
        if e.kind == events.GRADED:
            title = f"Graded by model {p.get('model_version', '')}"
            changes = [(std, "", g) for std, g in (p.get("grades") or {}).items()]
        elif e.kind == events.DISPUTED:
            title = f"Disputed by {p.get('role') or 'a user'}"
            photos = [
                (f"Extra photo {k + 1}", f"/review/gradings/{grading_id}/disputes/{e.id}/photos/{k}")
                for k in range(len(p.get("photos") or []))
            ]
        elif e.kind == events.CONFIRMED:
            title = "Grades confirmed"
            changes = [(std, "", g) for std, g in (p.get("after") or {}).items()]
        elif e.kind == events.OVERRULED:
            title = "Grade overruled"
            changes = [
                (std, (p.get("before") or {}).get(std, ""), g) for std, g in (p.get("after") or {}).items()
            ]
        elif e.kind == events.DEFECT_REJECTED:
            b = p.get("before") or {}
            title = f"{_defect_words(p, numbers)} marked false"
            changes = [
                ("defect", f"{b.get('type')} on {b.get('zone') or 'unknown zone'}", "false (no defect)")
            ]
        elif e.kind == events.DEFECT_RETYPED:
            title = f"{_defect_words(p, numbers)}: type changed"
            changes = [
                ("type", (p.get("before") or {}).get("type", ""), (p.get("after") or {}).get("type", ""))
            ]
        elif e.kind == events.PHOTOS_ERASED:
            title = f"Photos erased {_erased_why(p.get('reason'))}"
            changes = [("photos", f"{p.get('photos', 0)} stored", "erased")]
        elif e.kind == events.DEFECT_ADDED:
            a = p.get("after") or {}
            title = f"Missed defect added: {_defect_words(p, numbers)}"
            box = ", ".join(f"{v:.0f}" for v in a.get("box", []))
            changes = [("defect", "", f"{a.get('type')} on {a.get('zone') or 'unknown zone'}, box {box}")]
        else:
            title = e.kind.replace("_", " ").capitalize()
        out.append(HistoryEntry(e.id, e.created_at, who, e.kind, title, changes, text, photos))
    if any(e.kind == events.PHOTOS_ERASED for e in evs):  # their links would only answer 410
        for h in out:
            h.photos = []
    return out


def _erased_why(reason: str | None) -> str:
    return "by the retention policy" if reason == "retention" else "at the refurbisher's request"


def _erased_placeholder(width: int, height: int) -> str:
    """A grey image the size of an erased photo, saying so: the defect outlines stay where they were."""
    from urllib.parse import quote

    size = max(width, height) / 18
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}">'
        f'<rect width="{width}" height="{height}" fill="#3a424d"/>'
        f'<text x="50%" y="50%" fill="#e6e9ee" font-family="sans-serif" font-size="{size:.0f}" '
        'text-anchor="middle" dominant-baseline="middle">photos erased</text></svg>'
    )
    return "data:image/svg+xml," + quote(svg)


def marker_spots(
    boxes: list[tuple[float, float, float, float]],
    r: float,
    width: float,
    height: float,
    firsts: list[tuple[float, float] | None] | None = None,
) -> list[tuple[float, float]]:
    """Centres of the numbered markers of a photo's defects (`boxes`, in page order, `r` their
    radius), none overlapping another where there is room: each at the first free spot of its box's
    corners, then its edges' middles, then rings further out from its top-left corner, kept inside the
    photo; counted defects come first in page order, so their markers stay where they are when the
    candidates are shown. A marker with no free spot near its box keeps its first spot. Why:
    markers sat on each box's top-left corner, and on an MSD screen's scratch two candidates' numbers
    covered each other. `firsts`: a spot to try before the box's (an outline drawn without its box:
    its point nearest the box's top-left corner, so the marker sits on the outline)."""
    placed: list[tuple[float, float]] = []

    def free(x: float, y: float) -> bool:
        return all((x - px) ** 2 + (y - py) ** 2 >= (2 * r) ** 2 for px, py in placed)

    for k, (x0, y0, x1, y1) in enumerate(boxes):
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        tries = [firsts[k]] if firsts and firsts[k] is not None else []
        tries += [(x0, y0), (x1, y0), (x0, y1), (x1, y1), (mx, y0), (x1, my), (mx, y1), (x0, my)]
        for ring in range(1, 4):
            d, n = 2 * r * ring, 8 * ring
            tries += [
                (x0 + d * math.cos(2 * math.pi * j / n), y0 + d * math.sin(2 * math.pi * j / n))
                for j in range(n)
            ]
        spot = tries[0]
        for x, y in tries:
            x, y = min(max(x, r), width - r), min(max(y, r), height - r)
            if free(x, y):
                spot = (x, y)
                break
        placed.append(spot)
    return placed


def _counts(d: events.Defect, stored: list[dict]) -> str:
    """'counted' (the grade rests on it; a reviewer's added defect too), 'candidate' (listed, below the
    cut or an ungraded type) or 'evidence' (a fragment of a zone-level defect)."""
    if d.origin == "reviewer":
        return "counted"
    k = int(d.id.rsplit("-d", 1)[1]) if "-d" in d.id else -1
    if not 0 <= k < len(stored):
        return "candidate"
    if stored[k].get("role") == "evidence":
        return "evidence"
    return "counted" if is_counted(stored[k]) else "candidate"


def grading_page(
    request: Request, state, reviewer: Reviewer, grading_id: str, error: str = "", status: int = 200
) -> HTMLResponse:
    with state.sessions() as s:
        row = load_grading(s, grading_id)
        if row is None:
            return not_found(request, reviewer, grading_id)
        st = events.load_state(s, row)
        names = events.actor_names(s, [e.actor for e in st.events] + [d.actor for d in st.disputes])
    erasure = next((e for e in st.events if e.kind == events.PHOTOS_ERASED), None)
    erased = None
    if erasure is not None:  # issue 20: the record stays, the photos do not
        erased = {"erased_at": erasure.created_at, "why": _erased_why((erasure.payload or {}).get("reason"))}
    body = row.body
    photos = []
    numbers: dict[str, str] = {}  # defect id -> its number on its photo, as the page shows it
    for p in body["photos"]:
        idx = p["index"]
        counts = {d.id: _counts(d, p["defects"]) for d in st.defects.get(idx, [])}
        # What the grade rests on first, then the candidates, most likely first, then what reviewers
        # added: numbered from 1 in that order, which no review action changes (the history uses it).
        defects = sorted(
            st.defects.get(idx, []),
            key=lambda d: (d.origin == "reviewer", counts[d.id] != "counted", -(d.confidence or 0.0)),
        )
        numbers.update({d.id: str(k) for k, d in enumerate(defects, 1)})
        marker = max(p["width"], p["height"]) / 45
        # Outlines a quarter of the photo or larger (a glass judged cracked as a whole, a tilted phone's
        # screen) are their own mark: their dashed box would frame the table around them (the overlay's
        # rule, `serving.overlays.is_own_mark`), and their marker sits on the outline, at its point
        # nearest the box's top-left corner, not on that corner off the device.
        big = {d.id for d in defects if is_own_mark(d.polygon, d.box, p["width"], p["height"])}
        firsts = [
            min(d.polygon, key=lambda xy, d=d: math.dist(xy, d.box[:2])) if d.id in big else None
            for d in defects
        ]
        photos.append(
            {
                **p,
                "url": f"/review/gradings/{row.id}/photos/{idx}",
                "erased_src": _erased_placeholder(p["width"], p["height"]) if erased else "",
                "defects": defects,
                "counts": counts,
                "n_candidates": sum(1 for c in counts.values() if c != "counted"),
                "marker": marker,
                "big": big,
                "spots": dict(
                    zip(
                        (d.id for d in defects),
                        marker_spots([d.box for d in defects], marker, p["width"], p["height"], firsts),
                        strict=True,
                    )
                ),
            }
        )
    msg = request.query_params.get("msg", "")
    return page(
        request,
        "review_grading.html",
        {
            "reviewer": reviewer,
            "csrf": reviewer.csrf,
            "g": body,
            "row": row,
            "st": st,
            "created": row.created_at,
            "photos": photos,
            "erased": erased,
            "history": _history(row.id, st.events, names, numbers),
            "impact": standing_impact(body.get("impact"), st.current_grades()),  # issue 22
            "names": names,
            "defect_types": events.DEFECT_TYPES,
            "zones": events.ZONES,
            "version": st.last_event_id,
            "ungradable": UNGRADABLE,
            "flash": FLASH.get(msg, "") if not error else "",
            "error": error or (CONFLICT if msg == "conflict" else ""),
            "back": safe_next(request.query_params.get("back"))
            if request.query_params.get("back")
            else "/review/queue",
        },
        status,
    )


@router.get("/gradings/{grading_id}")
def grading(request: Request, state: StateDep, reviewer: ReviewerDep, grading_id: str) -> HTMLResponse:
    return grading_page(request, state, reviewer, grading_id)


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise HTTPException(404, "not found")
    return FileResponse(
        PACKAGE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"}
    )
