#!/usr/bin/env bash
# make gpu-check: run bench/gpu_check.py with the CUDA torch already installed on this machine.
# The project's other dependencies come from .whl/ (written by `make gpu-wheels` on a machine
# with pip access), installed without any package index into a private folder
# (GPU_CHECK_WHEELS=0 skips that, e.g. for a dry run in a venv that has them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/eyeful-gpu-site}
if [ "${GPU_CHECK_WHEELS:-1}" != 0 ] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" -m bench.gpu_check "$@"
