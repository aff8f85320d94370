"""Bad uploads: every one gets a 4xx with a machine-readable code (or, for unusual but valid photos,
a grading), and the service stays healthy afterwards. One app serves the whole corpus, in order."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving.settings import Settings
from tests.serving.conftest import encode
from tests.serving.tiny_model import device_photo

MAX_PHOTO_BYTES = 2 * 1024 * 1024
PHOTO = device_photo(400, 300)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _jpeg() -> bytes:
    return encode(PHOTO)


def _cmyk() -> bytes:
    return _save(Image.fromarray(PHOTO).convert("CMYK"), "JPEG")


def _png16() -> bytes:
    gray = (np.asarray(Image.fromarray(PHOTO).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    img = Image.fromarray(gray)
    assert img.mode.startswith("I;16")
    return _save(img, "PNG")


def _rgba() -> bytes:
    rgba = np.dstack([PHOTO, np.full(PHOTO.shape[:2], 200, np.uint8)])
    return _save(Image.fromarray(rgba, "RGBA"), "PNG")


def _palette_transparent() -> bytes:
    img = Image.fromarray(PHOTO).convert("P", palette=Image.ADAPTIVE, colors=16)
    return _save(img, "PNG", transparency=0)


def _heic() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _save(Image.fromarray(PHOTO), "HEIF")


def _exif_rotated() -> bytes:
    img = Image.fromarray(PHOTO)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    return _save(img, "JPEG", exif=exif)


def _bomb() -> bytes:
    # 10000 x 10000 = 100 MP of one colour: a few kB of PNG, 300 MB once decoded.
    return _save(Image.new("1", (10_000, 10_000)), "PNG")


def _big_noise() -> bytes:
    rng = np.random.default_rng(0)
    return _save(Image.fromarray(rng.integers(0, 255, (1100, 1100, 3), dtype=np.uint8)), "BMP")  # ~3.6 MB


@dataclass
class Case:
    name: str
    status: int
    code: str | None = None  # expected error code (None for successes)
    files: Callable[[], list] = field(
        default_factory=lambda: lambda: [("photos", ("a.jpg", _jpeg(), "image/jpeg"))]
    )
    data: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    raw: Callable[[], tuple[bytes, str]] | None = None  # (body, content-type) sent as is


def one(name: str, content: bytes | Callable[[], bytes], ctype: str = "image/jpeg"):
    return lambda: [("photos", (name, content() if callable(content) else content, ctype))]


CASES = [
    # --- refused, with the decoder's or the service's code
    Case("empty file", 422, "empty_file", one("a.jpg", b"")),
    Case("empty file as octet-stream", 422, "empty_file", one("a.bin", b"", "application/octet-stream")),
    Case("not an image", 422, "not_an_image", one("a.jpg", b"hello, I am text, not a photo" * 10)),
    Case(
        "PDF as jpeg",
        422,
        "not_an_image",
        one("a.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
    ),
    Case("truncated JPEG", 422, "corrupt_image", one("a.jpg", lambda: _jpeg()[: len(_jpeg()) // 2])),
    Case("JPEG header only", 422, "corrupt_image", one("a.jpg", lambda: _jpeg()[:300])),
    Case("JPEG magic only", 422, None, one("a.jpg", b"\xff\xd8\xff\xe0")),
    Case(
        "PNG signature then garbage",
        422,
        None,
        one("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),
    ),
    Case("decompression bomb", 422, "too_many_pixels", one("bomb.png", _bomb, "image/png")),
    Case("oversize file", 413, "file_too_large", one("big.bmp", _big_noise, "image/bmp")),
    Case(
        "body over the request limit",
        413,
        "payload_too_large",
        lambda: [("photos", (f"{k}.bmp", _big_noise(), "image/bmp")) for k in range(8)],
    ),
    Case(
        "too many photos",
        422,
        "too_many_photos",
        lambda: [("photos", (f"{k}.jpg", _jpeg(), "image/jpeg")) for k in range(13)],
    ),
    Case("no photos field", 422, "invalid_request", lambda: [("other", ("a.jpg", _jpeg(), "image/jpeg"))]),
    Case(
        "photos sent as text field",
        422,
        "invalid_request",
        lambda: [("other", ("a.jpg", b"x", "image/jpeg"))],
        data={"photos": "not a file"},
    ),
    Case("form without files", 415, "unsupported_media_type", lambda: [], data={"device_model": "iPhone 13"}),
    Case("wrong content type", 415, "unsupported_media_type", one("a.txt", lambda: _jpeg(), "text/plain")),
    Case(
        "svg",
        415,
        "unsupported_media_type",
        one("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    ),
    Case(
        "JSON body instead of multipart",
        415,
        "unsupported_media_type",
        raw=lambda: (b'{"photos": []}', "application/json"),
    ),
    Case(
        "malformed multipart", 422, None, raw=lambda: (b"--xx\r\nbroken", "multipart/form-data; boundary=xx")
    ),
    Case(
        "GIF declared",
        415,
        "unsupported_media_type",
        one("a.gif", lambda: _save(Image.fromarray(PHOTO), "GIF"), "image/gif"),
    ),
    Case(
        "GIF undeclared",
        422,
        "unsupported_format",
        one("a.gif", lambda: _save(Image.fromarray(PHOTO), "GIF"), "application/octet-stream"),
    ),
    Case(
        "ICO",
        422,
        "unsupported_format",
        one("a.ico", lambda: _save(Image.fromarray(PHOTO), "ICO"), "application/octet-stream"),
    ),
    Case(
        "one bad photo among good ones",
        422,
        "not_an_image",
        lambda: [
            ("photos", ("a.jpg", _jpeg(), "image/jpeg")),
            ("photos", ("b.jpg", b"garbage", "image/jpeg")),
        ],
    ),
    Case("unknown device model", 422, "unknown_device_model", data={"device_model": "iPhone 99 Ultra Max"}),
    Case("invalid device kind", 422, "invalid_device_kind", data={"device_kind": "toaster"}),
    Case("unknown standard", 422, "unknown_standard", data={"standard": "ebay"}),
    Case("views count mismatch", 422, "invalid_views", data={"views": "front,back"}),
    Case("unknown view", 422, "invalid_views", data={"views": "sideways"}),
    Case("too long idempotency key", 422, "invalid_request", headers={"Idempotency-Key": "k" * 300}),
    Case("too long external_ref", 422, "invalid_request", data={"external_ref": "x" * 500}),
    # --- unusual but valid photos: these must grade
    Case("CMYK JPEG", 201, files=one("cmyk.jpg", _cmyk)),
    Case("16-bit grayscale PNG", 201, files=one("g16.png", _png16, "image/png")),
    Case("RGBA PNG", 201, files=one("rgba.png", _rgba, "image/png")),
    Case("palette PNG with transparency", 201, files=one("p.png", _palette_transparent, "image/png")),
    Case(
        "grayscale JPEG", 201, files=one("g.jpg", lambda: _save(Image.fromarray(PHOTO).convert("L"), "JPEG"))
    ),
    Case("WebP", 201, files=one("a.webp", lambda: _save(Image.fromarray(PHOTO), "WEBP"), "image/webp")),
    Case("HEIC", 201, files=one("a.heic", _heic, "image/heic")),
    Case("BMP", 201, files=one("a.bmp", lambda: _save(Image.fromarray(PHOTO), "BMP"), "image/bmp")),
    Case("TIFF", 201, files=one("a.tif", lambda: _save(Image.fromarray(PHOTO), "TIFF"), "image/tiff")),
    Case("EXIF-rotated JPEG", 201, files=one("r.jpg", _exif_rotated)),
    Case("1x1 pixel", 201, files=one("dot.png", lambda: _save(Image.new("RGB", (1, 1)), "PNG"), "image/png")),
    Case("panorama 4000x20", 201, files=one("pano.jpg", lambda: _save(Image.new("RGB", (4000, 20)), "JPEG"))),
    Case("no content type", 201, files=one("a", lambda: _jpeg(), "")),
    Case(
        "no device in the photo: flagged", 201, files=one("t.jpg", lambda: encode(device_photo(device=False)))
    ),
]


@pytest.fixture(scope="module")
def corpus_client(tmp_path_factory, model_path, model_dir):
    from serving.app import create_app
    from serving.auth import create_key

    settings = Settings(
        model_path=model_path,
        models_dir=model_dir,
        data_dir=tmp_path_factory.mktemp("bad-input"),
        max_photo_bytes=MAX_PHOTO_BYTES,
        intra_op_threads=1,
        max_batch_wait_ms=1,
    )
    with TestClient(create_app(settings)) as client:
        with client.app.state.svc.sessions() as s:
            token = create_key(s, "refurbisher", "acme")[1]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_corpus_is_large_enough():
    assert len([c for c in CASES if c.status >= 400]) >= 25
    assert len(CASES) >= 35


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_upload(corpus_client, case: Case):
    if case.raw is not None:
        body, ctype = case.raw()
        r = corpus_client.post("/v1/gradings", content=body, headers={"Content-Type": ctype})
    else:
        files = case.files()
        r = corpus_client.post("/v1/gradings", files=files or None, data=case.data, headers=case.headers)
    assert r.status_code == case.status, r.text[:300]
    body = r.json()
    if case.status >= 400:
        assert set(body) - {"suggestions"} == {"code", "message"} and body["message"]
        if case.code is not None:
            assert body["code"] == case.code, body
    else:
        assert body["grades"] and body["photos"][0]["quality"]
        if case.name == "EXIF-rotated JPEG":
            assert (body["photos"][0]["width"], body["photos"][0]["height"]) == (300, 400)
        if case.name == "no device in the photo: flagged":
            assert body["photos"][0]["quality"] == "no_device" and body["needs_review"]


def test_still_healthy_after_the_corpus(corpus_client):
    assert corpus_client.get("/livez").status_code == 200
    assert corpus_client.get("/readyz").status_code == 200
    r = corpus_client.post("/v1/gradings", files=[("photos", ("a.jpg", _jpeg(), "image/jpeg"))])
    assert r.status_code == 201 and len(r.json()["photos"][0]["defects"]) == 1
    assert corpus_client.app.state.svc.batcher.depth == 0
    assert corpus_client.app.state.svc.service._inflight == 0
