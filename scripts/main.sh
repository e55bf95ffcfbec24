#!/usr/bin/env bash
# Set up automtl and run the main job: a real multi-objective search on the built-in default
# dataset (the `synthetic` preset: click -> purchase cascade, objectives CTR and CVR AUC), ending
# with the Pareto table and an HTML report. Extra arguments go to `automtl search`.
set -euo pipefail
cd "$(dirname "$0")/.."
AUTOMTL_EXTRA=${AUTOMTL_EXTRA:-dashboard} . scripts/_venv.sh
automtl search --dataset synthetic "$@"
