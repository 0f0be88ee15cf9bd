#!/usr/bin/env bash
# Sets up what `npm test` and `npm run demo` need, from a fresh clone on a fresh Debian machine:
# system packages (libtorch, OpenBLAS, build tools), npm dependencies, the native addon and dist/.
# Each step is skipped when already done, so a warm run costs a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[bootstrap] $*" >&2; }

triplet=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
debian_torch="/usr/lib/${triplet}/cmake/Torch/TorchConfig.cmake"

# libtorch comes from LIBTORCH, python3's torch, or Debian (the design's search order).
# libblas3 (the slow reference BLAS) is only there so the doctor test can show it is detected; OpenBLAS
# keeps its higher priority for libblas.so.3.
# dataset-fashion-mnist is the demo backbone's pretraining data (scripts/pretrain-demo-backbone.ts) and a test set.
# clang and its runtime (libFuzzer) fuzz the native parsers in npm test (scripts/fuzz.sh).
# chromium (headless) opens the run report in test/report.test.ts and draws docs/report.png (npm run report:picture).
# zlib1g-dev: the native .npz and gzipped IDX readers inflate with zlib.
packages=(cmake g++ ccache ninja-build nlohmann-json3-dev zlib1g-dev clang-format libblas3 dataset-fashion-mnist clang libclang-rt-dev chromium)
if [ -n "${LIBTORCH:-}" ]; then
  log "using libtorch from LIBTORCH=${LIBTORCH}"
elif python3 -c 'import os, sys, torch.utils
sys.exit(not os.path.isfile(os.path.join(torch.utils.cmake_prefix_path, "Torch", "TorchConfig.cmake")))' >/dev/null 2>&1; then
  # (Debian's python3-torch imports but ships no CMake config: it does not count.)
  log "using libtorch from python3's torch"
else
  # Without libopenblas0-openmp, Debian's libtorch runs every GEMM on the reference BLAS, 30-90x slower.
  # libgloo-dev: the headers of the Gloo group Debian's libtorch exports (data-parallel training).
  packages+=(libtorch-dev libopenblas0-openmp libgloo-dev)
fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$package")
  done
else
  [ -n "${LIBTORCH:-}" ] || python3 -c 'import torch' >/dev/null 2>&1 || [ -f "$debian_torch" ] || missing+=(libtorch)
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    cat >&2 <<MSG
[bootstrap] missing: ${missing[*]}
[bootstrap] pace-peft needs, before npm can build it:
  - a C++17 compiler, cmake (>= 3.18) and ccache (optional, for fast rebuilds);
  - libtorch 1.13 or newer, found in this order: the LIBTORCH environment variable (an unpacked libtorch),
    the torch package of python3, or Debian's libtorch-dev (with libopenblas0-openmp, or GEMMs run 30-90x slower);
  - nlohmann-json and zlib headers (Debian: nlohmann-json3-dev, zlib1g-dev) and clang-format (for npm test's lint).
On Debian or Ubuntu, as root:
  apt-get install ${packages[*]}
MSG
    exit 1
  fi
fi

# A `npm pack` that was killed may have left package.json with the release's optional binary packages.
node scripts/pack-manifest.js restore

# npm dependencies. `npm ci` also runs this package's install script (scripts/install.js), which builds the
# addon from source in a checkout.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

log "building the native addon (incremental)"
node scripts/build-native.js

log "compiling TypeScript to dist/"
npx tsc -p tsconfig.build.json
chmod +x dist/cli.js
