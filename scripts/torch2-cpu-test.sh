#!/usr/bin/env bash
# Runs the test suites against libtorch 2.x on the CPU: Debian 13 (trixie) in a chroot, with its libtorch 2.6,
# g++ 14 and this machine's Node. The code behind TORCH_VERSION checks (SDPA, the CPU's fused AdamW, autocast by
# device type, c10d's newer TCPStore) and libtorch 2.x's numerics are otherwise tested only on the GPU machine.
#
# Needs root, debootstrap and the Debian mirror (about 2 GB in .cache/trixie-root, made once). Not part of npm
# test; about 15 minutes on 2 cores the first time, mostly the build.
#   bash scripts/torch2-cpu-test.sh [jest arguments...]
# runs `npm test` there (bootstrap, lint, typecheck, the suites; jest's arguments passed on), then with no
# arguments the core tests.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
root="${PACE_TRIXIE_ROOT:-$repo/.cache/trixie-root}"
fixtures="${PACE_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"

if [ ! -f "$root/.pace-base" ]; then
  debootstrap --variant=minbase --include=ca-certificates trixie "$root" http://deb.debian.org/debian
  touch "$root/.pace-base"
fi

mounted=()
mount_into() {  # mount_into <source> <target inside the root> [options...]
  mkdir -p "$root$2"
  mount "${@:3}" "$1" "$root$2"
  mounted=("$root$2" "${mounted[@]}")
}
cleanup() { for target in "${mounted[@]}"; do umount -l "$target" || true; done; }
trap cleanup EXIT
mount_into proc /proc -t proc
mount_into /dev /dev --bind
mount_into /dev/pts /dev/pts --bind
mount_into "$(dirname "$fixtures")" /shared --bind -o ro  # the fixtures and the data lists beside them

# The host's Node, npm and npm settings (the registry's certificate authority among them).
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -f "$HOME/.npmrc" ] && cp "$HOME/.npmrc" "$root/root/.npmrc"
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
install -D "$(readlink -f "$(command -v node)")" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/include"
rm -rf "$root/usr/local/lib/node_modules/npm"
cp -a "$node_prefix/lib/node_modules/npm" "$root/usr/local/lib/node_modules/"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
[ -d "$node_prefix/include/node" ] && cp -a "$node_prefix/include/node" "$root/usr/include/"

# This checkout's files as they are now (committed or not); the chroot's own builds and node_modules are kept.
mkdir -p "$root/src"
find "$root/src" -mindepth 1 -maxdepth 1 ! -name node_modules ! -name build ! -name build-native -exec rm -rf {} +
git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$root/src"
git -C "$root/src" init -q

chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin PACE_FIXTURES="/shared/$(basename "$fixtures")" \
  bash -c 'cd /src && npm test -- "$@" && { [ "$#" -gt 0 ] ||
    { cmake --build build-native --target pace_core_tests >/dev/null && build/Release/pace_core_tests; }; }' _ "$@"
