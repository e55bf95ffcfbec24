# Sourced by the set-up scripts: create/activate .venv and install automtl with the given extra.
# torch==2.13.0 is installed first: on these machines it is a local CPU build; elsewhere pip picks
# the right build for the platform (CUDA on a GPU box).
# Each step prints one progress line; pip's own output (warnings, resolver notes) goes to a log
# that is shown in full only when the step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}

_step() {  # _step "what" command...: one line while it runs, the full log if it fails
    local what=$1 log rc=0
    shift
    log=$(mktemp)
    printf '%s ... ' "$what"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "done"
    else
        echo "failed (exit $rc):"
        cat "$log" >&2
    fi
    rm -f "$log"
    return "$rc"
}

if [ ! -x .venv/bin/python ]; then _step "creating .venv" "$PY" -m venv .venv; fi
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1
_step "upgrading pip" python -m pip install --upgrade pip || true
python -c "import torch" 2>/dev/null || _step "installing torch 2.13.0" python -m pip install "torch==2.13.0"
_step "installing automtl[${AUTOMTL_EXTRA:-test}]" python -m pip install -e ".[${AUTOMTL_EXTRA:-test}]"
