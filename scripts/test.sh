#!/usr/bin/env bash
# Set up everything the test suite needs (venv, package, PostgreSQL, headless Chromium) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
AUTOMTL_EXTRA=test . scripts/_venv.sh
bash scripts/system_deps.sh
exec python -m pytest "$@"
