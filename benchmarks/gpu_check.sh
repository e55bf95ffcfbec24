#!/usr/bin/env bash
# The prepared GPU check of issue 14: ONE table in about 8 minutes on one GPU.
#   bash benchmarks/gpu_check.sh             # on a GPU box (cuda:0); --device cuda:N to choose
#   bash benchmarks/gpu_check.sh --dry-run   # tiny sizes on CPU (run by the test suite)
# Python: $PYTHON, else .venv/bin/python when present, else python3. Hard limit of a full run:
# 9 minutes (a dry run has none: on a loaded CI machine its time says nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
case " $* " in
  *" --dry-run "*) exec "$PY" benchmarks/gpu_check.py "$@" ;;
  *) exec timeout 540 "$PY" benchmarks/gpu_check.py "$@" ;;
esac
