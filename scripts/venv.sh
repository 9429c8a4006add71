#!/usr/bin/env bash
# Create or refresh .venv with n2nas and what the given extras need. Idempotent: a second run costs seconds.
# torch is pinned first to the release that is available as a local CPU wheel; the package itself only
# declares torch>=2.2, so any compatible torch already present satisfies it without a download.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=".venv/.n2nas-installed-$(echo "$extras" | tr ',' '-')"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 1>&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" 1>&2
  touch "$stamp"
fi
