"""The API documentation explains itself: a valid OpenAPI schema, every field of every answer described
(enums listed), an example answer and the error codes of every route, no internal wording; /docs and
/redoc load their scripts from the service itself, so they work without internet."""

from __future__ import annotations

import json
import re

import pytest

from serving.apidocs import ERROR_CODES

# Routes documented by their own work as it lands: checked once they leave this list.
NOT_YET: tuple[str, ...] = ()


@pytest.fixture(scope="module")
def app():
    from serving.app import create_app

    return create_app()  # no lifespan: the schema and the docs pages need no model


@pytest.fixture(scope="module")
def spec(app) -> dict:
    return app.openapi()


def test_the_schema_passes_the_openapi_linter(spec):
    from openapi_spec_validator import validate

    validate(spec)  # raises with the first problem


def _operations(spec: dict):
    for path, ops in spec["paths"].items():
        if path.startswith(NOT_YET):
            continue
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def _refs(node, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _answer_schemas(spec: dict) -> set[str]:
    """Every schema an answer (success or error) of a route can contain, transitively."""
    names: set[str] = set()
    for _where, op in _operations(spec):
        _refs(op.get("responses", {}), names)
    schemas, todo = spec["components"]["schemas"], list(names)
    while todo:
        found: set[str] = set()
        _refs(schemas[todo.pop()], found)
        todo += sorted(found - names)
        names |= found
    return names


def test_every_field_of_every_answer_is_described(spec):
    schemas = spec["components"]["schemas"]
    answers = _answer_schemas(spec)
    assert {"GradingOut", "GradingCurrentOut", "DefectOut", "PhotoOut", "ErrorOut", "StandardOut"} <= answers
    missing = [
        f"{name}.{field}"
        for name in sorted(answers)
        for field, prop in schemas[name].get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []


def test_enumerated_fields_list_their_values(spec):
    props = spec["components"]["schemas"]
    assert props["DefectOut"]["properties"]["type"]["enum"] == [
        "scratch",
        "crack",
        "chip",
        "dent",
        "stain",
        "smudge",
    ]
    assert props["DefectOut"]["properties"]["zone"]["enum"] == ["screen", "body", "frame", "camera"]
    assert "no_device" in props["PhotoOut"]["properties"]["quality"]["enum"]
    assert props["PhotoOut"]["properties"]["view"]["enum"][:2] == ["front", "back"]
    assert set(props["GradingOut"]["properties"]["device_kind"]["enum"]) == {"phone", "tablet", "laptop"}
    statuses = props["ReviewOut"]["properties"]["status"]["enum"]
    assert {"needs_review", "confirmed", "overruled", "disputed"} <= set(statuses)


def test_defects_carry_contrast_and_visibility_and_limits_their_distance(spec):
    props = spec["components"]["schemas"]
    defect = props["DefectOut"]["properties"]
    # a line's measured contrast, and the visibility derived from it (read-only: never sent in)
    assert {"contrast", "visibility"} <= set(defect) and defect["visibility"]["readOnly"] is True
    assert set(props["VisibilityOut"]["properties"]) == {
        "index_at_20cm",
        "index_at_50cm",
        "visible_at_20cm",
        "visible_at_50cm",
        "visible_up_to_cm",
    }
    assert "invisible_at_cm" in props["LimitOut"]["properties"]


def _fits(spec: dict, schema: dict, value) -> None:
    from jsonschema import Draft202012Validator

    root = {**schema, "components": spec["components"]}  # so "#/components/schemas/..." resolves
    Draft202012Validator(root).validate(value)


def test_every_route_shows_an_example_answer_that_fits_its_schema(spec):
    for where, op in _operations(spec):
        ok = next(s for s in op["responses"] if s.startswith("2"))
        if ok == "204":
            continue
        content = op["responses"][ok].get("content", {})
        if "application/json" not in content:  # a photo, a PNG, a zip, Prometheus text: described
            assert op["responses"][ok]["description"] not in ("", "Successful Response"), where
            continue
        example = content["application/json"].get("example")
        assert example is not None, f"{where}: no example answer"
        _fits(spec, content["application/json"]["schema"], example)


def test_every_route_lists_its_error_codes_with_examples(spec):
    codes_seen = set()
    for where, op in _operations(spec):
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        if where in ("GET /livez", "GET /readyz"):
            continue
        assert errors, f"{where}: no error answers documented"
        for status, r in errors.items():
            examples = r["content"]["application/json"].get("examples")
            assert examples, f"{where} {status}: no example per code"
            for code, ex in examples.items():
                assert ex["value"]["code"] == code and f"`{code}`" in r["description"], (where, code)
                _fits(spec, r["content"]["application/json"]["schema"], ex["value"])
                codes_seen.add(code)
        if op.get("security"):  # needs an API key
            assert "unauthorized" in errors["401"]["content"]["application/json"]["examples"], where
    grading = spec["paths"]["/v1/gradings"]["post"]["responses"]
    assert {"408", "409", "413", "415", "422", "503"} <= set(grading)
    assert "unknown_device_model" in grading["422"]["content"]["application/json"]["examples"]
    assert "photo_not_found" in json.dumps(spec["paths"]["/v1/gradings/{grading_id}/photos/{n}"])
    assert codes_seen >= {c for c in ERROR_CODES if c != "unknown_standard_name"}


def test_no_internal_wording_in_the_schema(spec):
    text = json.dumps(spec)
    assert not re.search(r"\bissues?\b|\(issue|TODO|XXX", text, re.I), re.findall(r".{60}issue.{20}", text)


def test_photos_are_counted_the_same_way_everywhere_in_the_docs(spec):
    photo = spec["components"]["schemas"]["PhotoOut"]["properties"]["index"]["description"]
    assert "from 0" in photo and "photo 1" in photo
    op = spec["paths"]["/v1/gradings/{grading_id}/photos/{n}"]["get"]
    assert "photo 1" in op["description"]
    assert "photo 1" in spec["info"]["description"]


def test_docs_pages_load_their_files_from_the_service(app):
    from fastapi.testclient import TestClient

    c = TestClient(app)
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = c.get(page)
        assert html.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert f"/docs/assets/{asset}" in urls and not [u for u in urls if u.startswith("http")], urls
        assert "fonts.googleapis" not in html.text
    for name, ctype in (
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ):
        r = c.get(f"/docs/assets/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), name
        assert len(r.content) > (100 if name == "favicon.svg" else 100_000), name
    assert c.get("/docs/assets/..%2Fcore.py").status_code == 404
    assert c.get("/docs/assets/core.py").status_code == 404
    assert c.get("/openapi.json").status_code == 200
