#!/usr/bin/env bash
# Install agentbay-mcp into ./.venv together with the system packages it uses.
#   bash scripts/setup.sh         the server (bubblewrap, Xvfb, openbox + the Python package)
#   bash scripts/setup.sh --dev   the same plus everything the tests, linters and benchmarks need
# As root on Debian/Ubuntu the missing system packages are installed with apt-get; otherwise the
# script says which ones to install. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: agentbay-mcp needs Python >= 3.11 ($python is $("$python" --version 2>&1 || echo missing))" >&2
  exit 1
fi

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v Xvfb >/dev/null || need+=(xvfb)
command -v openbox >/dev/null || need+=(openbox)
command -v slirp4netns >/dev/null || need+=(slirp4netns)  # outbound network for sessions that ask for it
command -v ip >/dev/null || need+=(iproute2)               # their routes (the egress policy)
"$python" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((dev)); then
  command -v xdpyinfo >/dev/null || need+=(x11-utils)  # tests check displays with it
  command -v xterm >/dev/null || need+=(xterm)          # the GUI app the desktop tests drive
  command -v pkill >/dev/null || need+=(procps)         # tests use ps/pkill inside sessions (not in minimal images)
fi
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: please install these system packages: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
    [[ " ${need[*]} " == *" python3-venv "* ]] && exit 1
  fi
fi

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
extra=""
((dev)) && extra="[dev]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra}"
if ((dev)); then
  # The TypeScript MCP SDK client some tests drive (tests/js). npm ci only when the lock changed.
  if command -v node >/dev/null && command -v npm >/dev/null; then
    lock_sum=$(sha256sum tests/js/package-lock.json | cut -d' ' -f1)
    if [[ "$(cat tests/js/node_modules/.lock-sha256 2>/dev/null || true)" != "$lock_sum" ]]; then
      (cd tests/js && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
      echo "$lock_sum" >tests/js/node_modules/.lock-sha256
    fi
  else
    echo "setup: node/npm not found: the TypeScript client tests will be skipped" >&2
  fi
fi
echo "setup: done (.venv/bin/agentbay-mcp)" >&2
