"""refurbgrade.client against a live `refurbgrade serve` (tiny model): grade, get, list, dispute,
wait_for_review, grade_many over a folder and a CSV; retries that never grade twice; no heavy imports."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from refurbgrade.client import ApiError, Client, Device, devices_from_csv
from serving.current import GradingCurrentOut
from serving.schemas import GradingOut
from tests.serving.conftest import encode
from tests.serving.test_crash_and_cli import CLI, ROOT, _env, _free_port, _start
from tests.serving.tiny_model import device_photo


@pytest.fixture(scope="module")
def live(tmp_path_factory, model_path):
    """A running server and keys: (base_url, refurbisher key, auditor key, env)."""
    data = tmp_path_factory.mktemp("client-data")
    env = _env(data, model_path)

    def key(*args: str) -> str:
        return subprocess.run(
            [*CLI, "keys", "create", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    refurbisher = key("--role", "refurbisher", "--tenant", "acme")
    auditor = key("--role", "auditor")
    port = _free_port()
    proc = _start(env, port)
    try:
        yield f"http://127.0.0.1:{port}", refurbisher, auditor, env
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("client-photos")
    out = {}
    for name, scratch in (("front.jpg", True), ("back.jpg", False), ("clean.jpg", False)):
        (d / name).write_bytes(encode(device_photo(scratch=scratch)))
        out[name] = d / name
    return out


def _count(base: str, key: str, ref: str) -> int:
    with Client(base, key) as c:
        return c.list(external_ref=ref).total


def test_grade_get_list_and_dispute(live, photos):
    base, key, _, _ = live
    with Client(base, key) as c:
        g = c.grade(
            [photos["front.jpg"], photos["back.jpg"]],
            device_model="iPhone 13",
            external_ref="SKU-1",
            views=["front", "back"],
        )
        assert isinstance(g, GradingOut) and g.device_model == "iPhone 13" and g.scale == "mm"
        assert set(g.grades) == {"backmarket", "ctia", "r2"} and len(g.photos) == 2
        got = c.get(g.id)
        assert isinstance(got, GradingCurrentOut) and got.review is not None
        assert got.original == g.grades and got.grades == g.grades  # nobody reviewed it
        page = c.list(external_ref="SKU-1")
        assert page.total == 1 and page.items[0].id == g.id
        d = c.dispute(g.id, "the scratch is a reflection", photos=[photos["clean.jpg"]])
        assert d.status == "open" and d.photos[0].filename == "clean.jpg"
        assert c.get(g.id).review.status == "disputed"
        assert [s.name for s in c.standards()] == ["backmarket", "ctia", "r2"]
        assert c.devices("iphone 13 mini").items[0].length_mm == 131.5
        assert "Pixel 8" in c.devices("pixle 8").suggestions

        with pytest.raises(ApiError) as exc:
            c.grade([photos["front.jpg"]], device_model="iPhone 1300")
        assert exc.value.status == 422 and exc.value.code == "unknown_device_model"
        assert exc.value.response.json()["suggestions"][0] == "iPhone 13"
        with pytest.raises(ApiError) as exc:
            c.get("0" * 36)
        assert exc.value.status == 404
        with pytest.raises(ApiError) as exc:
            c.grade([photos["front.jpg"].parent / "missing.jpg"])
        assert exc.value.code == "file_not_found" and "missing.jpg" in exc.value.message
    with Client(base, "rg_nope_nope") as c, pytest.raises(ApiError) as exc:
        c.list()
    assert exc.value.status == 401


def test_a_lost_answer_is_retried_with_the_same_key_and_grades_once(live, photos):
    """The first POST reaches the server and grades; its answer is lost (read timeout). The retry sends
    the same Idempotency-Key and gets the first grading back: one grading, not two."""
    base, key, _, _ = live
    real = httpx.HTTPTransport()
    sent: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.method == "POST" and len(sent) == 1:
            real.handle_request(request).read()  # graded and stored
            raise httpx.ReadTimeout("answer lost", request=request)
        if request.method == "POST" and len(sent) == 2:
            return httpx.Response(
                503, headers={"Retry-After": "0"}, json={"code": "queue_full", "message": "x"}
            )
        return real.handle_request(request)

    waits: list[float] = []
    with Client(base, key, transport=httpx.MockTransport(flaky), sleep=waits.append) as c:
        g = c.grade([photos["front.jpg"]], external_ref="SKU-retry")
    assert len(sent) == 3 and len(waits) == 2 and waits[1] == 0.0  # Retry-After honoured
    keys = {r.headers["Idempotency-Key"] for r in sent}
    assert len(keys) == 1 and next(iter(keys)).startswith("rg-")
    assert _count(base, key, "SKU-retry") == 1
    with Client(base, key) as c:
        assert c.get(g.id).id == g.id


def test_retries_give_up_with_the_servers_error(live):
    base, key, _, _ = live
    calls = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            503, headers={"Retry-After": "1"}, json={"code": "overloaded", "message": "busy"}
        )

    client = Client(base, key, retries=2, transport=httpx.MockTransport(busy), sleep=lambda s: None)
    with client as c, pytest.raises(ApiError) as exc:
        c.get("x")
    assert exc.value.status == 503 and exc.value.code == "overloaded" and len(calls) == 3

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    calls.clear()
    client = Client(base, key, retries=1, transport=httpx.MockTransport(refused), sleep=lambda s: None)
    with client as c, pytest.raises(ApiError) as exc:
        c.dispute("x", "a reason")  # not idempotent, but a refused connection never arrived
    assert exc.value.code == "network_error" and len(calls) == 2


def test_wait_for_review_returns_the_grade_that_stands(live, photos):
    base, key, _, env = live
    with Client(base, key) as c:
        g = c.grade([photos["front.jpg"]], external_ref="SKU-wait")
        c.dispute(g.id, "the scratch is a reflection")
        with pytest.raises(ApiError) as exc:
            c.wait_for_review(g.id, timeout=0.2, poll=0.05)
        assert exc.value.code == "review_timeout" and "disputed" in exc.value.message

        ctia = g.grades["ctia"].grade
        new = "B" if ctia != "B" else "C"
        timer = threading.Timer(0.5, _overrule, args=(env, g.id, {"ctia": new}))
        timer.start()
        try:
            done = c.wait_for_review(g.id, timeout=30, poll=0.1)
        finally:
            timer.join()
    assert done.review.status == "overruled"
    assert done.grades["ctia"].grade == new and done.grades["ctia"].source == "review"
    assert done.original["ctia"].grade == ctia and done.original["ctia"].source == "model"
    assert done.grades["backmarket"] == g.grades["backmarket"]


def _overrule(env: dict, grading_id: str, grades: dict[str, str]) -> None:
    """A reviewer's verdict, written as the review pages write it (in the server's database)."""
    from serving.db import ApiKey, Grading, make_engine, session_factory
    from serving.review import events

    engine = make_engine(f"sqlite:///{Path(env['REFURBGRADE_DATA_DIR']) / 'refurbgrade.db'}")
    try:
        with session_factory(engine)() as s:
            row = s.get(Grading, grading_id)
            auditor = s.query(ApiKey).filter_by(role="auditor").first().id
            events.overrule(s, row, auditor, grades, "dent on the frame", None)
    finally:
        engine.dispose()


def test_grade_many_from_a_folder_and_a_csv(live, photos, tmp_path, capsys):
    base, key, _, _ = live
    folder = tmp_path / "devices"
    (folder / "dev-a").mkdir(parents=True)
    (folder / "dev-a" / "front.jpg").write_bytes(photos["front.jpg"].read_bytes())
    (folder / "dev-a" / "back.jpg").write_bytes(photos["back.jpg"].read_bytes())
    (folder / "dev-a" / "notes.txt").write_text("not a photo: ignored")
    (folder / "loose.jpg").write_bytes(photos["clean.jpg"].read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a photo")
    seen = []
    with Client(base, key) as c:
        results = c.grade_many(folder, concurrency=2, device_model="iPhone 13", on_result=seen.append)
        assert [r.device.external_ref for r in results] == ["broken", "dev-a", "loose"]
        assert len(seen) == 3 and "grading" in capsys.readouterr().err  # the progress bar, on stderr
        broken, dev_a, loose = results
        assert broken.outcome == "failed" and broken.error.code == "not_an_image"
        assert len(dev_a.grading.photos) == 2 and dev_a.grading.external_ref == "dev-a"
        assert loose.grading.device_model == "iPhone 13" and loose.outcome in {"graded", "needs_review"}
        # a re-run replays (content-derived Idempotency-Key): no second grading
        again = c.grade_many(folder, concurrency=2, device_model="iPhone 13", progress=False)
        assert [r.grading.id for r in again[1:]] == [dev_a.grading.id, loose.grading.id]
    assert _count(base, key, "dev-a") == 1

    sheet = tmp_path / "devices.csv"
    sheet.write_text(
        "external_ref,device_model,photos,views\n"
        "csv-1,iPhone 13,devices/dev-a/front.jpg;devices/dev-a/back.jpg,front;back\n"
        "csv-2,,devices/missing.jpg,\n"
    )
    assert devices_from_csv(sheet)[0].views == ["front", "back"]
    with Client(base, key) as c:
        one, two = c.grade_many(sheet, progress=False)
        assert one.grading.device_model == "iPhone 13" and [p.view for p in one.grading.photos] == [
            "front",
            "back",
        ]
        assert two.error.code == "file_not_found" and "missing.jpg" in two.error.message
        assert c.grade_many([Device([photos["clean.jpg"]], external_ref="d")], progress=False)[0].grading
        with pytest.raises(ApiError) as exc:
            c.grade_many(tmp_path / "nothing-here")
        assert exc.value.code == "file_not_found"
    (tmp_path / "bad.csv").write_text("ref,files\nx,y\n")
    with pytest.raises(ApiError) as exc:
        devices_from_csv(tmp_path / "bad.csv")
    assert exc.value.code == "invalid_csv" and "bad.csv" in exc.value.message


def test_the_client_imports_no_server_internals():
    script = (
        "import sys, refurbgrade.client\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'training', 'fastapi', 'starlette', 'onnxruntime', 'uvicorn', 'cv2', 'skimage',"
        " 'sqlalchemy', 'alembic'})\n"
        "print('forbidden:', bad)"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "forbidden: []" in r.stdout, r.stdout + r.stderr


def _photo_dir(tmp_path: Path, photos: dict[str, Path]) -> Path:
    d = tmp_path / "in"
    (d / "dev").mkdir(parents=True)
    (d / "dev" / "front.jpg").write_bytes(photos["front.jpg"].read_bytes())
    (d / "dev" / "back.jpg").write_bytes(photos["back.jpg"].read_bytes())
    (d / "broken.jpg").write_bytes(b"not a photo")
    return d


def test_cli_grades_through_a_server(live, photos, tmp_path):
    base, key, _, env = live
    d = _photo_dir(tmp_path, photos)
    missing = tmp_path / "missing.jpg"
    args = [*CLI, "grade", str(d), str(missing), "--server", base, "--device-per-folder"]
    r = subprocess.run(
        [*args, "--device-model", "iPhone 13"],
        cwd=ROOT,
        env={**env, "REFURBGRADE_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr  # something was skipped
    (line,) = [GradingOut.model_validate_json(x) for x in r.stdout.splitlines()]
    assert line.device_model == "iPhone 13" and len(line.photos) == 2
    assert r.stderr.count("missing.jpg") == 1 and f"skipped {missing}: no such file or folder" in r.stderr
    assert f"skipped {d / 'broken.jpg'}: " in r.stderr and "(not_an_image)" in r.stderr
    assert "needs review" in r.stderr and "skipped (files)" in r.stderr  # the summary table
    # The device's row, named by its folder, with the service's grade in the first standard's column.
    g = line.grades["backmarket"]
    assert "devices" in r.stderr and "│ dev " in r.stderr
    assert f"{g.grade} ({g.probabilities[g.grade]:.2f})" in r.stderr
    # And why a person should look (the tiny model is never sure): the service's first review reason.
    assert line.needs_review
    flat = " ".join(r.stderr.replace("│", " ").split())
    assert f"review: {' '.join(line.review_reasons[0].split())[:40]}" in flat

    r = subprocess.run(
        [*args, "--api-key", "rg_nope_nope"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 2 and ("invalid_api_key" in r.stderr or "unauthorized" in r.stderr)
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "--api-key" in r.stderr
    r = subprocess.run(
        [*args, "--api-key", key, "--device-model", "iPhone 1300"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "did you mean iPhone 13" in r.stderr


def test_cli_offline_reports_a_missing_file_once_and_prints_a_summary(live, photos, tmp_path, model_path):
    _, _, _, env = live
    d = _photo_dir(tmp_path, photos)
    missing = tmp_path / "missing.jpg"
    r = subprocess.run(
        [
            *CLI,
            "grade",
            str(d),
            str(missing),
            "--model",
            str(model_path),
            "--jsonl",
            str(tmp_path / "o.jsonl"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.count("missing.jpg") == 1 and "broken.jpg" in r.stderr
    assert "needs review" in r.stderr and "ungradable" in r.stderr
    row = [line for line in r.stderr.splitlines() if line.count("│") >= 4][-1]
    assert [c.strip() for c in row.strip("│ ").split("│")][-1] == "2"  # skipped: broken.jpg, missing.jpg

    r = subprocess.run(
        [*CLI, "grade", str(d), "--standard", "backmarkt"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 2 and "did you mean backmarket?" in r.stderr


def test_impact_as_json_and_csv(live, photos):
    base, key, auditor, _ = live
    with Client(base, key) as c:
        g = c.grade([photos["front.jpg"]], device_model="iPhone 13", external_ref="SKU-impact")
        got = c.impact()
        assert set(got) == {"from", "to", "tenants", "method"} and got["from"] is None
        (acme,) = got["tenants"]
        assert acme["tenant"] == "acme" and acme["gradings"] >= 1
        assert acme["listed"] + acme["not_listed"] + acme["without_impact"] == acme["gradings"]
        since = c.get(g.id).created_at
        one = c.impact(from_=since, to=since + timedelta(seconds=1))
        assert one["tenants"][0]["gradings"] == 1 and one["from"].startswith(
            since.strftime("%Y-%m-%dT%H:%M:%S")
        )
        old = c.impact(from_="2000-01-01", to="2000-02-01")
        assert all(t["gradings"] == 0 for t in old["tenants"])
        text = c.impact(from_=since, to=since + timedelta(seconds=1), format="csv")
        assert isinstance(text, str)
        header, row = text.splitlines()
        assert header.startswith("tenant,") and row.startswith("acme,")
        with pytest.raises(ApiError) as exc:
            c.impact(from_="2026-02-01", to="2026-01-01")
        assert exc.value.status == 422 and exc.value.code == "invalid_period"
        with pytest.raises(ApiError) as exc:
            c.impact(format="xml")
        assert exc.value.code == "invalid_request" and exc.value.status == 0
    with Client(base, auditor) as c:  # auditors see every tenant, or one
        assert [t["tenant"] for t in c.impact(tenant="acme")["tenants"]] == ["acme"]
