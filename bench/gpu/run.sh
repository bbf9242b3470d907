#!/usr/bin/env bash
# The GPU check: one JSON of sampling, training and latency figures (see bench/gpu/check.py and docs/gpu.md).
#
#   bash bench/gpu/run.sh            # on a GPU machine: about 7 minutes, JSON in $OUT or bench/results/
#   bash bench/gpu/run.sh --dry      # on CPU with tiny models, in seconds (what CI runs)
#
# Needs only Python with torch and transformers: no Django, database, network or project venv.
# GPU_CHECK_PYTHON picks the interpreter (default: the project's .venv if there is one, else python3).
# The whole run is killed GPU_CHECK_GRACE_S (default 40) seconds after its budget (GPU_CHECK_BUDGET_S,
# default 420): the JSON, rewritten after every section, then holds the sections that finished.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${GPU_CHECK_PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
budget="${GPU_CHECK_BUDGET_S:-420}"
limit=$(( ${budget%.*} + ${GPU_CHECK_GRACE_S:-40} ))

cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout --signal=TERM --kill-after=10 "$limit" "$python" -m bench.gpu.check "$@"
