"""What a hostile probe found (issue 20), each hole closed: decoded-pixel budget, times UTC cannot hold,
NUL characters, a chunked body over the limit, a JPEG that claims more than it holds, unexpected errors
answered as JSON with a request id."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest
from PIL import Image

from serving.limits import PixelBudget, PixelBudgetFull
from tests.serving.conftest import encode, pg_and_sqlite, post_grading
from tests.serving.test_review_pages import sign_in


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # TestClient speaks plain http


def _grey16_png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("I;16", (w, h), 1000).save(buf, format="PNG")
    return buf.getvalue()


def test_pixel_budget_holds_and_gives_back():
    budget = PixelBudget(100)
    with budget.hold(60):
        with pytest.raises(PixelBudgetFull), budget.hold(50):
            pass
        with budget.hold(40):
            assert budget.in_use == 100
    assert budget.in_use == 0
    with budget.hold(10**9):  # one photo alone always fits: its size has its own limit
        assert budget.in_use == 100


def test_a_photo_that_does_not_fit_the_decoding_budget_is_503_with_retry_after(client, keys, jpeg):
    service = client.app.state.svc.service
    png = _grey16_png(3000, 2000)
    with service.pixels.hold(service.pixels.max_pixels - 1_000_000):  # others are decoding big photos
        r = post_grading(client, keys.a, [("big.png", png, "image/png")])
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "overloaded" and r.headers["Retry-After"] == "1"
        # a JPEG decodes at reduced scale: it reserves far less and still fits
        assert post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")]).status_code == 201
    assert service.pixels.in_use == 0
    assert post_grading(client, keys.a, [("big.png", png, "image/png")]).status_code == 201
    assert service.pixels.in_use == 0


def test_a_jpeg_claiming_more_pixels_than_its_bytes_can_hold_is_refused(client, keys):
    buf = io.BytesIO()
    Image.new("RGB", (7000, 8000), (100, 100, 100)).save(buf, format="JPEG", quality=50)
    truncated = buf.getvalue()[:887] + b"\xff\xd9"  # 889 bytes, ends like a whole JPEG
    r = post_grading(client, keys.a, [("t.jpg", truncated, "image/jpeg")])
    assert r.status_code == 422 and r.json()["code"] == "corrupt_image", r.text
    assert "truncated" in r.json()["message"]


@pytest.mark.parametrize(
    "query",
    [
        "created_after=0001-01-01T00:00:00%2B05:00",
        "created_before=9999-12-31T23:59:59-05:00",
    ],
)
def test_times_utc_cannot_hold_are_422_not_500(client, keys, query):
    for token in (keys.a, keys.auditor):
        r = client.get(f"/v1/gradings?{query}", headers=keys.h(token))
        assert r.status_code == 422 and r.json()["code"] == "invalid_period", r.text


def test_review_export_and_queue_with_extreme_times(client, keys):
    r = client.get("/v1/reviews/export?since=0001-01-01T00:00:00%2B05:00", headers=keys.h(keys.admin))
    assert r.status_code == 422 and r.json()["code"] == "invalid_period", r.text
    r = client.get(
        "/v1/reviews/export?since=2020-01-01T00:00:00Z&until=9999-12-31T23:59:59-05:00",
        headers=keys.h(keys.admin),
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_period", r.text
    sign_in(client, keys.auditor)
    r = client.get("/review/queue?date_to=9999-12-31&date_from=0001-01-01")
    assert r.status_code == 200, r.text


def test_activate_with_a_nul_in_the_path_is_422(client, keys):
    r = client.post("/v1/models/activate", json={"path": "tiny\x00.onnx"}, headers=keys.h(keys.admin))
    assert r.status_code == 422 and r.json()["code"] == "invalid_model_path", r.text


@pg_and_sqlite
def test_nul_characters_are_refused_on_every_database(client, keys, jpeg):
    r = post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")], data={"external_ref": "SKU\x004711"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_characters", r.text
    assert "external_ref" in r.json()["message"]
    r = _raw_multipart(client, keys.a, b"a\x00b.jpg", jpeg)  # httpx would escape it as %00
    assert r.status_code == 422 and r.json()["code"] == "invalid_characters", r.text
    # a NUL that reaches the database some other way (a query filter) is refused there, alike
    r = client.get("/v1/gradings", params={"external_ref": "x\x00y"}, headers=keys.h(keys.a))
    assert r.status_code == 422 and r.json()["code"] == "invalid_characters", r.text
    r = client.post("/v1/keys", json={"role": "auditor", "name": "n\x00"}, headers=keys.h(keys.admin))
    assert r.status_code == 422 and r.json()["code"] == "invalid_characters", r.text
    # and nothing was stored
    r = client.get("/v1/gradings", headers=keys.h(keys.a))
    assert r.status_code == 200 and r.json()["total"] == 0


def _raw_multipart(client, token: str, filename: bytes, data: bytes):
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="photos"; filename="'
        + filename
        + b'"\r\nContent-Type: image/jpeg\r\n\r\n'
        + data
        + b"\r\n--xyz--\r\n"
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=xyz"}
    return client.post("/v1/gradings", content=body, headers=headers)


def test_a_chunked_body_over_the_limit_is_413(settings, keys_for):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    small = settings.model_copy(update={"max_photos": 1, "max_photo_bytes": 1000})  # limit 1 MiB + 1000
    with TestClient(create_app(small)) as client:
        key = keys_for(client)
        boundary = "xyz"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()

        def chunks():  # no Content-Length: the limit can only bite while the body streams
            yield head
            for _ in range(40):
                yield b"\xff" * 65536
            yield f"\r\n--{boundary}--\r\n".encode()

        r = client.post(
            "/v1/gradings",
            content=chunks(),
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large", r.text


@pytest.fixture
def keys_for():
    def make(client) -> str:
        from serving.auth import create_key

        with client.app.state.svc.sessions() as s:
            return create_key(s, "refurbisher", "acme")[1]

    return make


def test_an_unexpected_error_is_json_with_a_request_id_and_logged(client, keys, caplog, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(client.app.state.svc.service, "get", boom)
    with caplog.at_level(logging.INFO, logger="refurbgrade.access"):
        r = client.get("/v1/gradings/abc", headers={**keys.h(keys.a), "X-Request-ID": "probe-1"})
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json()["code"] == "internal_error" and r.json()["request_id"] == "probe-1"
    assert r.headers["X-Request-ID"] == "probe-1"
    (rec,) = [x for x in caplog.records if x.name == "refurbgrade.access"]
    assert rec.levelno == logging.ERROR and rec.exc_info[0] is RuntimeError
    assert rec.fields["request_id"] == "probe-1" and rec.fields["status"] == 500
    assert rec.fields["grading_id"] == "abc" and rec.fields["tenant"] == "acme"


def test_request_ids_taken_when_sane_made_otherwise(client):
    r = client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    for bad in ("", "x" * 129, "a b", "<script>"):
        r = client.get("/livez", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"]), bad
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/livez").headers["X-Request-ID"])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_png_photos_decode_reduced_and_map_back_to_full_size(client, keys, fmt):
    from tests.serving.tiny_model import device_photo

    rgb = device_photo()
    big = np.kron(rgb, np.ones((4, 4, 1), np.uint8))  # the same photo at 4x the pixels
    r = post_grading(client, keys.a, [("big", encode(big, fmt), f"image/{fmt.lower()}")])
    assert r.status_code == 201, r.text
    photo = r.json()["photos"][0]
    assert (photo["width"], photo["height"]) == (big.shape[1], big.shape[0])
    for d in photo["defects"]:  # boxes are in the uploaded photo's pixels, not the reduced ones
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= big.shape[1] and 0 <= y0 < y1 <= big.shape[0]
