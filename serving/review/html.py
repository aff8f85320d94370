"""What every review page shares: templates, security headers, labels, redirects and the error page.

Server-rendered (Jinja2 templates in serving/templates/review_*.html, one stylesheet and one small
script in serving/static/), no build step. Pages send a strict CSP (no inline script or style),
no-store caching and frame-ancestors 'none'; redirects after a POST are 303 (POST/redirect/GET).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from serving.review.sessions import Reviewer

PACKAGE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=PACKAGE / "templates")

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
STATUS_LABELS = {
    "graded": "Graded",
    "needs_review": "Needs review",
    "in_review": "In review",
    "disputed": "Disputed",
    "confirmed": "Confirmed",
    "overruled": "Overruled",
}


def page(request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
    ctx = {"status_labels": STATUS_LABELS, **context}
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def safe_next(target: str | None) -> str:
    """Where to go after signing in or from a grading's back link: a review page, never another site."""
    if target and target.startswith("/review/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review/queue"


def error_page(request: Request, reviewer: Reviewer, title: str, message: str, status: int) -> HTMLResponse:
    context = {"reviewer": reviewer, "csrf": reviewer.csrf, "title": title, "message": message}
    return page(request, "review_error.html", context, status)
