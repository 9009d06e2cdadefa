#!/usr/bin/env bash
# Install everything and run the whole test suite (what CI runs): lint, types, tests.
# Extra arguments go to pytest, e.g. bash scripts/test.sh -k http
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# --dist loadgroup: tests marked xdist_group("hundred_sessions") share one worker, one at a time.
# A private base dir for test files: concurrent pytest runs must not share (and re-permission)
# /tmp/pytest-of-<user>; root's sandboxes run as nobody, so it must be traversable.
base=$(mktemp -d /tmp/agentbay-mcp-tests.XXXXXX)
chmod 711 "$base"
trap 'rm -rf --one-file-system "$base"' EXIT
status=0
.venv/bin/python -m pytest -n auto --dist loadgroup -p no:cacheprovider --basetemp "$base/pytest" "$@" || status=$?
if ((status == 5)); then
  echo "test: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
