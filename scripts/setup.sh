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
# Skipped when this checkout is installed already with these requirements: pip's isolated build of the project
# fetches setuptools every time, so a laptop offline could not start the playground it had installed.
stamp=.setup-stamp  # (git ignores it) the requirements and the interpreter the last install was made for
want=$(cat pyproject.toml constraints.txt <(command -v "$PY") | sha256sum | cut -d' ' -f1)
installed() {  # run from / so that this folder's own twotower/ does not answer for the install
  (cd / && CHECKOUT="$OLDPWD" "$PY" - <<'PYCODE' 2>/dev/null)
import importlib.util, os, sys
spec = importlib.util.find_spec("twotower")  # this checkout's, not another clone's
ours = spec is not None and os.path.samefile(os.path.dirname(spec.origin), os.path.join(os.environ["CHECKOUT"], "twotower"))
needed = ("torch", "transformers", "accelerate", "safetensors", "sentencepiece", "gradio", "plotly", "pytest", "scipy",
          "playwright", "gradio_client")
sys.exit(0 if ours and all(importlib.util.find_spec(name) for name in needed) else 1)
PYCODE
}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! installed; then
  "$PY" -m pip install -q -c constraints.txt -e ".[test]"  # the versions the tests last passed with
  echo "$want" > "$stamp"
fi
# The browser test drives Debian's Chromium through Playwright; Playwright never downloads a browser.
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
