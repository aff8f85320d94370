#!/usr/bin/env bash
# Rehearse scripts/device_train.sh here, as the GPU machine would run it, before spending device minutes.
#
# A lent GPU machine holds only its image's packages (scripts/gpu_image_packages.txt) and what travels
# with the call. This makes a Python that sees only those packages (linked from .venv; the wheels that
# travel, scripts/gpu_kit.py, downloaded for this Python), copies the working tree as a call would (tracked
# and untracked-not-ignored files as they are on disk), packs the real photos into it, and runs
# device_train.sh there on the CPU with a handful of synthetic photos and two short epochs. A module
# training imports that is in neither list fails here, named, in a few minutes.
#
#     bash scripts/rehearse_device_train.sh            # about 4 minutes on 2 cores
#
# KEEP=1 keeps the rehearsal folder (printed); the training output is under it in out/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV_PY=${VENV_PY:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d /tmp/rehearse_device.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
echo "rehearsal in $WORK"

# A Python with the image's packages only: a bare venv whose one .pth points at links to them.
SITE_PACKAGES=$($VENV_PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
PYVER=$($VENV_PY -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
"$VENV_PY" - "$SITE_PACKAGES" "$WORK/image" <<'PYEOF'
import sys
from pathlib import Path

sys.path.insert(0, "scripts")
from gpu_kit import image_packages, normalised

site, farm = Path(sys.argv[1]), Path(sys.argv[2])
image = image_packages()
farm.mkdir(parents=True)
for info in site.glob("*.dist-info"):
    if normalised(info.name[: -len(".dist-info")].rsplit("-", 1)[0]) not in image:
        continue
    tops = {info.name}
    record = info / "RECORD"
    for line in record.read_text().splitlines() if record.exists() else []:
        top = line.split(",")[0].split("/")[0]
        if not (top.endswith(".dist-info") or top.startswith("..") or top in ("__pycache__", "bin")):
            tops.add(top)
    for top in tops:
        if (site / top).exists() and not (farm / top).exists():
            (farm / top).symlink_to(site / top)
PYEOF
BASE_PY=$($VENV_PY -c "import sys; print(sys._base_executable)")
"$BASE_PY" -m venv --without-pip "$WORK/venv"
echo "$WORK/image" > "$("$WORK/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/image.pth"
PY=$WORK/venv/bin/python
if $PY -c "import pydantic" 2>/dev/null; then
  echo "the rehearsal's Python sees pydantic, which the image lacks: it is not isolated" >&2
  exit 2
fi

# The tree as a call sends it, with the kit: wheels for this Python, the real photos packed.
TREE=$WORK/tree
mkdir -p "$TREE"
{ git ls-files -z; git ls-files -z --others --exclude-standard; } \
  | (cd "$ROOT" && xargs -0 -I{} sh -c '[ -f "{}" ] && cp --parents "{}" "'"$TREE"'"' || true)
"$VENV_PY" scripts/gpu_kit.py --out "$TREE/.whl" --python-version "$PYVER" --no-real
(cd "$TREE" && "$VENV_PY" "$ROOT/scripts/pack_real.py" --out .real 2>&1 | tail -1)

# device_train.sh there, on the CPU, a few steps.
cd "$TREE"
mkdir -p out
OUT=$TREE/out PY=$PY SITE=$WORK/site WORKERS=2 N_TRAIN=12 N_VAL=6 BUDGET_MIN=2 \
  EXTRA_SETS="--set device=cpu --set data.samples_per_epoch=8 --set data.batch_size=4 --set data.num_workers=1 --set optim.epochs=2 $(for i in 0 1 2 3 4; do echo --set data.val.$i.limit=4; done)" \
  bash scripts/device_train.sh
test -s out/run/best.pt && test -s out/run/last.pt
echo "rehearsal passed: device_train.sh trained with the image's packages and the kit's wheels only"
