"""The review pages under /review: sign-in, the queue, a grading's page, and the reviewer's actions.

Server-rendered (Jinja2 templates in serving/templates/review_*.html, one stylesheet and one small
script in serving/static/), no build step. Every page needs a reviewer session (sessions.py); every
form is a POST carrying the session's CSRF token and the id of the last event the reviewer saw, so two
reviewers cannot silently overwrite each other (the second gets "changed since you opened it").
Actions append events (events.py) and redirect back (POST/redirect/GET). Pages send a strict CSP
(no inline script or style), no-store caching and frame-ancestors 'none'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from serving.db import Grading
from serving.deps import StateDep
from serving.review import events, queue, sessions
from serving.review.sessions import Reviewer

PACKAGE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=PACKAGE / "templates")
STATIC = {"review.css": "text/css", "review.js": "text/javascript", "favicon.svg": "image/svg+xml"}
PAGE_SIZE = 25

router = APIRouter(prefix="/review", include_in_schema=False)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

FLASH = {
    "confirmed": "Grades confirmed.",
    "overruled": "Grade overruled. The change is in the history below.",
    "defect_rejected": "Defect marked as false.",
    "defect_retyped": "Defect type changed.",
    "defect_added": "Missed defect added.",
    "signed_out": "You are signed out.",
    "expired": "Your session ended. Sign in again to continue.",
}
CONFLICT = "Someone else changed this grading since you opened it. Check the history, then try again."
STATUS_LABELS = {
    "graded": "Graded",
    "needs_review": "Needs review",
    "in_review": "In review",
    "disputed": "Disputed",
    "confirmed": "Confirmed",
    "overruled": "Overruled",
}
QUEUE_LABELS = {"review": "Needs review", "disputed": "Disputed", "recent": "Recent"}


def page(request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
    ctx = {"status_labels": STATUS_LABELS, **context}
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def get_reviewer(request: Request, state: StateDep) -> Reviewer:
    with state.sessions() as s:
        reviewer = sessions.current(s, request)
    if reviewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        expired = "&msg=expired" if request.cookies.get(sessions.COOKIE) else ""
        # 303 to the sign-in page; the app's error handler keeps the Location header.
        raise HTTPException(
            303, "sign in first", {"Location": f"/review/signin?{urlencode({'next': target})}{expired}"}
        )
    return reviewer


ReviewerDep = Annotated[Reviewer, Depends(get_reviewer)]


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/review/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review/queue"


# -- sign-in ------------------------------------------------------------------------------------


def _signin_page(request: Request, state, next_url: str, error: str = "", status: int = 200, msg: str = ""):
    import secrets

    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "review_signin.html",
        {"csrf": token, "next": _safe_next(next_url), "error": error, "flash": FLASH.get(msg, "")},
        status,
    )
    sessions.set_cookie(response, state.settings, sessions.PRE_COOKIE, token, 3600)
    return response


@router.get("")
def root() -> RedirectResponse:
    return see_other("/review/queue")


@router.get("/signin")
def signin_form(request: Request, state: StateDep, next: str = "/review/queue", msg: str = "") -> Response:
    with state.sessions() as s:
        if sessions.current(s, request) is not None:
            return see_other(_safe_next(next))
    return _signin_page(request, state, next, msg=msg)


@router.post("/signin")
def signin(
    request: Request,
    state: StateDep,
    api_key: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/review/queue",
) -> Response:
    if not sessions.csrf_ok(request.cookies.get(sessions.PRE_COOKIE), csrf):
        return _signin_page(request, state, next, "The sign-in form expired. Please try again.", 403)
    with state.sessions() as s:
        token, why = sessions.sign_in(s, state.settings, api_key)
    if token is None:
        if why == "role":
            msg = "This API key belongs to a refurbisher. The review pages are for auditors and admins."
            return _signin_page(request, state, next, msg, 403)
        return _signin_page(request, state, next, "That API key is unknown or revoked.", 401)
    response = see_other(_safe_next(next))
    sessions.set_cookie(
        response, state.settings, sessions.COOKIE, token, int(state.settings.review_session_hours * 3600)
    )
    sessions.clear_cookie(response, state.settings, sessions.PRE_COOKIE)
    return response


@router.post("/signout")
def signout(
    state: StateDep, reviewer: ReviewerDep, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    if not sessions.csrf_ok(reviewer.csrf, csrf):
        raise HTTPException(403, "invalid CSRF token")
    with state.sessions() as s:
        sessions.sign_out(s, reviewer)
    response = see_other("/review/signin?msg=signed_out")
    sessions.clear_cookie(response, state.settings, sessions.COOKIE)
    return response


# -- the queue ----------------------------------------------------------------------------------


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/queue")
def show_queue(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    view: str = "review",
    tenant: str = "",
    standard: str = "",
    grade: str = "",
    date_from: str = "",
    date_to: str = "",
    model_version: str = "",
) -> HTMLResponse:
    view = view if view in queue.QUEUES else "review"
    page_no = _int(request.query_params.get("page"), 1)
    d_from, d_to = _date(date_from), _date(date_to)
    filters = queue.QueueFilters(
        tenant=tenant[:100] or None,
        standard=standard[:50] or None,
        grade=grade[:50] or None,
        date_from=datetime.combine(d_from, datetime.min.time(), UTC) if d_from else None,
        date_to=datetime.combine(d_to, datetime.min.time(), UTC) + timedelta(days=1) if d_to else None,
        model_version=model_version[:100] or None,
    )
    with state.sessions() as s:
        counts = queue.queue_counts(s, filters)
        pages = max(1, math.ceil(counts[view] / PAGE_SIZE))
        page_no = min(max(1, page_no), pages)
        rows = queue.queue_page(s, view, filters, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
        states = events.states_of(s, rows)
        choices = queue.filter_choices(s)
    params = {
        "tenant": tenant,
        "standard": standard,
        "grade": grade,
        "date_from": d_from.isoformat() if d_from else "",
        "date_to": d_to.isoformat() if d_to else "",
        "model_version": model_version,
    }
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
    probs = [(g.get("probabilities") or {}).get(g["grade"], 1.0) for g in row.body["grades"].values()]
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


# -- a grading ----------------------------------------------------------------------------------


def _load(s, grading_id: str) -> Grading | None:
    return s.get(Grading, grading_id) if len(grading_id) <= 36 else None


def _not_found(request: Request, reviewer: Reviewer, grading_id: str) -> HTMLResponse:
    return page(
        request,
        "review_error.html",
        {
            "reviewer": reviewer,
            "csrf": reviewer.csrf,
            "title": "Grading not found",
            "message": f"There is no grading {grading_id}.",
        },
        404,
    )


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


def _history(grading_id: str, evs: list, names: dict[str, str]) -> list[HistoryEntry]:
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
            title = f"Defect {p.get('defect')} marked false"
            changes = [
                ("defect", f"{b.get('type')} on {b.get('zone') or 'unknown zone'}", "false (no defect)")
            ]
        elif e.kind == events.DEFECT_RETYPED:
            title = f"Defect {p.get('defect')} type changed"
            changes = [
                ("type", (p.get("before") or {}).get("type", ""), (p.get("after") or {}).get("type", ""))
            ]
        elif e.kind == events.DEFECT_ADDED:
            a = p.get("after") or {}
            title = f"Missed defect added on photo {int(p.get('photo', 0)) + 1}"
            box = ", ".join(f"{v:.0f}" for v in a.get("box", []))
            changes = [("defect", "", f"{a.get('type')} on {a.get('zone') or 'unknown zone'}, box {box}")]
        else:
            title = e.kind.replace("_", " ").capitalize()
        out.append(HistoryEntry(e.id, e.created_at, who, e.kind, title, changes, text, photos))
    return out


def _grading_page(
    request: Request, state, reviewer: Reviewer, grading_id: str, error: str = "", status: int = 200
) -> HTMLResponse:
    with state.sessions() as s:
        row = _load(s, grading_id)
        if row is None:
            return _not_found(request, reviewer, grading_id)
        st = events.load_state(s, row)
        names = events.actor_names(s, [e.actor for e in st.events] + [d.actor for d in st.disputes])
    body = row.body
    photos = []
    for p in body["photos"]:
        idx = p["index"]
        defects = st.defects.get(idx, [])
        photos.append(
            {
                **p,
                "url": f"/review/gradings/{row.id}/photos/{idx}",
                "defects": defects,
                "marker": max(p["width"], p["height"]) / 45,
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
            "history": _history(row.id, st.events, names),
            "names": names,
            "defect_types": events.DEFECT_TYPES,
            "zones": events.ZONES,
            "version": st.last_event_id,
            "flash": FLASH.get(msg, "") if not error else "",
            "error": error or (CONFLICT if msg == "conflict" else ""),
            "back": _safe_next(request.query_params.get("back"))
            if request.query_params.get("back")
            else "/review/queue",
        },
        status,
    )


@router.get("/gradings/{grading_id}")
def grading(request: Request, state: StateDep, reviewer: ReviewerDep, grading_id: str) -> HTMLResponse:
    return _grading_page(request, state, reviewer, grading_id)


# Served as uploaded when a browser shows them as they are; anything else (HEIC from iPhones, TIFF,
# BMP, very large files) as a JPEG rendition, EXIF orientation applied, so every photo displays and the
# defect outlines (in EXIF-oriented pixels) stay aligned.
BROWSER_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
MAX_ORIGINAL_BYTES = 8 * 1024 * 1024
RENDITION_MAX_SIDE = 2400


@lru_cache(maxsize=32)
def _rendition(path: Path) -> bytes:
    import io

    from PIL import Image

    from model.preprocess import decode

    rgb, _draft = decode(path.read_bytes(), target=RENDITION_MAX_SIDE)
    img = Image.fromarray(rgb)
    if max(img.size) > RENDITION_MAX_SIDE:
        img.thumbnail((RENDITION_MAX_SIDE, RENDITION_MAX_SIDE), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _displayable(state, meta: dict) -> Response:
    ctype = (meta.get("content_type") or "").split(";")[0].strip().lower()
    if ctype in BROWSER_TYPES and meta.get("bytes", 0) <= MAX_ORIGINAL_BYTES:
        return _blob(state, meta["sha256"], ctype)
    data = _rendition(state.blobs.path(meta["sha256"]))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/gradings/{grading_id}/photos/{n}")
def photo(state: StateDep, _reviewer: ReviewerDep, grading_id: str, n: int) -> Response:
    with state.sessions() as s:
        row = _load(s, grading_id)
        meta = next((p for p in row.body["photos"] if p["index"] == n), None) if row else None
    if meta is None:
        raise HTTPException(404, "no such photo")
    return _displayable(state, meta)


@router.get("/gradings/{grading_id}/disputes/{event_id}/photos/{k}")
def dispute_photo(
    state: StateDep, _reviewer: ReviewerDep, grading_id: str, event_id: int, k: int
) -> Response:
    with state.sessions() as s:
        ev = s.get(events.GradingEvent, event_id)
    ok = ev is not None and ev.grading_id == grading_id and ev.kind == events.DISPUTED
    found = (ev.payload.get("photos") or []) if ok else []
    if not 0 <= k < len(found):
        raise HTTPException(404, "no such photo")
    return _displayable(state, found[k])


def _blob(state, sha: str, content_type: str | None) -> FileResponse:
    ctype = content_type if (content_type or "").startswith("image/") else "application/octet-stream"
    return FileResponse(
        state.blobs.path(sha),
        media_type=ctype,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400"},
    )


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise HTTPException(404, "not found")
    return FileResponse(
        PACKAGE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"}
    )


# -- actions ------------------------------------------------------------------------------------

Csrf = Annotated[str, Form(max_length=200)]
Version = Annotated[int, Form(ge=0)]


def _act(
    request: Request, state, reviewer: Reviewer, grading_id: str, csrf: str, done: str, action
) -> Response:
    """Check the CSRF token, run `action(session, row)` (which appends an event), redirect back."""
    if not sessions.csrf_ok(reviewer.csrf, csrf):
        return page(
            request,
            "review_error.html",
            {
                "reviewer": reviewer,
                "csrf": reviewer.csrf,
                "title": "The form expired",
                "message": "This form was sent without a valid security token. Reload the page and try again.",
            },
            403,
        )
    with state.sessions() as s:
        row = _load(s, grading_id)
        if row is None:
            return _not_found(request, reviewer, grading_id)
        try:
            action(s, row)
        except events.ReviewConflict:
            return see_other(f"/review/gradings/{grading_id}?msg=conflict#review")
        except events.ReviewInvalid as exc:
            s.rollback()
            return _grading_page(request, state, reviewer, grading_id, error=str(exc), status=422)
    anchor = "history" if done in ("confirmed", "overruled") else "photos"
    return see_other(f"/review/gradings/{grading_id}?msg={done}#{anchor}")


@router.post("/gradings/{grading_id}/confirm")
def confirm(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    grading_id: str,
    csrf: Csrf = "",
    version: Version = 0,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    def action(s, row):
        events.confirm(s, row, reviewer.principal.key_id, note, version)

    return _act(request, state, reviewer, grading_id, csrf, "confirmed", action)


@router.post("/gradings/{grading_id}/overrule")
def overrule(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    grading_id: str,
    csrf: Csrf = "",
    version: Version = 0,
    standard: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    grade: Annotated[list[str], Form()] = [],  # noqa: B006
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    def action(s, row):
        if len(standard) != len(grade):
            raise events.ReviewInvalid("give one grade per standard")
        events.overrule(
            s, row, reviewer.principal.key_id, dict(zip(standard, grade, strict=True)), reason, version
        )

    return _act(request, state, reviewer, grading_id, csrf, "overruled", action)


@router.post("/gradings/{grading_id}/defects/{defect_id}/reject")
def reject_defect(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    grading_id: str,
    defect_id: str,
    csrf: Csrf = "",
    version: Version = 0,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    def action(s, row):
        events.reject_defect(s, row, reviewer.principal.key_id, defect_id, reason, version)

    return _act(request, state, reviewer, grading_id, csrf, "defect_rejected", action)


@router.post("/gradings/{grading_id}/defects/{defect_id}/retype")
def retype_defect(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    grading_id: str,
    defect_id: str,
    csrf: Csrf = "",
    version: Version = 0,
    type: Annotated[str, Form(max_length=50)] = "",
) -> Response:
    def action(s, row):
        events.retype_defect(s, row, reviewer.principal.key_id, defect_id, type, version)

    return _act(request, state, reviewer, grading_id, csrf, "defect_retyped", action)


@router.post("/gradings/{grading_id}/defects")
def add_defect(
    request: Request,
    state: StateDep,
    reviewer: ReviewerDep,
    grading_id: str,
    csrf: Csrf = "",
    version: Version = 0,
    photo: Annotated[int, Form(ge=0, le=99)] = 0,
    type: Annotated[str, Form(max_length=50)] = "",
    zone: Annotated[str, Form(max_length=50)] = "",
    x0: Annotated[float, Form()] = 0.0,
    y0: Annotated[float, Form()] = 0.0,
    x1: Annotated[float, Form()] = 0.0,
    y1: Annotated[float, Form()] = 0.0,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    def action(s, row):
        if not all(map(math.isfinite, (x0, y0, x1, y1))):
            raise events.ReviewInvalid("box corners must be numbers")
        events.add_defect(
            s, row, reviewer.principal.key_id, photo, type, zone or None, (x0, y0, x1, y1), reason, version
        )

    return _act(request, state, reviewer, grading_id, csrf, "defect_added", action)
