#!/usr/bin/env node
// The package's install step (package.json "install"): the binary package matching the user's libtorch, or a
// source build (lib/install/install.ts). In a git checkout before its first TypeScript build there is no
// dist/ yet, and no binary package either: the addon is built from source.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const installer = path.join(__dirname, '..', 'dist', 'install', 'install.js');
if (fs.existsSync(installer)) {
  process.exitCode = require(installer).runInstall();
} else {
  const run = spawnSync(process.execPath, [path.join(__dirname, 'build-native.js')], { stdio: 'inherit' });
  process.exitCode = run.status ?? 1;
}
