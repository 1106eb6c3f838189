#!/usr/bin/env bash
# Installs picochat into ./.venv on a fresh machine (CPU). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
# tcmalloc: glibc malloc costs 1.1-1.9x per training step on CPU; picochat preloads tcmalloc when present.
if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; } \
      || echo "install.sh: could not install libtcmalloc-minimal4; continuing with glibc malloc" >&2
  else
    echo "install.sh: libtcmalloc-minimal4 not found (sudo apt-get install libtcmalloc-minimal4 makes CPU training faster)" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,hf]"
