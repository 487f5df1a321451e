#!/usr/bin/env bash
# `make gpu-check`: bench/gpu_check.py with what it needs. On the GPU machine (no network, no .venv)
# the wheels the image lacks come from .gpu/whl (`make gpu-kit`), installed into a folder of their
# own and put first on PYTHONPATH; here the project venv has them all.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if ! "$PY" -c "import trl, datasets, dvclive, deepspeed, accelerate" 2> /dev/null; then
  if ! ls .gpu/whl/*.whl > /dev/null 2>&1; then
    echo "$PY lacks trl/datasets/dvclive/deepspeed and there is no .gpu/whl: run 'make gpu-kit' where" \
         "'make repro' ran and carry .gpu here (README, Check a GPU)" >&2
    exit 2
  fi
  SITE=${GPU_SITE:-/tmp/cgd-gpu-site}
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" bench/gpu_check.py "$@"
