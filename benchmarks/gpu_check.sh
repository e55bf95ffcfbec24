#!/usr/bin/env bash
# The prepared GPU check of issue 14: ONE table in about 7 minutes on one GPU.
#   bash benchmarks/gpu_check.sh --fetch-wheels  # once, on a machine whose pip reaches PyPI:
#                                                # cp312 wheels a bare GPU image lacks -> .whl/
#   bash benchmarks/gpu_check.sh                 # on a GPU box (cuda:0); --device cuda:N to choose
#   bash benchmarks/gpu_check.sh --dry-run       # tiny sizes on CPU (run by the test suite)
# A .whl/ folder beside benchmarks/ (carried to the GPU box) is installed into a private folder
# first, for the packages this Python cannot import. Python: $PYTHON, else .venv/bin/python when
# present, else python3. The check keeps its own 420 s budget (--budget-s); the hard limit of a
# full run is 9 minutes (a dry run has none: on a loaded CI machine its time says nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# What a bare GPU image (torch, numpy, pandas, scikit-learn, pyyaml, pyarrow, typer, rich,
# psutil, tqdm present) lacks for the check: the search stack and the torch-rechub peer, at the
# versions the test suite runs.
WHEELS="optuna==5.0.0 sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 colorlog==6.12.0 greenlet==3.5.6 torch-rechub==0.9.0"
case " $* " in
  *" --fetch-wheels "*)
    mkdir -p .whl
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl $WHEELS
    ls .whl
    exit 0 ;;
esac
if ls .whl/*.whl >/dev/null 2>&1 && ! "$PY" -c "import optuna, sqlalchemy, alembic, torch_rechub" 2>/dev/null; then
  SITE="${TMPDIR:-/tmp}/automtl-gpu-check-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
case " $* " in
  *" --dry-run "*) exec "$PY" benchmarks/gpu_check.py "$@" ;;
  *) exec timeout 540 "$PY" benchmarks/gpu_check.py "$@" ;;
esac
