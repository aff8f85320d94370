"""GET /v1/standards (grades, limits in words, sources), GET /v1/devices (the catalogue, `?q=`), and an
unknown device model or standard on a grading answered with the closest names."""

from __future__ import annotations

from model.catalogue import devices
from model.rules import list_standards
from model.rules.schema import Limit
from serving.reference import limit_words
from tests.serving.conftest import Keys, post_grading

H = Keys.h


def test_standards_list_grades_limits_in_words_and_sources(client, keys):
    r = client.get("/v1/standards", headers=H(keys.a))
    assert r.status_code == 200
    body = r.json()
    assert [s["name"] for s in body] == list_standards()
    bm = next(s for s in body if s["name"] == "backmarket")
    assert bm["title"] == "Back Market" and bm["version"] and "Back Market" in bm["source"]
    assert [g["name"] for g in bm["grades"]] == ["Premium", "Excellent", "Good", "Fair", "Unlistable"]
    assert [g["listable"] for g in bm["grades"]] == [True, True, True, True, False]
    words = [lim["words"] for lim in next(g for g in bm["grades"] if g["name"] == "Excellent")["limits"]]
    assert (
        "on the back and frame: at most 5 scratches, each up to 3 mm long, "
        "invisible at 20 cm (by width alone: 0.15 mm wide)"
    ) in words
    assert "on the screen and camera: no scratches, cracks, chips, dents or stains" in words
    assert next(g for g in bm["grades"] if g["name"] == "Unlistable")["limits"] == []
    assert client.get("/v1/standards/ctia", headers=H(keys.auditor)).json()["grades"][0]["name"] == "A"
    r = client.get("/v1/standards/backmarkt", headers=H(keys.a))
    assert r.status_code == 404 and r.json()["code"] == "unknown_standard"
    assert r.json()["suggestions"] == ["backmarket"] and "did you mean backmarket?" in r.json()["message"]
    assert client.get("/v1/standards").status_code == 401


def test_standards_expose_each_limits_visibility_bound(client, keys):
    body = {s["name"]: s for s in client.get("/v1/standards", headers=H(keys.a)).json()}
    bounds = {
        g["name"]: [(lim["zones"], lim["invisible_at_cm"]) for lim in g["limits"] if lim["invisible_at_cm"]]
        for g in body["backmarket"]["grades"]
    }
    assert bounds["Premium"] == bounds["Excellent"] == [(["body", "frame"], 20.0)]
    assert bounds["Good"] == [(["body", "frame"], 50.0)]
    assert bounds["Fair"] == bounds["Unlistable"] == []
    excellent = next(g for g in body["backmarket"]["grades"] if g["name"] == "Excellent")
    lim = next(lim for lim in excellent["limits"] if lim["invisible_at_cm"])
    assert lim["max_width_mm"] == 0.15 and lim["types"] == ["scratch"]  # the stand-in without a contrast
    for name in ("ctia", "r2"):
        assert all(lim["invisible_at_cm"] is None for g in body[name]["grades"] for lim in g["limits"])


def test_a_limit_bounded_only_by_visibility_reads_each_invisible():
    def words(**bounds) -> str:
        return limit_words(Limit(zones=("body",), types=("scratch",), **bounds))

    assert (
        words(max_count=5, invisible_at_cm=20) == "on the back: at most 5 scratches, each invisible at 20 cm"
    )
    assert words(invisible_at_cm=50) == "on the back: any number of scratches, each invisible at 50 cm"
    assert (
        words(max_count=5, max_width_mm=0.15, invisible_at_cm=20)
        == "on the back: at most 5 scratches, each invisible at 20 cm (by width alone: 0.15 mm wide)"
    )
    assert (
        words(max_count=5, max_length_mm=3.0, invisible_at_cm=20)
        == "on the back: at most 5 scratches, each up to 3 mm long, invisible at 20 cm"
    )
    assert (
        words(max_count=2, max_width_mm=0.15) == "on the back: at most 2 scratches, each up to 0.15 mm wide"
    )
    assert words(max_count=0) == "on the back: no scratches"


def test_devices_catalogue_and_search(client, keys):
    everything = client.get("/v1/devices", headers=H(keys.a)).json()
    assert (
        everything["total"] == len(devices()) == len(everything["items"]) and everything["catalogue_version"]
    )
    r = client.get("/v1/devices", params={"q": "iphone 13"}, headers=H(keys.a)).json()
    assert {d["name"] for d in r["items"]} == {
        "iPhone 13",
        "iPhone 13 mini",
        "iPhone 13 Pro",
        "iPhone 13 Pro Max",
    }
    i13 = next(d for d in r["items"] if d["name"] == "iPhone 13")
    assert i13 == {**i13, "kind": "phone", "length_mm": 146.7, "width_mm": 71.5, "depth_mm": 7.65}
    laptops = client.get("/v1/devices", params={"kind": "laptop"}, headers=H(keys.a)).json()
    assert laptops["total"] > 0 and {d["kind"] for d in laptops["items"]} == {"laptop"}
    none = client.get("/v1/devices", params={"q": "Pixle 8"}, headers=H(keys.a)).json()
    assert none["total"] == 0 and "Pixel 8" in none["suggestions"]
    assert client.get("/v1/devices", params={"kind": "toaster"}, headers=H(keys.a)).status_code == 422
    assert client.get("/v1/devices").status_code == 401


def test_unknown_device_model_or_standard_on_grading_lists_the_closest(client, keys, jpeg):
    photo = [("a.jpg", jpeg, "image/jpeg")]
    r = post_grading(client, keys.a, photo, data={"device_model": "iPhone 13 Pro Maxx"})
    assert r.status_code == 422 and r.json()["code"] == "unknown_device_model"
    assert r.json()["suggestions"][0] == "iPhone 13 Pro Max" and "did you mean" in r.json()["message"]
    r = post_grading(client, keys.a, photo, data={"device_model": "Galaxy S2"})
    assert r.status_code == 422 and r.json()["suggestions"] and "did you mean" in r.json()["message"]
    r = post_grading(client, keys.a, photo, data={"standard": "ctia,r3"})
    assert (
        r.status_code == 422 and r.json()["code"] == "unknown_standard" and r.json()["suggestions"] == ["r2"]
    )
    # other errors keep the plain {code, message} shape
    r = post_grading(client, keys.a, [("a.jpg", b"nope", "image/jpeg")])
    assert set(r.json()) == {"code", "message"}
