"""Review pages' sign-in and sign-out, and `ReviewerDep`: every other review page needs a session.

The sessions, cookies and CSRF tokens themselves are sessions.py's; this module is their HTTP side. A
request without a valid session is sent to the sign-in page, which brings the reviewer back after.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from serving.deps import StateDep
from serving.review import sessions
from serving.review.html import FLASH, page, safe_next, see_other
from serving.review.sessions import Reviewer

router = APIRouter(prefix="/review", include_in_schema=False)


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


def _signin_page(request: Request, state, next_url: str, error: str = "", status: int = 200, msg: str = ""):
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "review_signin.html",
        {"csrf": token, "next": safe_next(next_url), "error": error, "flash": FLASH.get(msg, "")},
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
            return see_other(safe_next(next))
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
    response = see_other(safe_next(next))
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
