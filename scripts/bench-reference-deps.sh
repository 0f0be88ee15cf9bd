#!/usr/bin/env bash
# The CPU benchmark's PyTorch reference needs a python3 with torch on the same libtorch build as the addon:
# Debian's python3-torch (for Debian's libtorch-dev). Installed here, not by the bootstrap, because only
# `npm run bench:cpu` needs it.
set -euo pipefail
for python in "${PACE_REFERENCE_PYTHON:-}" python3 /usr/bin/python3; do
  [ -n "$python" ] && "$python" -c 'import torch' >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[bench] installing python3-torch (the PyTorch reference)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-torch >/dev/null
else
  echo "[bench] the reference needs a python3 with torch: apt-get install python3-torch (or set PACE_REFERENCE_PYTHON)" >&2
  exit 1
fi
