#!/usr/bin/env bash
# clang-format over the native sources: --check fails on any difference (npm test), --fix rewrites.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -co --exclude-standard 'native/*.h' 'native/*.cpp' 'native/*.cu' 'native/*.cuh')
[ "${#files[@]}" -gt 0 ] || exit 0
case "${1:-}" in
  --check) clang-format --dry-run --Werror "${files[@]}" ;;
  --fix) clang-format -i "${files[@]}" ;;
  *) echo "usage: $0 --check|--fix" >&2; exit 2 ;;
esac
