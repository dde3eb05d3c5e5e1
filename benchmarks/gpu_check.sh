#!/usr/bin/env bash
# The prepared GPU check (issue 21), one command on a machine with a CUDA GPU:
#     bash benchmarks/gpu_check.sh [--samples 10000] [--out docs/reports/gpu_check.json]
# It needs only this repository and a Python with torch (CUDA build) and the packages of
# requirements.txt that core imports (numpy, pandas, scipy); no network, no streamlit.
# It writes docs/reports/gpu_check.json (the README quotes it) and prints it; ~5 minutes on one H200.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_check.sh: torch sees no CUDA device here")
print("gpu_check:", torch.__version__, torch.cuda.get_device_name(0), flush=True)
PY
exec timeout 480 python3 benchmarks/gpu_check.py --device cuda "$@"
