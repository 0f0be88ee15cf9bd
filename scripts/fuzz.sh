#!/usr/bin/env bash
# Builds the libFuzzer targets of the native parsers with clang (address and undefined-behaviour sanitizers) and
# runs each for a bounded time on the committed seed corpus. Usage: scripts/fuzz.sh [seconds per target] [seed]
# A seed repeats libFuzzer's choices (npm test passes one, so that a run explores what the last one did, up to the
# time limit); without one, each run explores afresh.
# Exit 0: no crash; exit 1: a crash (its input is saved under build-fuzz/crashes/); exit 2: no clang/libFuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
seed_flag=()
[ -n "${2:-}" ] && seed_flag=(-seed="$2")
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ is not installed (apt-get install clang libclang-rt-dev)" >&2
  exit 2
fi
out=build-fuzz
mkdir -p "$out/crashes"
torch_include=/usr/include
[ -d "$torch_include/torch/csrc/api/include" ] || { echo "fuzz: needs Debian's libtorch-dev headers" >&2; exit 2; }
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -D_GLIBCXX_USE_CXX11_ABI=1 -Inative/core -isystem "$torch_include/torch/csrc/api/include")
sources=(native/core/io/safetensors.cpp native/core/io/npz.cpp native/core/io/atomic_file.cpp native/core/io/regular_file.cpp
  native/core/tensor/dtype.cpp native/core/tensor/host_memory.cpp)
libs=(-ltorch_cpu -lc10 -lz)
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(ccache)
objects=()
for source in "${sources[@]}"; do
  object="$out/$(basename "${source%.cpp}").o"
  if [ ! -f "$object" ] || [ "$source" -nt "$object" ]; then "${launcher[@]}" clang++ "${flags[@]}" -c "$source" -o "$object"; fi
  objects+=("$object")
done
scratch="$(mktemp -d "${TMPDIR:-/tmp}/pace-fuzz-XXXXXX")"  # the targets' input files; removed however we leave
trap 'rm -rf "$scratch"' EXIT
status=0
for target in safetensors npz; do
  binary="$out/${target}_fuzz"
  "${launcher[@]}" clang++ "${flags[@]}" "native/fuzz/${target}_fuzz.cpp" "${objects[@]}" "${libs[@]}" -o "$binary"
  corpus="$out/corpus-$target"
  mkdir -p "$corpus"
  cp -n native/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $target for ${seconds}s"
  if ! TMPDIR="$scratch" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$binary" -max_total_time="$seconds" "${seed_flag[@]}" -rss_limit_mb=4096 \
    -max_len=65536 -artifact_prefix="$out/crashes/$target-" -print_final_stats=1 "$corpus" 2>"$out/$target.log"; then
    echo "fuzz: $target CRASHED; see $out/$target.log and $out/crashes/" >&2
    tail -40 "$out/$target.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$out/$target.log" | tail -2
  fi
done
exit $status
