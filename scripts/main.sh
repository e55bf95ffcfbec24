#!/usr/bin/env bash
# Set up automtl and run the main job: a real search on the built-in default dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
AUTOMTL_EXTRA=${AUTOMTL_EXTRA:-dashboard} . scripts/_venv.sh
automtl data info synthetic
