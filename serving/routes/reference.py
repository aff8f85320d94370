"""/v1/standards and /v1/devices: the grading standards (grades, limits in words, sources) and the
device catalogue a grading's `device_model` is looked up in. Any API key may read them."""

from __future__ import annotations

import difflib
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from model.rules import list_standards, load_standard
from serving import examples
from serving.apidocs import AUTH, errors, example
from serving.deps import ReaderDep
from serving.errors import ApiError
from serving.reference import DevicesOut, StandardOut, search_devices, standard_out, standards_out

router = APIRouter(tags=["reference"])


@router.get(
    "/v1/standards",
    response_model=list[StandardOut],
    responses={**example([examples.STANDARD]), **errors(*AUTH)},
    summary="The grading standards: grades best first, what each allows, where the limits come from",
)
def get_standards(_principal: ReaderDep) -> list[StandardOut]:
    return standards_out()


@router.get(
    "/v1/standards/{name}",
    response_model=StandardOut,
    responses={**example(examples.STANDARD), **errors(*AUTH, "unknown_standard_name", "invalid_request")},
    summary="One grading standard",
)
def get_standard(
    _principal: ReaderDep,
    name: Annotated[str, Path(max_length=50, description="backmarket, ctia or r2", examples=["backmarket"])],
) -> StandardOut:
    known = list_standards()
    if name not in known:
        close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ApiError(
            404,
            "unknown_standard",
            f"no standard {name!r}{hint} (known: {', '.join(known)})",
            suggestions=close,
        )
    return standard_out(load_standard(name))


@router.get(
    "/v1/devices",
    response_model=DevicesOut,
    responses={**example(examples.DEVICES), **errors(*AUTH, "invalid_request")},
    summary="The device catalogue (sizes in mm), searchable by name",
)
def get_devices(
    _principal: ReaderDep,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            description="part of a name or alias, case and spacing ignored",
            examples=["iphone 13"],
        ),
    ] = None,
    kind: Annotated[Literal["phone", "tablet", "laptop"] | None, Query(description="only this kind")] = None,
) -> DevicesOut:
    return search_devices(q, kind)
