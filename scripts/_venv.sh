# Sourced by the set-up scripts: create/activate .venv and install automtl with the given extra.
# torch==2.13.0 is installed first: on these machines it is a local CPU build; elsewhere pip picks
# the right build for the platform (CUDA on a GPU box).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[${AUTOMTL_EXTRA:-test}]"
