"""CLI commands of the torch-free contract: browse the grading standards, grade instances from JSON.

`refurbgrade rules grade FILE.json --standard NAME` lets anyone try the rules engine without a model.
FILE.json is a list of defect instances, or an object {"device_kind": ..., "instances": [...]}; each
instance either in the full contract form or in the short form
{"type": "scratch", "zone": "body", "length_mm": 6.2, "width_mm": 0.2, "confidence": 0.9}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from model.instances import DefectInstance, mm
from model.rules import StandardError, grade, list_standards, load_standard
from model.taxonomy import DeviceKind

console = Console()
err = Console(stderr=True, soft_wrap=True)  # error lines name a file: never wrap them

standards_app = typer.Typer(help="The bundled grading standards.", no_args_is_help=True)
rules_app = typer.Typer(
    help="Apply grading rules to defect instances (no model needed).", no_args_is_help=True
)


@standards_app.command("list")
def standards_list() -> None:
    """List the bundled standards with their versions and grades."""
    table = Table("name", "title", "version", "grades (best first)")
    for name in list_standards():
        std = load_standard(name)
        table.add_row(name, std.title, std.version, " > ".join(std.grade_names))
    console.print(table)


@standards_app.command("show")
def standards_show(name: Annotated[str, typer.Argument(help="standard name or YAML path")]) -> None:
    """Show a standard's grades and limits."""
    try:
        std = load_standard(name)
    except StandardError as exc:
        import difflib

        close = difflib.get_close_matches(name.lower(), list_standards(), n=1, cutoff=0.5)
        err.print(f"[red]error:[/] {exc}" + (f"; did you mean {close[0]}?" if close else ""))
        raise typer.Exit(2) from exc
    console.print(f"[bold]{std.title}[/] ({std.standard}) version {std.version}\nsource: {std.source}\n")
    for g in std.grades:
        console.print(f"[bold]{g.name}[/]{'' if g.listable else ' (not listable)'}: {g.summary}")
        for lim in g.limits:
            bounds = {
                k: v
                for k, v in lim.model_dump().items()
                if k.startswith(("max_", "invisible_")) and v is not None
            }
            zones = ",".join(lim.zones)
            types = ",".join(lim.types)
            console.print(f"  {types} on {zones}: " + ", ".join(f"{k}={v}" for k, v in bounds.items()))


def _parse_instances(path: Path) -> tuple[list[DefectInstance], DeviceKind]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    kind = DeviceKind.PHONE
    if isinstance(data, dict):
        kind = DeviceKind(data.get("device_kind", "phone"))
        data = data.get("instances")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of instances or an object with 'instances'")
    out = []
    for n, item in enumerate(data):
        try:
            if isinstance(item, dict) and "measurement" not in item:
                short = dict(item)
                out.append(
                    mm(
                        short.pop("type"),
                        short.pop("zone"),
                        float(short.pop("length_mm")),
                        float(short.pop("width_mm", 0.1)),
                        short.pop("area_mm2", None),
                        **short,
                    )
                )
            else:
                out.append(TypeAdapter(DefectInstance).validate_python(item))
        except (KeyError, ValueError, TypeError, ValidationError) as exc:
            raise ValueError(f"{path}: instance {n}: {exc}") from exc
    return out, kind


@rules_app.command("grade")
def rules_grade(
    file: Annotated[Path, typer.Argument(help="JSON file of defect instances")],
    standard: Annotated[list[str], typer.Option("--standard", "-s", help="standard(s); default: all")] = [],  # noqa: B006
    review_threshold: Annotated[
        float | None, typer.Option(help="needs_review below this probability")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a summary")] = False,
) -> None:
    """Grade defect instances under one or more standards: grade, reasons, probabilities."""
    try:
        instances, kind = _parse_instances(file)
        names = standard or list_standards()
        results = [
            grade(instances, load_standard(s), device_kind=kind, review_threshold=review_threshold)
            for s in names
        ]
    except (ValueError, StandardError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps([r.model_dump() for r in results], indent=2))
        return
    for r in results:
        flag = " [yellow](needs review)[/]" if r.needs_review else ""
        console.print(f"[bold]{r.standard}[/] {r.standard_version}: grade [bold]{r.grade}[/]{flag}")
        for better, reasons in r.barred.items():
            for reason in reasons:
                console.print(f"  not {better}: {reason}")
        probs = ", ".join(f"{k} {v:.2f}" for k, v in r.probabilities.items())
        console.print(f"  probabilities ({r.method}): {probs}")
        for a in r.advice:
            console.print(f"  advice: {a}")


devices_app = typer.Typer(
    help="The bundled device catalogue (the names --device-model knows).", no_args_is_help=True
)


def _devices_table(specs) -> Table:
    table = Table("name", "kind", "length x width x depth (mm)", "aliases")
    for d in specs:
        table.add_row(d.name, d.kind.value, f"{d.length:g} x {d.width:g} x {d.depth:g}", ", ".join(d.aliases))
    return table


@devices_app.command("list")
def devices_list(
    kind: Annotated[str | None, typer.Option(help="phone, tablet or laptop")] = None,
) -> None:
    """List the catalogue's devices with their outer sizes."""
    from model.catalogue import devices

    kinds = [k.value for k in DeviceKind]
    if kind is not None and kind not in kinds:
        err.print(f"[red]error:[/] --kind must be one of {', '.join(kinds)}, got {kind!r}")
        raise typer.Exit(2)
    console.print(_devices_table([d for d in devices() if kind is None or d.kind.value == kind]))


@devices_app.command("search")
def devices_search(query: Annotated[str, typer.Argument(help="part of a name, e.g. 'galaxy s2'")]) -> None:
    """Devices whose name or an alias contains QUERY (case and spacing ignored); exit 1 when none does."""
    import difflib

    from model.catalogue import devices, normalise_name

    key = normalise_name(query)
    found = [d for d in devices() if any(key in normalise_name(a) for a in (d.name, *d.aliases))]
    if found:
        console.print(_devices_table(found))
        return
    names = {normalise_name(a): d.name for d in devices() for a in (d.name, *d.aliases)}
    close = list(dict.fromkeys(names[k] for k in difflib.get_close_matches(key, names, n=6, cutoff=0.6)))[:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    err.print(f"no device matches {query!r}{hint}")
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(standards_app, name="standards")
    app.add_typer(devices_app, name="devices")
    app.add_typer(rules_app, name="rules")
