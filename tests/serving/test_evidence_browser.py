"""The review page in a real browser (headless Chromium, as test_review_browser.py): what counted for the
grade is drawn, the candidates wait behind a toggle, and an ungradable device must be given a real grade
per standard before an overrule goes through. Screenshots go to test-artifacts/review/."""

from __future__ import annotations

import httpx

from tests.serving.conftest import encode
from tests.serving.test_evidence import model_path, no_device, scratched_with_candidate  # noqa: F401
from tests.serving.test_review_browser import (  # noqa: F401 - fixtures and marks used by name
    _shot,
    _unlabelled_controls,
    browser,
    open_page,
    pytestmark,
    server,
)


def test_counted_defects_show_candidates_wait_and_ungradable_needs_real_grades(request):
    from playwright.sync_api import expect

    from serving.auth import create_key

    app, base = request.getfixturevalue("server")  # the fixtures of test_review_browser.py
    chromium = request.getfixturevalue("browser")
    with app.state.svc.sessions() as s:
        refurbisher = create_key(s, "refurbisher", "acme", "Acme intake")[1]
        auditor = create_key(s, "auditor", None, "Dana (QA)")[1]
    auth = {"Authorization": f"Bearer {refurbisher}"}
    ids = []
    for img, views in [(scratched_with_candidate(), "front"), (no_device(), "")]:
        r = httpx.post(
            f"{base}/v1/gradings",
            files=[("photos", ("p.png", encode(img, "PNG"), "image/png"))],
            data={"views": views},
            headers=auth,
            timeout=30,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    graded, ungradable = ids

    ctx, page, errors = open_page(chromium)
    page.goto(f"{base}/review/signin?next=/review/gradings/{graded}")
    page.get_by_label("API key").fill(auditor)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()

    counted = page.locator("#stage-0 .defect.c-counted")
    candidate = page.locator("#stage-0 .defect.c-candidate")
    expect(counted).to_have_count(1)
    expect(counted).to_be_visible()
    expect(candidate).to_be_hidden()
    expect(page.locator("#defects-0 tr.c-candidate")).to_be_hidden()
    expect(page.locator("#defects-0 tr.c-counted")).to_contain_text("Counted")
    assert _unlabelled_controls(page) == []
    _shot(page, "11-counted-only")
    toggle = page.get_by_label("Show 1 not counted")
    toggle.focus()
    page.keyboard.press("Space")
    expect(candidate).to_be_visible()
    expect(page.locator("#defects-0 tr.c-candidate")).to_contain_text("Not counted")
    assert float(candidate.evaluate("el => getComputedStyle(el).opacity")) < 1.0  # dimmed
    _shot(page, "12-with-candidates")

    page.goto(f"{base}/review/gradings/{ungradable}")
    expect(page.locator(".grade-block").first).to_contain_text("No grade: no usable photo")
    page.get_by_label("Reason").fill("Seen in person at intake.")
    page.get_by_role("button", name="Overrule grade").click()  # no grade picked: the browser refuses
    expect(page).to_have_url(f"{base}/review/gradings/{ungradable}")
    for name, grade in [("backmarket", "Good"), ("ctia", "C"), ("r2", "C4")]:
        page.get_by_label(name, exact=True).select_option(grade)
    _shot(page, "13-ungradable-overrule")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440
    page.get_by_role("button", name="Overrule grade").click()
    expect(page.get_by_role("status")).to_contain_text("Grade overruled")
    expect(page.locator("#history li.event").first).to_contain_text("ungradable")
    r = httpx.get(f"{base}/v1/gradings/{ungradable}", headers=auth)
    assert r.json()["review"]["grades"] == {"backmarket": "Good", "ctia": "C", "r2": "C4"}
    assert errors == []
    ctx.close()
