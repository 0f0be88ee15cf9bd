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
# Time there: one command may run 10 minutes and a session has 15 in all, the machine's starts included. The
# build takes minutes, and max-autotune compiles each model for minutes before its first timed step, so:
#   PACE_DEVICE_SECONDS (default 540): the script's deadline; each step's timeout is cut to the time left and a
#     step with too little left is skipped (and reported so), so the logs always come back;
#   PACE_DEVICE_STEPS (default all: core,epilogue,parity,nccl,graphs,profile,bench): the steps to run, so that a
#     second call within the machine's 30 warm seconds can take the rest (the build is kept and is incremental);
#   with little time, pass --compile-mode default (and say so next to the numbers), time only --commands pace,
#   build only the --ours sides needed, and cap a step with PACE_GRAPHS_TIMEOUT, PACE_PROFILE_TIMEOUT, PACE_BENCH_TIMEOUT.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-$root/bench/out}"
mkdir -p "$out"
step() { echo "== $(date +%T) $*"; }
deadline=$(($(date +%s) + ${PACE_DEVICE_SECONDS:-540}))
steps=",${PACE_DEVICE_STEPS:-core,epilogue,parity,nccl,graphs,profile,bench},"
# seconds CAP LEAST: the timeout for the next step: CAP, or the time left before the deadline (less 15 s to
# write the summary) where that is shorter; 0 when under LEAST are left.
seconds() {
  local left=$((deadline - $(date +%s) - 15))
  if [ "$left" -lt "$2" ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
# wanted NAME CAP LEAST: whether step NAME runs (asked for, and time enough); sets $limit, or records why not.
wanted() {
  declare -g limit=0
  case "$steps" in *",$1,"*) ;; *)
    declare -g "rc_$1=not asked"
    return 1
    ;;
  esac
  limit=$(seconds "$2" "$3")
  if [ "$limit" = 0 ]; then
    echo "== $(date +%T) $1: skipped, under $3 s left before the deadline (PACE_DEVICE_SECONDS)"
    declare -g "rc_$1=skipped"
    return 1
  fi
}
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
build_limit=$(seconds 420 60)
[ "$build_limit" = 0 ] && fail "under a minute left before the deadline for the build (PACE_DEVICE_SECONDS)"
timeout "$build_limit" cmake --build build-device --target "${targets[@]}" --parallel "$(nproc)" -- \
  "${keep_going[@]}" >"$out/build.log" 2>&1 ||
  { grep -E "error|Error" -A4 "$out/build.log" | head -120; fail "build failed or ran out of time (build.log)"; }
grep -ciE "warning" "$out/build.log" | sed 's/^/compiler warnings: /'

if wanted core 240 30; then
  step "core tests (libtorch $(python3 -c 'import torch; print(torch.__version__)'))"
  timeout "$limit" ./build/Release/pace_core_tests 2>&1 | tee "$out/core-tests.log"
  rc_core=${PIPESTATUS[0]}
fi

if [ "$device" = cuda ] && wanted epilogue 60 20; then
  step "epilogue kernels: bandwidth in 16-byte packs and one element at a time, against a copy"
  timeout "$limit" ./build/Release/pace_epilogue_bench 2>&1 | tee "$out/epilogue-bench.log"
  rc_epilogue=${PIPESTATUS[0]}
fi

if wanted parity 180 30; then
  step "PACE fixtures on CUDA"
  PACE_DEVICE="$device" PACE_FIXTURES="$root/.device/fixtures" timeout "$limit" node .device/js/device-parity.js 2>&1 |
    tee "$out/parity.log"
  rc_parity=${PIPESTATUS[0]}
fi

if wanted nccl 120 30; then
  step "data-parallel path through NCCL, a world of one (gloo when rehearsed on the CPU)"
  PACE_DEVICE="$device" timeout "$limit" node .device/js/device-nccl.js 2>&1 | tee "$out/nccl.log"
  rc_nccl=${PIPESTATUS[0]}
fi

if wanted graphs "${PACE_GRAPHS_TIMEOUT:-240}" 40; then
  step "whole-step graphs: fits with them against fits without (the eager stand-in when rehearsed on the CPU)"
  PACE_DEVICE="$device" timeout "$limit" node .device/js/device-graphs.js 2>&1 | tee "$out/graphs.log"
  rc_graphs=${PIPESTATUS[0]}
fi

if wanted profile "${PACE_PROFILE_TIMEOUT:-300}" 60; then
  step "profile: where a bf16 PACE step's time goes, ours (fused, graphed, fusions off) and the reference's"
  PACE_REFERENCE_SCRIPT="$root/bench/reference/pace_step_reference.py" timeout "$limit" \
    node .device/js/device-profile.js --out "$out/profile" ${PACE_PROFILE_ARGS:-} 2>&1 | tee "$out/profile.log"
  rc_profile=${PIPESTATUS[0]}
fi

if wanted bench "${PACE_BENCH_TIMEOUT:-600}" 90; then
  step "benchmark"
  PACE_REFERENCE_SCRIPT="$root/bench/reference/pace_step_reference.py" \
    timeout "$limit" node .device/js/device-bench.js --json "$out/device.json" "$@" 2>&1 | tee "$out/bench.log"
  rc_bench=${PIPESTATUS[0]}
fi

summary=""
failed=0
for name in core epilogue parity nccl graphs profile bench; do
  value="rc_$name"
  value="${!value:-not run}"
  summary+="$name: $value, "
  case "$value" in 0 | "not asked" | "not run") ;; *) failed=1 ;; esac
done
step "done: ${summary%, }"
[ "$failed" = 0 ]
