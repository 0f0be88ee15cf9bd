#!/usr/bin/env bash
# The one prepared run on the lent GPU machine (design.md, "The lent GPU machine"): builds the addon against
# that machine's PyTorch libtorch (CUDA kernels for sm_90), runs the core tests (CPU and CUDA), measures the
# epilogue kernels' bandwidth, replays the PACE parity fixtures on CUDA, checks the data-parallel path through
# NCCL with a world of one, checks whole fits with step graphs against the same fits without, profiles a step,
# then times our steps (bf16 also as graphs) against the PyTorch reference, eager and torch.compile'd. Logs and JSON go to $OUT (the device tool brings them back).
# Prepare here first:
#   npm run bench:device:prepare   (npm run build:ts && bash scripts/device-bundle.sh)
# then run it there with `.device` and `dist` carried:  bash bench/device.sh [benchmark arguments...]
# Rehearse here (no GPU; Debian's torch 1.13 has no torch.compile and its libtorch no Kineto):
#   PACE_DEVICE=cpu PACE_PROFILE_ARGS="--device cpu --reference own --models vit_tiny_patch16_224 --batch 2" \
#   bash bench/device.sh --device cpu --reference own --compile-mode none \
#   --models vit_tiny_patch16_224 --batch 2 --rounds 1
# Time there: the build takes minutes, and max-autotune compiles each model for minutes before its first timed
# step; with little device time left pass --compile-mode default (and say so next to the numbers).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-$root/bench/out}"
mkdir -p "$out"
step() { echo "== $(date +%T) $*"; }
fail() {
  echo "device.sh: $*" >&2
  exit 1
}

device="${PACE_DEVICE:-cuda}"
step "machine"
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || fail "no GPU visible"
  python3 -c 'import torch, timm; print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__)' ||
    fail "python3 has no torch/timm"
fi
[ -f .device/node.xz ] && [ -d dist ] || fail "run 'npm run build:ts && bash scripts/device-bundle.sh' here and carry .device and dist"
mkdir -p /tmp/pace-node
xz -dc .device/node.xz >/tmp/pace-node/node && chmod +x /tmp/pace-node/node
export PATH="/tmp/pace-node:$PATH"
tar -xJf .device/node_modules.tar.xz -C /tmp/pace-node
export NODE_PATH="/tmp/pace-node/node_modules"
node --version

step "build (libtorch from python3's torch)"
torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
export CUDACXX="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
zlib=()
if [ ! -f /usr/include/zlib.h ]; then  # the carried headers, linked against the system's runtime library
  libz="$(ls /usr/lib/x86_64-linux-gnu/libz.so* /lib/x86_64-linux-gnu/libz.so* 2>/dev/null | head -1)"
  zlib=(-DZLIB_INCLUDE_DIR="$root/.device/include/zlib" -DZLIB_LIBRARY="$libz")
fi
generator=Ninja keep_going=(-k 0)
command -v ninja >/dev/null || { generator="Unix Makefiles" keep_going=(-k); }
cmake -S . -B build-device -G "$generator" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
  -DCMAKE_JS_INC="$root/.device/include" -DPACE_EXTRA_INCLUDE="$root/.device/include" "${zlib[@]}" \
  -DPACE_CUDA_ARCHITECTURES=90 >"$out/configure.log" 2>&1 ||
  { tail -40 "$out/configure.log"; fail "cmake configure failed (configure.log)"; }
grep -E "pace-peft:" "$out/configure.log"
targets=(pace_peft pace_core_tests)
[ "$device" = cuda ] && targets+=(pace_epilogue_bench)
cmake --build build-device --target "${targets[@]}" --parallel "$(nproc)" -- "${keep_going[@]}" \
  >"$out/build.log" 2>&1 ||
  { grep -E "error|Error" -A4 "$out/build.log" | head -120; fail "build failed (build.log)"; }
grep -ciE "warning" "$out/build.log" | sed 's/^/compiler warnings: /'

step "core tests (libtorch $(python3 -c 'import torch; print(torch.__version__)'))"
./build/Release/pace_core_tests 2>&1 | tee "$out/core-tests.log"
core=${PIPESTATUS[0]}

if [ "$device" = cuda ]; then
  step "epilogue kernels: bandwidth in 16-byte packs and one element at a time, against a copy"
  timeout 120 ./build/Release/pace_epilogue_bench 2>&1 | tee "$out/epilogue-bench.log"
fi

step "PACE fixtures on CUDA"
PACE_DEVICE="$device" PACE_FIXTURES="$root/.device/fixtures" node .device/js/device-parity.js 2>&1 | tee "$out/parity.log"
parity=${PIPESTATUS[0]}

step "data-parallel path through NCCL, a world of one (gloo when rehearsed on the CPU)"
PACE_DEVICE="$device" timeout 300 node .device/js/device-nccl.js 2>&1 | tee "$out/nccl.log"
nccl=${PIPESTATUS[0]}

step "whole-step graphs: fits with them against fits without (the eager stand-in when rehearsed on the CPU)"
PACE_DEVICE="$device" timeout 300 node .device/js/device-graphs.js 2>&1 | tee "$out/graphs.log"
graphs=${PIPESTATUS[0]}

step "profile: where a bf16 PACE step's time goes, ours and the reference's"
PACE_REFERENCE_SCRIPT="$root/bench/reference/pace_step_reference.py" timeout "${PACE_PROFILE_TIMEOUT:-300}" \
  node .device/js/device-profile.js --out "$out/profile" ${PACE_PROFILE_ARGS:-} 2>&1 | tee "$out/profile.log"
profile=${PIPESTATUS[0]}

step "benchmark"
PACE_REFERENCE_SCRIPT="$root/bench/reference/pace_step_reference.py" \
  timeout "${PACE_BENCH_TIMEOUT:-600}" node .device/js/device-bench.js --json "$out/device.json" "$@" 2>&1 |
  tee "$out/bench.log"
bench=${PIPESTATUS[0]}

step "done: core tests rc=$core, parity rc=$parity, nccl rc=$nccl, graphs rc=$graphs, profile rc=$profile, benchmark rc=$bench"
[ "$core" = 0 ] && [ "$parity" = 0 ] && [ "$nccl" = 0 ] && [ "$graphs" = 0 ] && [ "$profile" = 0 ] && [ "$bench" = 0 ]
