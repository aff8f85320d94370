#!/usr/bin/env bash
# Check the Dockerfile's entrypoint without Docker (issue 20): what the image would run, on what the image
# would hold, here. Base images cannot be pulled on every machine, so instead:
#
#   1. a fresh Python 3.11 virtualenv with only the serve extra, installed from the checkout not editable
#      (like the Dockerfile's build stage: pip install -c constraints.txt '.[serve]');
#   2. the bundled models copied to a folder of their own, REFURBGRADE_MODEL_PATH and REFURBGRADE_DATA_DIR
#      as the Dockerfile's ENV sets them (under a temporary folder);
#   3. the Dockerfile's CMD, read from the Dockerfile itself, run from an unrelated folder (so nothing of the
#      checkout is importable), with the port it exposes;
#   4. /readyz polled until it answers 200, then the Dockerfile's HEALTHCHECK command run as written.
#
# Usage: scripts/check_image_entrypoint.sh [VENV]   (default: a new folder under $TMPDIR; kept on success
# when given, so a second run reinstalls nothing). Exit 0 when the health check passes. About a minute
# with a warm pip cache (the serve extra is ~700 MB installed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${PYTHON:-python3.11}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/refurbgrade-image.XXXXXX")"
VENV="${1:-$WORK/venv}"
PORT="${REFURBGRADE_CHECK_PORT:-18000}"
log() { echo "check_image_entrypoint: $*" >&2; }
cleanup() {
    if [[ -n "${SERVER_PID:-}" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK/data" "$WORK/models"
}
trap cleanup EXIT

# The exact CMD and HEALTHCHECK of the Dockerfile (JSON exec form), as argument lists.
read_exec_form() {  # $1: CMD or HEALTHCHECK
    "$PY" - "$1" <<'EOF'
import json, re, sys
text = open("Dockerfile").read().replace("\\\n", " ")
kind = sys.argv[1]
line = [l for l in text.splitlines() if l.startswith(kind + " ")][-1]
form = line[line.index("[") :] if kind == "CMD" else line[line.index("CMD") + 3 :].strip()
print("\0".join(json.loads(form)), end="")
EOF
}
mapfile -d '' CMD < <(read_exec_form CMD)
mapfile -d '' HEALTH < <(read_exec_form HEALTHCHECK)
MODEL_DIR_IN_IMAGE="$(sed -n 's/.*REFURBGRADE_MODEL_PATH=\([^ ]*\).*/\1/p' Dockerfile | head -n 1)"
log "CMD: ${CMD[*]}"
log "HEALTHCHECK: ${HEALTH[*]}"

if [[ ! -x "$VENV/bin/refurbgrade" ]]; then
    log "installing the serve extra into $VENV (not editable)"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt "$ROOT[serve]" >&2
fi
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    log "torch is installed in $VENV: the serve extra must not need it"; exit 1
fi

# The models as the Dockerfile copies them: the same file names, in a folder outside the checkout.
mkdir -p "$WORK/models" "$WORK/data"
cp models/default.onnx models/default.int8.onnx models/default.fine.onnx "$WORK/models/"
export REFURBGRADE_MODEL_PATH="$WORK/models/$(basename "$MODEL_DIR_IN_IMAGE")"
export REFURBGRADE_DATA_DIR="$WORK/data"
unset REFURBGRADE_DATABASE_URL REFURBGRADE_BLOB_URL OTEL_EXPORTER_OTLP_ENDPOINT || true
export PATH="$VENV/bin:$PATH"

# Run the CMD from the data folder (the image's WORKDIR), on a free port: the CMD's --port replaced.
ARGS=()
for ((i = 0; i < ${#CMD[@]}; i++)); do
    if [[ "${CMD[$i]}" == "--port" ]]; then ARGS+=("--port" "$PORT"); i=$((i + 1)); else ARGS+=("${CMD[$i]}"); fi
done
log "running ${ARGS[*]} in $REFURBGRADE_DATA_DIR"
(cd "$REFURBGRADE_DATA_DIR" && exec "${ARGS[@]}") >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 120); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server exited:"; cat "$WORK/server.log" >&2; exit 1
    fi
    code="$(python3 -c "import urllib.request as u
try: print(u.urlopen('http://127.0.0.1:$PORT/readyz', timeout=2).status)
except Exception as e: print(getattr(e, 'code', 0))" 2>/dev/null || true)"
    [[ "$code" == 200 ]] && break
    sleep 1
done
[[ "$code" == 200 ]] || { log "/readyz never answered 200 (last: $code)"; cat "$WORK/server.log" >&2; exit 1; }
log "/readyz: 200"

# The HEALTHCHECK as written, its port the one we serve on.
HC=()
for a in "${HEALTH[@]}"; do HC+=("${a//127.0.0.1:8000/127.0.0.1:$PORT}"); done
(cd "$REFURBGRADE_DATA_DIR" && "${HC[@]}") || { log "the HEALTHCHECK command failed"; exit 1; }
log "HEALTHCHECK: passed"
grep -q '"message": *"serving' "$WORK/server.log" && log "start-up line: $(grep -m1 '"message": *"serving' "$WORK/server.log" | cut -c1-200)"
echo ok
