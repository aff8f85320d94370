"""The grading API end to end on the tiny model: grading, reading back, idempotency, lists, photos,
overlays, models, health and metrics — against SQLite, and PostgreSQL where marked."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.serving.conftest import Keys, encode, pg_and_sqlite, post_grading
from tests.serving.tiny_model import build_tiny_model, device_photo, tiny_card

H = Keys.h


@pg_and_sqlite
def test_grading_measures_the_scratch_and_grades_every_standard(client, keys, jpeg):
    r = post_grading(
        client,
        keys.a,
        [("front.jpg", jpeg, "image/jpeg")],
        data={"device_model": "iPhone 13", "external_ref": "SKU-1"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/gradings/{body['id']}"
    assert set(body["grades"]) == {"backmarket", "ctia", "r2"}
    assert body["device_model"] == "iPhone 13" and body["scale"] == "mm"
    assert (body["device_kind"], body["device_kind_source"]) == ("phone", "catalogue")
    photo = body["photos"][0]
    assert photo["quality"] == "usable" and photo["message"] == "usable" and photo["device_found"]
    (scratch,) = photo["defects"]
    assert scratch["type"] == "scratch" and scratch["zone"] == "screen"
    # the red bar spans 60% of the device's width (40% of 800 px), the device is 80% of 600 px = 146.7 mm
    expected = 0.6 * 0.4 * 800 / (0.8 * 600) * 146.7
    assert scratch["length_mm"] == pytest.approx(expected, rel=0.12)
    bm = body["grades"]["backmarket"]
    assert bm["grade"] == "Unlistable" or not bm["listable"] or bm["grade"] == "Fair"
    assert bm["reasons"]["Premium"] and "scratch" in bm["reasons"]["Premium"][0]
    assert sum(bm["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["model"]["version"] == "tiny-1" and body["rules_versions"]["ctia"]
    assert photo["photo_url"].endswith("/photos/0") and photo["overlay_url"].endswith("/overlays/0")

    got = client.get(f"/v1/gradings/{body['id']}", headers=H(keys.a))
    # GET answers what POST answered, plus the review state that disputes and reviews fold in (issue 6).
    assert got.status_code == 200 and got.json() == body | {
        "review": got.json()["review"],
        "original": body["grades"],
    }


def test_clean_device_gets_the_best_grade(client, keys, clean_jpeg):
    photos = [("f.jpg", clean_jpeg, "image/jpeg"), ("b.jpg", clean_jpeg, "image/jpeg")]
    body = post_grading(client, keys.a, photos, data={"views": "front,back"}).json()
    assert body["grades"]["backmarket"]["grade"] == "Premium"
    assert body["grades"]["ctia"]["grade"] == "A"
    assert body["grades"]["ctia"]["missing_views"] == []
    assert body["scale"] == "relative" and not body["needs_review"]
    assert body["photos"][0]["defects"] == []
    # No kind, and a card without a kind probe: the default phone, said to be one
    assert (body["device_kind"], body["device_kind_source"]) == ("phone", "default")


def test_photo_without_a_device_is_flagged_not_refused(client, keys):
    empty_table = encode(device_photo(device=False))
    r = post_grading(client, keys.a, [("table.jpg", empty_table, "image/jpeg")])
    assert r.status_code == 201
    body = r.json()
    assert body["photos"][0]["quality"] == "no_device"
    assert "no device" in body["photos"][0]["message"]
    assert body["needs_review"] and any(x.startswith("photo 1: ") for x in body["review_reasons"])


def test_dark_photo_gets_an_actionable_verdict(client, keys):
    dark = encode(np.full((400, 400, 3), 5, dtype=np.uint8))  # square: no grey letterbox padding
    body = post_grading(client, keys.a, [("dark.jpg", dark, "image/jpeg")]).json()
    assert body["photos"][0]["quality"] == "bad_exposure" and body["needs_review"]
    assert "retake" in body["photos"][0]["message"]


def test_several_photos_views_and_standard_options(client, keys, jpeg, clean_jpeg):
    r = post_grading(
        client,
        keys.a,
        [("f.jpg", jpeg, "image/jpeg"), ("b.png", encode(device_photo(scratch=False), "PNG"), "image/png")],
        data={"views": "front,back", "standard": "ctia", "device_kind": "phone"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert list(body["grades"]) == ["ctia"]
    assert [p["view"] for p in body["photos"]] == ["front", "back"]
    assert all(p["view_source"] == "caller" for p in body["photos"])
    assert len(body["photos"][0]["defects"]) == 1 and body["photos"][1]["defects"] == []


@pg_and_sqlite
def test_idempotency_key_returns_the_first_grading(client, keys, jpeg, clean_jpeg):
    photos = [("a.jpg", jpeg, "image/jpeg")]
    first = post_grading(client, keys.a, photos, headers={"Idempotency-Key": "k-1"})
    again = post_grading(client, keys.a, photos, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    listed = client.get("/v1/gradings", headers=H(keys.a)).json()
    assert listed["total"] == 1
    other = post_grading(
        client, keys.a, [("b.jpg", clean_jpeg, "image/jpeg")], headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    # keys are per tenant: another tenant's same key is a new grading
    b = post_grading(client, keys.b, photos, headers={"Idempotency-Key": "k-1"})
    assert b.status_code == 201 and b.json()["id"] != first.json()["id"]


def test_concurrent_retries_grade_once(client, keys, jpeg):
    photos = [("a.jpg", jpeg, "image/jpeg")]
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(
                lambda _: post_grading(client, keys.a, photos, headers={"Idempotency-Key": "same"}), range(6)
            )
        )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert client.get("/v1/gradings", headers=H(keys.a)).json()["total"] == 1


@pg_and_sqlite
def test_list_filters_and_pagination(client, keys, jpeg, clean_jpeg):
    for k in range(3):
        post_grading(client, keys.a, [("a.jpg", clean_jpeg, "image/jpeg")], data={"external_ref": f"r{k}"})
    post_grading(client, keys.a, [("s.jpg", jpeg, "image/jpeg")], data={"external_ref": "scratched"})
    post_grading(client, keys.b, [("b.jpg", jpeg, "image/jpeg")])
    page = client.get("/v1/gradings", params={"limit": 2}, headers=H(keys.a)).json()
    assert page["total"] == 4 and len(page["items"]) == 2 and page["items"][0]["external_ref"] == "scratched"
    page2 = client.get("/v1/gradings", params={"limit": 2, "offset": 2}, headers=H(keys.a)).json()
    assert {i["id"] for i in page2["items"]}.isdisjoint({i["id"] for i in page["items"]})
    only = client.get("/v1/gradings", params={"external_ref": "r1"}, headers=H(keys.a)).json()
    assert [i["external_ref"] for i in only["items"]] == ["r1"]
    premium = client.get(
        "/v1/gradings", params={"standard": "backmarket", "grade": "Premium"}, headers=H(keys.a)
    ).json()
    assert premium["total"] == 3
    assert client.get("/v1/gradings", headers=H(keys.auditor)).json()["total"] == 5
    bolt = client.get("/v1/gradings", params={"tenant": "bolt"}, headers=H(keys.auditor)).json()
    assert bolt["total"] == 1 and bolt["items"][0]["tenant"] == "bolt"
    # a refurbisher's tenant filter cannot widen its scope
    assert client.get("/v1/gradings", params={"tenant": "bolt"}, headers=H(keys.a)).json()["total"] == 4
    future = client.get("/v1/gradings", params={"created_after": "2999-01-01T00:00:00Z"}, headers=H(keys.a))
    assert future.json()["total"] == 0


def test_photos_and_overlays(client, keys, jpeg):
    body = post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")]).json()
    photo = client.get(body["photos"][0]["photo_url"], headers=H(keys.a))
    assert (
        photo.status_code == 200 and photo.content == jpeg and photo.headers["content-type"] == "image/jpeg"
    )
    ov = client.get(body["photos"][0]["overlay_url"], headers=H(keys.a))
    assert ov.status_code == 200 and ov.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(ov.content)).convert("RGB"))
    assert img.shape[:2] == (600, 800)
    # the scratch outline is drawn in the scratch colour (amber) around the red bar
    assert ((img[..., 0] > 200) & (img[..., 1] > 150) & (img[..., 2] < 60)).sum() > 100
    again = client.get(body["photos"][0]["overlay_url"], headers=H(keys.a))
    assert again.content == ov.content  # cached in the blob store
    missing = client.get(f"/v1/gradings/{body['id']}/photos/5", headers=H(keys.a))
    assert missing.status_code == 404 and missing.json()["code"] == "photo_not_found"


def test_models_list_and_activation(client, keys, jpeg, model_dir):
    models = client.get("/v1/models", headers=H(keys.a)).json()
    assert models["active"]["version"] == "tiny-1" and "tiny.onnx" in models["available"]
    build_tiny_model(model_dir / "tiny-v2.onnx", tiny_card(input_size=96, version="tiny-2"))
    (model_dir / "broken.onnx").write_bytes(b"not a model")
    bad = client.post("/v1/models/activate", json={"path": "broken.onnx"}, headers=H(keys.admin))
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_model"
    assert client.get("/v1/models", headers=H(keys.a)).json()["active"]["version"] == "tiny-1"
    assert (
        post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")]).json()["model"]["version"] == "tiny-1"
    )
    escape = client.post("/v1/models/activate", json={"path": "../../etc/passwd.onnx"}, headers=H(keys.admin))
    assert escape.status_code == 422 and escape.json()["code"] == "invalid_model_path"
    nothing = client.post("/v1/models/activate", json={"path": "nope.onnx"}, headers=H(keys.admin))
    assert nothing.status_code == 404
    ok = client.post("/v1/models/activate", json={"path": "tiny-v2.onnx"}, headers=H(keys.admin))
    assert ok.status_code == 200 and ok.json()["version"] == "tiny-2" and ok.json()["input_size"] == 96
    graded = post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")]).json()
    assert graded["model"]["version"] == "tiny-2" and len(graded["photos"][0]["defects"]) == 1


def test_a_fine_network_is_not_offered_or_activated_as_a_model(client, keys, model_dir):
    """`NAME.fine.onnx` runs beside its model (the bundled one has one): the models list leaves it out,
    and activating it alone is refused with a reason, the active model untouched."""
    fine = model_dir / "tiny.fine.onnx"
    fine.write_bytes(b"a fine network's bytes")  # written after the service loaded tiny.onnx
    try:
        models = client.get("/v1/models", headers=H(keys.a)).json()
        assert "tiny.onnx" in models["available"] and "tiny.fine.onnx" not in models["available"]
        r = client.post("/v1/models/activate", json={"path": "tiny.fine.onnx"}, headers=H(keys.admin))
        assert r.status_code == 422 and r.json()["code"] == "invalid_model_path"
        assert "served beside tiny.onnx" in r.json()["message"]
        assert client.get("/v1/models", headers=H(keys.a)).json()["active"]["version"] == "tiny-1"
    finally:
        fine.unlink()  # the folder is shared: a broken sibling would refuse tiny.onnx to the next test


def test_model_file_without_card_is_refused(client, keys, model_dir):
    import onnx

    from tests.serving.tiny_model import build_tiny_model_proto

    proto = build_tiny_model_proto()
    del proto.metadata_props[:]
    onnx.save(proto, str(model_dir / "nocard.onnx"))
    r = client.post("/v1/models/activate", json={"path": "nocard.onnx"}, headers=H(keys.admin))
    assert r.status_code == 422 and "model card" in r.json()["message"]
    assert client.get("/readyz").status_code == 200


def test_health_and_metrics(client, keys, jpeg):
    assert client.get("/livez").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")])
    text = client.get("/metrics").text
    assert 'refurbgrade_http_requests_total{method="POST",route="/v1/gradings",status="201"} 1.0' in text
    assert "refurbgrade_batch_size_count 1.0" in text
    assert "refurbgrade_queue_depth 0.0" in text
    assert 'refurbgrade_grades_total{grade="A",needs_review="false",standard="ctia"}' not in text  # scratched
    assert "refurbgrade_http_request_duration_seconds_bucket" in text


def test_readyz_fails_when_the_database_is_gone(client):
    state = client.app.state.svc
    state.engine.dispose()
    real_connect = state.engine.connect

    def broken():
        raise RuntimeError("database down")

    state.engine.connect = broken
    try:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["database"].startswith("error")
        assert client.get("/livez").status_code == 200
    finally:
        state.engine.connect = real_connect


def test_admin_creates_keys_over_http(client, keys, jpeg):
    r = client.post("/v1/keys", json={"role": "refurbisher", "tenant": "cobalt"}, headers=H(keys.admin))
    assert r.status_code == 201
    token = r.json()["token"]
    assert post_grading(client, token, [("a.jpg", jpeg, "image/jpeg")]).json()["tenant"] == "cobalt"
    no_tenant = client.post("/v1/keys", json={"role": "refurbisher"}, headers=H(keys.admin))
    assert no_tenant.status_code == 422 and no_tenant.json()["code"] == "invalid_key_request"


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/gradings", "/v1/gradings/{grading_id}", "/v1/models", "/livez", "/readyz"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200


def test_full_queue_answers_503_with_retry_after(tmp_path, model_path, model_dir, jpeg):
    """The model is held busy; the queue (4 photos) fills; the next request is refused at once."""
    import threading

    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.auth import create_key
    from serving.settings import Settings

    settings = Settings(
        model_path=model_path,
        models_dir=model_dir,
        data_dir=tmp_path / "d",
        max_queue_photos=4,
        max_photos=4,
        max_batch_size=1,
        retry_after_s=2,
    )
    with TestClient(create_app(settings)) as client:
        state = client.app.state.svc
        with state.sessions() as s:
            token = create_key(s, "refurbisher", "acme")[1]
        gate = threading.Event()
        model = state.slot.current
        session = model.session

        class Held:
            """The real session, whose runs wait for the gate."""

            def run(self, *a, **k):
                gate.wait(10)
                return session.run(*a, **k)

        object.__setattr__(model, "session", Held())  # Model is a frozen dataclass
        try:
            four = [("photos", (f"{k}.jpg", jpeg, "image/jpeg")) for k in range(4)]
            first = threading.Thread(
                target=lambda: client.post("/v1/gradings", files=four, headers=Keys.h(token))
            )
            first.start()
            deadline = time.monotonic() + 10
            while state.batcher.depth < 3 and time.monotonic() < deadline:  # 1 running, 3 waiting
                time.sleep(0.01)
            r = client.post("/v1/gradings", files=four[:2], headers=Keys.h(token))
            assert r.status_code == 503 and r.headers["retry-after"] == "2"
            assert r.json()["code"] == "queue_full"
        finally:
            gate.set()
            first.join(10)
            object.__setattr__(model, "session", session)
        assert client.post("/v1/gradings", files=four[:1], headers=Keys.h(token)).status_code == 201
        assert "refurbgrade_rejected_total" in client.get("/metrics").text


def test_too_many_gradings_in_flight_answer_503(client, keys, jpeg):
    svc = client.app.state.svc.service
    svc._inflight = svc.settings.max_inflight_requests  # as if that many were being graded
    try:
        r = client.post(
            "/v1/gradings", files=[("photos", ("a.jpg", jpeg, "image/jpeg"))], headers=Keys.h(keys.a)
        )
        assert r.status_code == 503 and r.json()["code"] == "overloaded" and r.headers["retry-after"] == "1"
    finally:
        svc._inflight = 0


def test_settings_validate_at_start_up(tmp_path, model_path):
    from pydantic import ValidationError

    from serving.settings import Settings

    with pytest.raises(ValidationError, match="does not exist"):
        Settings(model_path=tmp_path / "missing.onnx")
    with pytest.raises(ValidationError):
        Settings(model_path=model_path, max_batch_size=0)
    with pytest.raises(ValidationError, match="max_queue_photos"):
        Settings(model_path=model_path, max_queue_photos=4)


def test_unknown_routes_and_methods_answer_json_errors(client, keys):
    r = client.get("/v2/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.delete("/v1/gradings", headers=Keys.h(keys.a))
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = client.get("/v1/gradings", params={"limit": 0}, headers=Keys.h(keys.a))
    assert r.status_code == 422 and r.json()["code"] == "invalid_request" and "limit" in r.json()["message"]


def test_get_settings_reads_the_environment_once(monkeypatch, model_path, tmp_path):
    from serving.settings import get_settings

    monkeypatch.setenv("REFURBGRADE_MODEL_PATH", str(model_path))
    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("REFURBGRADE_MAX_BATCH_SIZE", "3")
    get_settings.cache_clear()
    try:
        s = get_settings()
        assert s.model_path == model_path and s.max_batch_size == 3 and get_settings() is s
        assert s.db_url == f"sqlite:///{(tmp_path / 'env-data' / 'refurbgrade.db').resolve()}"
    finally:
        get_settings.cache_clear()
