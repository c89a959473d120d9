#!/bin/sh
# Create .venv (once) and install melano_tf with the CPU TensorFlow wheel and the test extras.
# Idempotent: re-running with an unchanged setup.py skips pip. MELANO_TF_EXTRAS=gpu,dev for GPUs.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
EXTRAS="${MELANO_TF_EXTRAS:-cpu,dev}"
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "install.sh: need Python >= 3.10 as '$PY' (set PYTHON=...)" >&2; exit 2
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "install.sh: installing Debian's python3-venv" >&2
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv .venv
    else
      echo "install.sh: '$PY -m venv' failed; install python3-venv (Debian: sudo apt-get install python3-venv)" >&2; exit 2
    fi
  fi
fi
STAMP=".venv/.melano_tf-$(cat setup.py | cksum | cut -d' ' -f1)-$(echo "$EXTRAS" | tr ',' '_')"
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  rm -f .venv/.melano_tf-*; touch "$STAMP"
fi
