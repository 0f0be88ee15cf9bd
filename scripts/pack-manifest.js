#!/usr/bin/env node
// prepack/postpack: the packed package.json lists the binary packages that `npm run prebuild` made (under
// prebuilds/) as optional dependencies, so npm installs the one matching the user's platform alongside.
// They are not in the committed package.json: `npm ci` refuses optional dependencies missing from the lock,
// and the binary packages of a release exist only once it is packed. `add` keeps the committed file beside
// it (build/package.json.committed) and `restore` puts it back.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const manifest = path.join(root, 'package.json');
const kept = path.join(root, 'build', 'package.json.committed');
const written = path.join(root, 'build', 'package.json.packed'); // what `add` wrote, to tell an edit since
const prebuilds = path.join(root, 'prebuilds');

/** Puts the committed manifest back, if package.json is still the one `add` wrote (not edited since). */
function restoreKept() {
  if (!fs.existsSync(kept)) return;
  const untouched = fs.existsSync(written) && fs.readFileSync(written, 'utf8') === fs.readFileSync(manifest, 'utf8');
  if (untouched) fs.copyFileSync(kept, manifest);
  fs.rmSync(kept);
  fs.rmSync(written, { force: true });
}

if (process.argv[2] === 'add') {
  // A pack that failed after `add` (its prepare step, say) never ran `restore`: the kept file is the committed
  // one, and package.json may still have the optional dependencies. Put it back first, or they would become
  // committed; unless package.json was edited since, in which case the edit is what the user wants.
  restoreKept();
  const text = fs.readFileSync(manifest, 'utf8');
  const pkg = JSON.parse(text);
  const binaries = fs.existsSync(prebuilds)
    ? fs
        .readdirSync(prebuilds)
        .map((entry) => path.join(prebuilds, entry, 'package.json'))
        .filter((file) => fs.existsSync(file))
        .map((file) => JSON.parse(fs.readFileSync(file, 'utf8')))
        .filter((binary) => binary.version === pkg.version)
    : [];
  if (binaries.length === 0) process.exit(0);
  fs.mkdirSync(path.dirname(kept), { recursive: true });
  fs.writeFileSync(kept, text);
  pkg.optionalDependencies = Object.fromEntries(binaries.map((binary) => [binary.name, binary.version]));
  fs.writeFileSync(manifest, `${JSON.stringify(pkg, null, 2)}\n`);
  fs.copyFileSync(manifest, written);
  console.error(`pace-peft: packing with optional binary packages ${Object.keys(pkg.optionalDependencies).join(', ')}`);
} else if (process.argv[2] === 'restore') {
  restoreKept();
} else {
  console.error('usage: pack-manifest.js add|restore');
  process.exit(2);
}
