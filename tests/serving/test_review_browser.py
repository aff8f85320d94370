"""The review pages in a real browser: headless Chromium (Debian's package) driven by Playwright.

The app runs under uvicorn in a thread on 127.0.0.1 and a free port. One walk through a reviewer's day:
sign in, the queue, a grading, toggle its overlay, draw a missed defect, overrule the grade with a
reason, see the event in the history, sign out; and a refurbisher's key is refused. Screenshots go to
test-artifacts/review/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "review"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: run scripts/ensure_chromium.sh (CI does)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(settings):
    import uvicorn

    from serving.app import create_app

    app = create_app(settings.model_copy(update={"review_secure_cookie": False}))
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def world(server, jpeg, clean_jpeg):
    from serving.auth import create_key

    app, base = server
    with app.state.svc.sessions() as s:
        refurbisher = create_key(s, "refurbisher", "acme", "Acme intake")[1]
        auditor = create_key(s, "auditor", None, "Dana (QA)")[1]
    auth = {"Authorization": f"Bearer {refurbisher}"}
    ids = []
    for k, (photo, model) in enumerate(
        [(jpeg, "iPhone 13"), (clean_jpeg, "Galaxy S21"), (jpeg, "iPad Air (5th generation)")]
    ):
        r = httpx.post(
            f"{base}/v1/gradings",
            files=[("photos", (f"front-{k}.jpg", photo, "image/jpeg"))],
            data={"device_model": model, "external_ref": f"SKU-{1000 + k}"},
            headers=auth,
            timeout=30,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = httpx.post(
        f"{base}/v1/gradings/{ids[0]}/disputes",
        data={"reason": "The device is mint; the red mark is a sticker."},
        files=[("photos", ("closeup.jpg", clean_jpeg, "image/jpeg"))],
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return base, refurbisher, auditor, ids


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, width: int = 1440, height: int = 900):
    """A fresh context and page, and the list every console error and page error lands in."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return ctx, page, errors


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _unlabelled_controls(page) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
              .filter(el => el.type !== 'hidden')
              .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !(el.tagName === 'BUTTON' && el.textContent.trim()))
              .map(el => el.outerHTML.slice(0, 80))"""
    )


def test_a_reviewer_overrules_a_disputed_grade_in_the_browser(world, browser):
    from playwright.sync_api import expect

    base, refurbisher, auditor, ids = world
    gid = ids[0]
    ctx, page, errors = open_page(browser)

    # Sign-in: the key field has the focus; Enter submits.
    page.goto(f"{base}/review/queue")
    expect(page).to_have_url(f"{base}/review/signin?next=%2Freview%2Fqueue")
    assert page.evaluate("document.activeElement.id") == "api_key"
    _shot(page, "01-signin")
    page.keyboard.type(auditor)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{base}/review/queue")
    page.keyboard.press("Tab")  # the first Tab reaches the skip link
    assert page.evaluate("document.activeElement.className") == "skip-link"
    cookie = next(c for c in ctx.cookies() if c["name"] == "rg_review")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/review"

    # The queue: needs-review, disputed (our dispute), recent.
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    page.get_by_role("link", name="Disputed").click()
    expect(page.get_by_role("link", name="Disputed")).to_have_attribute("aria-current", "page")
    expect(page.locator("table.queue tbody tr")).to_have_count(1)
    page.get_by_role("link", name="Recent").click()
    expect(page.locator("table.queue tbody tr")).to_have_count(3)
    assert _unlabelled_controls(page) == []
    _shot(page, "02-queue")

    # A grading's page, photos with overlay outlines.
    page.get_by_role("link", name="iPhone 13").click()
    expect(page).to_have_url(re.compile(rf"/review/gradings/{gid}\?back=/review/queue%3Fview%3Drecent$"))
    expect(page.get_by_role("heading", name="iPhone 13")).to_be_visible()
    img = page.locator("#stage-0 img")
    expect(img).to_be_visible()
    # Visible is laid out, not yet decoded: wait for the photo itself (a loaded CI machine took longer
    # than the check, and read naturalWidth 0), then check it is the stored photo at its full size.
    page.wait_for_function("document.querySelector('#stage-0 img').complete")
    assert page.evaluate("document.querySelector('#stage-0 img').naturalWidth") == 800
    outline = page.locator("#stage-0 .defect").first
    expect(outline).to_be_visible()
    assert _unlabelled_controls(page) == []
    _shot(page, "03-grading")

    # Toggle the overlay off and on again, by keyboard.
    toggle = page.get_by_label("Show defect outlines")
    toggle.focus()
    page.keyboard.press("Space")
    expect(toggle).not_to_be_checked()
    expect(outline).to_be_hidden()
    _shot(page, "04-overlay-off")
    page.keyboard.press("Space")
    expect(outline).to_be_visible()

    # Draw a missed defect: the script fills the form's box in photo pixels.
    box = page.locator("#stage-0").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.70, box["y"] + box["height"] * 0.30)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.80, box["y"] + box["height"] * 0.45, steps=5)
    page.mouse.up()
    form = page.locator('.add-form[data-photo="0"]')
    expect(form).to_be_visible()
    x0 = float(form.locator('[name="x0"]').input_value())
    x1 = float(form.locator('[name="x1"]').input_value())
    assert 540 <= x0 <= 580 and 620 <= x1 <= 660, (x0, x1)  # 800 px wide photo
    form.get_by_label("Type").select_option("dent")
    form.get_by_label("Zone").select_option("screen")
    _shot(page, "05-draw-box")
    form.get_by_role("button", name="Add defect").click()
    expect(page.get_by_role("status")).to_have_text("Missed defect added.")
    expect(page.locator("#stage-0 .defect.o-reviewer")).to_have_count(1)

    # Overrule the CTIA grade with a reason; the event shows in the history.
    select = page.get_by_label("ctia", exact=True)
    current = select.input_value()
    choice = next(
        v for v in select.locator("option").evaluate_all("os => os.map(o => o.value)") if v != current
    )
    select.select_option(choice)
    page.get_by_role("button", name="Overrule grade").click()  # empty reason: the browser refuses
    expect(page).to_have_url(f"{base}/review/gradings/{gid}?msg=defect_added#photo-0")
    page.get_by_label("Reason").fill("Hairline crack visible at an angle; see the dispute photo.")
    page.get_by_role("button", name="Overrule grade").click()
    expect(page.get_by_role("status")).to_contain_text("Grade overruled")
    history = page.locator("#history")
    first = history.locator("li.event").first
    expect(first).to_contain_text("Grade overruled")
    expect(first).to_contain_text("Dana (QA)")
    expect(first).to_contain_text("Hairline crack visible at an angle")
    expect(first).to_contain_text(f"{current}")
    expect(first).to_contain_text(choice)
    expect(page.locator(".badge-lg")).to_have_text("Overruled")
    expect(page.locator(".dispute").first).to_contain_text("Resolved: overruled")
    _shot(page, "06-overruled")
    page.set_viewport_size({"width": 1366, "height": 768})  # a small laptop: two columns still fit
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    _shot(page, "06b-overruled-1366")

    # The refurbisher sees the resolution through the API.
    r = httpx.get(f"{base}/v1/gradings/{gid}", headers={"Authorization": f"Bearer {refurbisher}"})
    review = r.json()["review"]
    assert review["status"] == "overruled" and review["grades"]["ctia"] == choice
    assert review["disputes"][0]["resolution"]["outcome"] == "overruled"

    # Sign out: back to the sign-in page, and the queue needs a new sign-in.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(f"{base}/review/queue")
    expect(page).to_have_url(f"{base}/review/signin?next=%2Freview%2Fqueue")
    assert errors == []
    ctx.close()


def test_review_pages_refuse_a_refurbisher_key_in_the_browser(world, browser):
    from playwright.sync_api import expect

    base, refurbisher, _auditor, ids = world
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    page.goto(f"{base}/review/gradings/{ids[0]}")
    page.get_by_label("API key").fill(refurbisher)
    with page.expect_response(lambda r: r.url.endswith("/review/signin")) as resp:
        page.get_by_role("button", name="Sign in").click()
    assert resp.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("belongs to a refurbisher")
    _shot(page, "07-refurbisher-refused")
    assert not [c for c in ctx.cookies() if c["name"] == "rg_review"]
    page.goto(f"{base}/review/gradings/{ids[0]}")
    expect(page.get_by_role("heading", name="Sign in to review gradings")).to_be_visible()
    ctx.close()


def _no_sideways_scroll(page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url}: {width} px wide in a {inner} px window"


@pytest.mark.parametrize("width,height", [(390, 844), (820, 1180), (1366, 768)])
def test_review_pages_fit_a_phone_a_tablet_and_a_laptop(world, browser, width, height):
    from playwright.sync_api import expect

    base, _refurbisher, auditor, ids = world
    ctx, page, errors = open_page(browser, width, height)
    size = f"{width}x{height}"
    page.goto(f"{base}/review/signin")
    page.get_by_label("API key").fill(auditor)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    page.get_by_role("link", name="Recent").click()
    expect(page.locator("table.queue tbody tr")).to_have_count(3)
    _no_sideways_scroll(page)
    _shot(page, f"10-queue-{size}")

    page.goto(f"{base}/review/gradings/{ids[0]}")
    expect(page.locator("#stage-0 img")).to_be_visible()
    _no_sideways_scroll(page)
    grades_y = page.locator("#grades").bounding_box()["y"]
    review_y = page.locator("#review").bounding_box()["y"]
    assert grades_y < review_y  # the grades come before the forms
    if width < 1000:  # one column: the grades first of all, above the photos
        assert grades_y < page.locator("#photo-0").bounding_box()["y"]
    _shot(page, f"11-grading-{size}")

    # Mark the first defect false: the page comes back at the photo, the confirmation in view.
    page.locator("#defects-0").get_by_role("button", name="Mark defect 1 as false").click()
    expect(page).to_have_url(re.compile(r"msg=defect_rejected#photo-0$"))
    flash = page.get_by_role("status")
    expect(flash).to_have_text("Defect marked as false.")
    expect(flash).to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0 or width >= 1000  # it did not jump back to the top
    _no_sideways_scroll(page)
    _shot(page, f"12-defect-false-{size}")
    expect(page.locator("#history li.event").first).to_contain_text("Defect 1 on photo 1 marked false")

    page.goto(f"{base}/review/stats")
    expect(page.get_by_role("heading", name="Model vs reviewers")).to_be_visible()
    _no_sideways_scroll(page)
    assert _unlabelled_controls(page) == []
    _shot(page, f"13-stats-{size}")
    assert errors == []
    ctx.close()


def test_a_reviewers_verdict_shows_in_the_stats_and_the_csv_in_the_browser(world, browser):
    from playwright.sync_api import expect

    base, _refurbisher, auditor, ids = world
    ctx, page, errors = open_page(browser, 1366, 768)
    page.goto(f"{base}/review/gradings/{ids[1]}")
    page.get_by_label("API key").fill(auditor)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Confirm grades").click()
    expect(page.get_by_role("status")).to_contain_text("Grades confirmed.")
    expect(page.get_by_role("status")).to_be_in_viewport()
    page.get_by_role("link", name="Model vs reviewers").click()
    expect(page.locator("#std-backmarket h2")).to_contain_text("100% kept")
    _shot(page, "14-stats-after-confirm")
    page.goto(f"{base}/review/queue?view=recent")
    with page.expect_download() as dl:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(dl.value.path()).read_text()
    assert text.startswith("grading_id,") and text.count("\n") == 4 and ids[1] in text
    assert errors == []
    ctx.close()


@pytest.mark.parametrize("page_url,ready", [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")])
def test_the_api_docs_render_without_internet(server, browser, page_url, ready):
    from playwright.sync_api import expect

    _app, base = server
    ctx, page, errors = open_page(browser, 1366, 900)
    outside: list[str] = []
    ctx.route(
        re.compile(r"^https?://(?!127\.0\.0\.1)"),
        lambda route: (outside.append((route.request.resource_type, route.request.url)), route.abort()),
    )
    page.goto(f"{base}{page_url}")
    expect(page.locator(ready).first).to_contain_text("refurbgrade")
    if page_url == "/docs":
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        page.locator("#operations-gradings-create_grading_v1_gradings_post .opblock-summary").click()
        expect(page.get_by_text("unknown_device_model").first).to_be_attached()
    _shot(page, f"20-api{page_url.replace('/', '-')}")
    # Nothing the page needs comes from outside; ReDoc's footer links its maker's logo, which stays away.
    assert [url for kind, url in outside if kind != "image"] == [] and len(outside) <= 1, outside
    assert [e for e in errors if "ERR_FAILED" not in e] == []
    ctx.close()
