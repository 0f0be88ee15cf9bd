// Regenerates docs/report.png, the README's picture of a run report, by the same path as the tests and the demo:
// the demo's two runs (baseline and PACE, one seed, diagnostics on) written by writeReport, opened in headless
// Chromium (test/support/chromium.ts), the runs table and the overlaid charts screenshotted and shrunk.
// Usage: tsx scripts/report-picture.ts [--out docs/report.png] [--epochs 60]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { visitPage } from '../test/support/chromium';

const root = path.resolve(__dirname, '..');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: path.join(root, 'docs', 'report.png') },
      epochs: { type: 'string', default: '60' },
    },
  });
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-report-picture-'));
  try {
    const demo = spawnSync(
      process.execPath,
      [
        path.join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'),
        path.join(root, 'examples', 'demo.ts'),
        ...['--seeds', '1', '--epochs', values.epochs as string, '--runs', runs],
      ],
      { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
    process.stdout.write(demo.stdout);
    if (demo.status !== 0) throw new Error(`the demo failed (exit ${demo.status})`);
    const report = /^report of the \d+ runs \(open it in a browser\): (.+)$/m.exec(demo.stdout)?.[1];
    if (!report) throw new Error('the demo did not print where its report is');

    const width = 1280;
    const visit = await visitPage<number>(`file://${report}`, {
      viewport: { width, height: 900 },
      evaluate: `document.getElementById('overview').getBoundingClientRect().bottom + scrollY`,
    });
    if (visit.errors.length > 0) throw new Error(`the report logged errors: ${visit.errors.join('; ')}`);
    const bottom = Math.ceil(visit.value) + 8;
    const picture = await sharp(visit.screenshot)
      .extract({ left: 0, top: 0, width, height: Math.min(bottom, visit.size.height) })
      .resize({ width: 960 })
      .png({ palette: true, colours: 64, compressionLevel: 9 })
      .toBuffer();
    fs.mkdirSync(path.dirname(values.out as string), { recursive: true });
    fs.writeFileSync(values.out as string, picture);
    console.log(`\n${values.out}: ${Math.round(picture.length / 1024)} KiB, from ${report}`);
  } finally {
    fs.rmSync(runs, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
