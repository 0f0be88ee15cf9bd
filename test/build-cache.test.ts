import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { makeTempDir, repoRoot } from './support/paths';
import { testIf } from './support/test-if';

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const tools = ['ccache', 'cmake', 'ninja'].every(has);

// A project of one header and one source, built with pace-peft's compiler cache set-up (cmake/PaceCompilerCache.cmake)
// and a precompiled header, as the addon is, against a cache of its own.
function pchProject(dir: string) {
  fs.writeFileSync(
    path.join(dir, 'CMakeLists.txt'),
    [
      'cmake_minimum_required(VERSION 3.18)',
      'project(pch_probe CXX)',
      `list(APPEND CMAKE_MODULE_PATH "${path.join(repoRoot, 'cmake')}")`,
      'include(PaceCompilerCache)',
      'add_library(probe STATIC use.cpp)',
      'target_precompile_headers(probe PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/probe.h")',
    ].join('\n'),
  );
  /** The header declares probe1 ... probeN; the source calls probeN, so a stale precompiled header fails it. */
  const version = (n: number) => {
    const declarations = Array.from({ length: n }, (_, i) => `inline int probe${i + 1}() { return ${i + 1}; }`);
    fs.writeFileSync(path.join(dir, 'probe.h'), `${declarations.join('\n')}\n`);
    fs.writeFileSync(path.join(dir, 'use.cpp'), `int probe() { return probe${n}(); }\n`);
  };
  const logs = path.join(dir, 'ccache-logs');
  const env = { ...process.env, CCACHE_DIR: path.join(dir, 'ccache'), CCACHE_DEBUG: '1', CCACHE_DEBUGDIR: logs };
  const run = (command: string, args: string[]) => {
    const result = spawnSync(command, args, { cwd: dir, env, encoding: 'utf8' });
    return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
  };
  /** What ccache said of the precompiled header's compiles, oldest first. */
  const headerCompiles = () => {
    if (!fs.existsSync(logs)) return [];
    const found: string[] = [];
    const walk = (at: string) => {
      for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
        const full = path.join(at, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (/cmake_pch\.hxx\.gch\..*ccache-log$/.test(entry.name)) found.push(full);
      }
    };
    walk(logs);
    return found.sort().map((file) => fs.readFileSync(file, 'utf8'));
  };
  return { version, run, headerCompiles };
}

testIf(tools, 'needs ccache, cmake and ninja (scripts/bootstrap.sh installs them)')(
  'a precompiled header is cached on the headers it is built from, never on its old output',
  () => {
    // Bug: ccache took the old .gch for a precompiled header the compile used and keyed the new one on it, so a
    // header changed after a rebuild that changed nothing got the old .gch back from the cache (a declaration
    // added to a header the addon's precompiled header includes went missing).
    const temp = makeTempDir('build-cache');
    try {
      const project = pchProject(temp.dir);
      project.version(1);
      expect(project.run('cmake', ['-S', '.', '-B', 'build', '-G', 'Ninja'])).toMatchObject({ ok: true });
      expect(project.run('ninja', ['-C', 'build'])).toMatchObject({ ok: true });
      // A rebuild that changes nothing (the header touched): the old .gch is there, and must not be the key.
      const later = new Date(Date.now() + 2000);
      fs.utimesSync(path.join(temp.dir, 'probe.h'), later, later);
      expect(project.run('ninja', ['-C', 'build'])).toMatchObject({ ok: true });
      for (let n = 2; n <= 3; n++) {
        project.version(n);
        const build = project.run('ninja', ['-C', 'build']);
        expect([build.ok, build.output]).toEqual([true, expect.any(String)]);
      }
      const compiles = project.headerCompiles();
      expect(compiles.length).toBeGreaterThanOrEqual(4);
      for (const log of compiles) expect(log).not.toMatch(/Detected use of precompiled header: .*cmake_pch\.hxx\.gch/);
      // the touched header's rebuild came from the cache, found by the header's unchanged content
      expect(compiles[1]).toMatch(/Result: direct_cache_hit/);
    } finally {
      temp.cleanup();
    }
  },
  120_000,
);
