#!/usr/bin/env bash
# Installs what the playground and its tests need on a fresh machine (idempotent, no GPU needed).
# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  # The CPU wheel carries the local label +cpu: a wheel folder or index set in pip's config may hold it;
  # PyPI does not (its Linux torch is the CUDA build), so fall back to PyTorch's own CPU index.
  "$PY" -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
    || "$PY" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
"$PY" -m pip install -q -c constraints.txt -e ".[test]"  # the versions the tests last passed with
# The browser test drives Debian's Chromium through Playwright; Playwright never downloads a browser.
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
