#!/usr/bin/env bash
# Start the playground on the embedded default model (CPU): http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" app.py "$@"
