"""Make what a lent GPU machine needs for `scripts/device_train.sh`: the wheels it lacks (`.whl/`), the real
photos packed small with the ImageNet weights (`.real/`, `scripts/pack_real.py`), and say whether the call
fits what travels.

The GPU image (the workplace's device tool: Python 3.12, PyTorch, OpenCV, scikit-image, typer, rich ...;
its package list as last read is `scripts/gpu_image_packages.txt`) has no package registry, so whatever
training imports beyond that list travels as wheels. `TRAVELS` names them; each is downloaded at the
version this checkout's environment runs (so the GPU trains with what the tests passed on), for the
GPU's Python and platform, without its dependencies (they are in `TRAVELS` or in the image).

    .venv/bin/python scripts/gpu_kit.py [--out .whl] [--real .real] [--python-version 3.12]

What travels is capped at 64 MiB a call: the tracked files on disk plus the carried `.whl` and `.real`.
The bundled model files alone are about 35 MB of the tree and the GPU run reads none of them, so the
script says when they must be set aside for the call (`mkdir -p /tmp/aside && mv models/*.onnx
/tmp/aside/`, then `git checkout -- models` once the call returned).

Run `scripts/rehearse_device_train.sh` (which calls this for the local Python) before spending device
minutes: it trains a few steps with only the image's packages and these wheels, so a module missing from
`TRAVELS` fails here, not on the GPU.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Distributions training and `refurbgrade synth` import that the GPU image does not hold. simplejpeg
# joined on 2026-12-05 (model.preprocess decodes JPEGs with it); a run from before that list had it not.
TRAVELS = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "albumentations",
    "albucore",
    "simsimd",
    "stringzilla",
    "efficientnet-lite-pytorch",
    "simplejpeg",
)
ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64  # what one device call may send: the working tree and its carried paths
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def normalised(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name.lower())


def image_packages(listing: Path = ROOT / "scripts" / "gpu_image_packages.txt") -> set[str]:
    """The GPU image's distributions (`normalised`), from the listing's non-comment lines."""
    lines = listing.read_text().splitlines()
    return {normalised(x) for x in lines if x.strip() and not x.startswith("#")}


def pinned(names=TRAVELS) -> list[str]:
    """`name==version` for each of `names`, at the version installed here."""
    out = []
    for name in names:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            sys.exit(f"{name}: not installed in this environment (make install-train first)")
    return out


def download(out: Path, python_version: str) -> list[Path]:
    """The wheels of `TRAVELS` for CPython `python_version` on x86-64 Linux, into `out` (one version each)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):  # two versions of one package stop the whole install there
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python_version, "--implementation", "cp", "-d", str(out)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + pinned(), check=True)
    return sorted(out.glob("*.whl"))


def travelling(root: Path, carried: list[Path]) -> tuple[int, list[tuple[int, str]]]:
    """Bytes a device call sends from `root`: its tracked files on disk and the `carried` folders; and the
    tracked files, largest first."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    files = [n for n in names.decode().split("\0") if n and (root / n).is_file()]
    sizes = sorted(((root / n).stat().st_size, n) for n in files)[::-1]
    extra = sum(f.stat().st_size for c in carried for f in c.rglob("*") if f.is_file())
    return sum(b for b, _ in sizes) + extra, sizes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".whl")
    ap.add_argument("--real", type=Path, default=ROOT / ".real")
    ap.add_argument("--python-version", default="3.12", help="the GPU image's Python (3.12 as last read)")
    ap.add_argument("--no-real", action="store_true", help="the wheels only (the rehearsal packs its own)")
    args = ap.parse_args(argv)
    wheels = download(args.out, args.python_version)
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels, {size:.1f} MiB, in {args.out}:")
    for w in wheels:
        print(f"  {w.name}")
    if args.no_real:
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from pack_real import pack_all

    n = pack_all(args.real)
    print(f"packed {n / 2**20:.1f} MiB (photos and weights) into {args.real}")
    total, sizes = travelling(ROOT, [args.out, args.real])
    print(f"a device call with carry [.whl, .real] sends {total / 2**20:.1f} MiB (at most {LIMIT_MIB})")
    if total > LIMIT_MIB * 2**20:
        models = sum(b for b, n in sizes if n.startswith("models/") and n.endswith(".onnx"))
        print(
            f"  too much: set the model files aside for the call ({models / 2**20:.1f} MiB; the GPU run reads"
            " none): mkdir -p /tmp/aside && mv models/*.onnx /tmp/aside/, then git checkout -- models"
        )
        print("  largest tracked files: " + ", ".join(f"{n} {b / 2**20:.1f} MiB" for b, n in sizes[:5]))


if __name__ == "__main__":
    main()
