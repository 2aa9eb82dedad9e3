#!/usr/bin/env bash
# Create or reuse .venv and install jaxcomp with the given extras (e.g. "test").
# Re-installs only when pyproject.toml changed since the last install.
# Prints one short line per stage on stderr; pip's own output stays quiet (-q).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
say() { echo "setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  say "creating .venv ($("$py" --version 2>&1))"
  "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=".venv/.jaxcomp-installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  spec="."; name="jaxcomp"
  if [ -n "$extras" ]; then spec=".[$extras]"; name="jaxcomp[$extras]"; fi
  say "installing $name (editable) and its dependencies; a fresh venv takes a minute or two"
  start=$SECONDS
  # setuptools' notice that an editable install is one is not worth 10 lines
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e "$spec"
  touch "$stamp"
  say "installed $name in $((SECONDS - start)) s"
fi
say "ready: .venv/bin/jaxcomp $(.venv/bin/python -c 'import jaxcomp; print(jaxcomp.__version__)')"
