#!/usr/bin/env bash
# The GPU check from a fresh clone, in one command (at most ~9 minutes):
#   bash benchmarks/gpu_run.sh            # extra arguments go to gpu_check.py (e.g. --only sync)
# Uses .venv/bin/python when the clone has one (make install), else $PYTHON or python3; installs
# nothing (a GPU machine may have no network). Writes benchmarks/results/gpu_<device>.txt and,
# when $OUT names a folder (the device runner's), copies it there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
"$PY" - <<'PYCHECK'
import importlib.util
import sys

need = ("torch", "torchvision", "numpy", "scipy", "cleanfid", "matplotlib", "filelock")
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_run.sh: missing packages {' '.join(missing)} (pip install -e . installs them)")
import torch

if not torch.cuda.is_available():
    sys.exit("gpu_run.sh: no CUDA device here (on a CPU: benchmarks/gpu_check.py --device cpu --quick)")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")
PYCHECK
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH=. timeout 540 "$PY" benchmarks/gpu_check.py "$@"
if [ -n "${OUT:-}" ]; then cp benchmarks/results/gpu_*.txt "$OUT"/; fi
