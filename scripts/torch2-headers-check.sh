#!/usr/bin/env bash
# Compiles every native source (-fsyntax-only, -Wall -Wextra, warnings fatal) against libtorch 2.x's CUDA headers,
# with the CUDA kernels, Gloo and NCCL switched on: the build the lent GPU machine does, checked on a machine
# without a GPU or a CUDA libtorch. The code guarded by TORCH_VERSION checks (step graphs, the tensor-lr fused
# AdamW, SDPA, autocast by device type) is otherwise compiled only there.
#
# The headers come from Debian trixie's packages (libtorch-cuda-dev 2.6, nvidia-cuda-dev 12.4, libnccl-dev,
# libgloo-dev: about 1 GB, downloaded once into .cache/torch2-headers, nothing installed). Not part of npm test:
# it needs the network and takes a few minutes.
#   bash scripts/torch2-headers-check.sh [source.cpp ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PACE_TORCH2_CACHE:-$PWD/.cache/torch2-headers}"
packages=(libtorch-cuda-dev nvidia-cuda-dev libnccl-dev libgloo-dev)

fetch_headers() {
  mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$cache/debs" "$cache/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian" \
    "trixie main contrib non-free" > "$cache/apt/sources.list"
  local apt=(-o "Dir::Etc::sourcelist=$cache/apt/sources.list" -o Dir::Etc::sourceparts=/dev/null
    -o "Dir::State::lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt" -o "Dir::Cache::archives=$cache/apt/archives")
  apt-get "${apt[@]}" -qq update
  (cd "$cache/debs" && apt-get "${apt[@]}" -qq download "${packages[@]}" 2> >(grep -v unsandboxed >&2))
  for deb in "$cache"/debs/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$cache/root" --wildcards './usr/include/*'
  done
  touch "$cache/ready"
}
[ -f "$cache/ready" ] || fetch_headers

include="$cache/root/usr/include"
version="$(awk '/define TORCH_VERSION_MAJOR/ { major = $3 } /define TORCH_VERSION_MINOR/ { minor = $3 }
  END { print major "." minor }' "$include/torch/csrc/api/include/torch/version.h")"
echo "torch2-headers-check: libtorch $version headers in $include"
flags=(-std=c++17 -Wall -Wextra -Werror -fPIC -DPACE_WITH_CUDA_KERNELS=1
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED
  -I native/core -I native/kernels
  -isystem "$include" -isystem "$include/torch/csrc/api/include"
  -isystem /usr/local/cuda/include/cccl  # libcu++'s <nv/target>, which the CUDA 12.4 headers include
  -isystem node_modules/node-api-headers/include -isystem node_modules/node-addon-api)

# The build force-includes each target's precompiled header; build each once here for the same effect.
pch="$cache/pch"
mkdir -p "$pch/core" "$pch/addon"
for target in core addon; do
  grep -v '^#pragma once' "native/$target/pch.h" > "$pch/$target/pch.h"
  g++ "${flags[@]}" -x c++-header "$pch/$target/pch.h" -o "$pch/$target/pch.h.gch"
done

if [ "$#" -gt 0 ]; then
  sources=("$@")
else
  mapfile -t sources < <(git ls-files -co --exclude-standard 'native/core/*.cpp' 'native/core-tests/*.cpp' \
    'native/addon/*.cpp' 'bench/native/*.cpp')
fi
check_one() {
  local source="$1" target=core
  case "$source" in native/addon/*) target=addon ;; esac
  local extra=()
  case "$source" in
    */distributed/c10d_group.cpp)
      extra=(-DPACE_WITH_GLOO -DUSE_C10D_GLOO -DPACE_WITH_NCCL -DUSE_C10D_NCCL) ;;
  esac
  if ! output="$(g++ "${flags[@]}" "${extra[@]}" -include "$pch/$target/pch.h" -fsyntax-only "$source" 2>&1)"; then
    printf '=== %s\n%s\n' "$source" "$output"
    return 1
  fi
}
export -f check_one
export pch
export FLAGS_FILE="$pch/flags"
printf '%s\n' "${flags[@]}" > "$FLAGS_FILE"
failed=0
printf '%s\n' "${sources[@]}" |
  xargs -P "${PACE_CHECK_JOBS:-2}" -I{} bash -c 'mapfile -t flags < "$FLAGS_FILE"; check_one "$1"' _ {} || failed=1
if [ "$failed" -ne 0 ]; then
  echo "torch2-headers-check: FAILED (see above)" >&2
  exit 1
fi
echo "torch2-headers-check: ${#sources[@]} sources compile against libtorch 2.x with CUDA, Gloo and NCCL"
