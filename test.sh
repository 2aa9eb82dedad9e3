#!/usr/bin/env bash
# Create or reuse the virtual environment, install jaxcomp with its test extras,
# and run the whole test suite (unit, conformance, doctests, CLI and --quick paper tables).
set -euo pipefail
cd "$(dirname "$0")"
./.ci/setup_venv.sh test
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}" TF_CPP_MIN_LOG_LEVEL=3
# XLA's persistent compilation cache, fresh for this run and removed after it: the two
# xdist workers and the subprocesses the tests start compile the same small programs over
# and over, and reading them back cut a sample of test files' CPU time by about a fifth.
# Results are the same (a cache entry is the compiled program); a set
# JAX_COMPILATION_CACHE_DIR is used as it is.
if [ -z "${JAX_COMPILATION_CACHE_DIR:-}" ]; then
  JAX_COMPILATION_CACHE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/jaxcomp-test-xla-cache.XXXXXX")"
  trap 'rm -rf "$JAX_COMPILATION_CACHE_DIR"' EXIT
fi
export JAX_COMPILATION_CACHE_DIR
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"
.venv/bin/ruff check .
.venv/bin/python -m pytest --doctest-modules jaxcomp tests -n "${JAXCOMP_TEST_WORKERS:-2}" --dist loadgroup --durations=25 "$@"
