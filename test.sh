#!/usr/bin/env bash
# Create or reuse the virtual environment, install jaxcomp with its test extras,
# and run the whole test suite (unit, conformance, doctests, CLI and --quick paper tables).
set -euo pipefail
cd "$(dirname "$0")"
./.ci/setup_venv.sh test
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}" TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/ruff check .
exec .venv/bin/python -m pytest --doctest-modules jaxcomp tests -n "${JAXCOMP_TEST_WORKERS:-2}" --dist loadgroup --durations=25 "$@"
