#!/usr/bin/env bash
# The project's test command: install (with the browser), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
exec "${PYTHON:-python3}" -m pytest tests "$@"
