#!/usr/bin/env bash
# Prepares .device/ (git-ignored) for bench/device.sh on the lent GPU machine, which has PyTorch, nvcc, cmake
# and ninja but no Node and no network (see design.md, "The lent GPU machine"). It holds:
#   node.xz            this machine's node, stripped and xz-compressed
#   include/           the N-API headers (Node's C headers and node-addon-api's C++ wrapper)
#   node_modules.tar.xz  the runtime dependencies dist/ loads (zod, cli-progress, sharp, ...)
#   fixtures/          the shared PACE parity fixtures the device checks replay
#   js/                bench/device-*.ts bundled with their helpers, as CommonJS
# Run `npm run build:ts` first; name `.device` and `dist` in the device call's carry.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.device"
rm -rf "$out"
mkdir -p "$out/include" "$out/fixtures" "$out/js"

cp "$(command -v node)" "$out/node"
strip "$out/node"
xz -T0 -6 "$out/node"

node_include="$(dirname "$(command -v node)")/../include/node"
[ -f "$node_include/node_api.h" ] || node_include="$root/node_modules/node-api-headers/include"
for header in node_api.h node_api_types.h js_native_api.h js_native_api_types.h; do
  cp "$node_include/$header" "$out/include/"
done
cp "$root"/node_modules/node-addon-api/napi*.h "$out/include/"
# Build headers the GPU machine may lack (its image is made for PyTorch): nlohmann-json and zlib's.
cp -r /usr/include/nlohmann "$out/include/"
mkdir -p "$out/include/zlib"
cp /usr/include/zlib.h /usr/include/zconf.h "$out/include/zlib/"

modules=(zod cli-progress string-width emoji-regex is-fullwidth-code-point strip-ansi ansi-regex
  sharp detect-libc semver @img/colour @img/sharp-linux-x64 @img/sharp-libvips-linux-x64
  @huggingface/hub @huggingface/tasks @huggingface/xetchunk-wasm @huggingface/blake3-jit gearhash-jit)
(cd "$root" && tar -cJf "$out/node_modules.tar.xz" $(printf 'node_modules/%s ' "${modules[@]}"))
# Every package dist/ requires must load from the bundle alone (a missing one fails every step there).
check="$(mktemp -d)"
tar -xJf "$out/node_modules.tar.xz" -C "$check"
for package in $(grep -rhoE 'require\("[^.":][^"]*"\)' "$root/dist" | sed -E 's/require\("([^"]*)"\)/\1/' | sort -u); do
  (cd "$check" && NODE_PATH="$check/node_modules" node -e "require(process.argv[1])" "$package") ||
    { rm -rf "$check"; echo "device-bundle.sh: dist/ requires '$package', which the bundle lacks" >&2; exit 1; }
done
rm -rf "$check"

fixtures="${PACE_FIXTURES:-$root/../shared/fixtures}"
cp "$fixtures"/index*.json "$fixtures"/pace_*.safetensors "$fixtures"/peft_*.safetensors "$out/fixtures/"

# Bundled with their helpers (bench/step-timing.ts, test/support/*); pace-peft itself stays the package's dist/.
"$root/node_modules/.bin/esbuild" "$root"/bench/device-*.ts --bundle --external:pace-peft --outdir="$out/js" \
  --platform=node --format=cjs --target=node20 --log-level=warning
du -sh "$out"
