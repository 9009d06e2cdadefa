#!/usr/bin/env bash
# Install everything and run the whole test suite (what CI runs): lint, types, tests.
# Extra arguments go to pytest, e.g. bash scripts/test.sh -k http
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
status=0
.venv/bin/python -m pytest -n auto -p no:cacheprovider "$@" || status=$?
if ((status == 5)); then
  echo "test: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
