import { parseArgs } from 'node:util';

import { writeReport } from '../report/write-report';
import { err, out } from './output';
import { UsageError, type Command, type Flags } from './usage';

const REPORT_FLAGS = {
  out: { type: 'string', default: 'report.html' },
  title: { type: 'string' },
} as const satisfies Flags;

export const reportCommand: Command = {
  flags: REPORT_FLAGS,
  summary: 'Writes one self-contained HTML page comparing run folders',
  usage: `pace report <runDir...> [--out report.html] [--title TEXT]
  Writes one self-contained HTML page (inline SVG charts, nothing fetched) comparing run folders: losses,
  accuracies, learning rate, images per second and, for runs fitted with diagnostics, gradient norm and
  FP-distance per epoch, overlaid and per run, with each run's settings and final numbers. Runs are labelled by
  the settings that differ ("baseline", "σ 0.5"); a folder of run folders (a sweep) counts as its runs and adds
  heatmaps of accuracy against each pair of swept settings.`,
  async run(args) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: REPORT_FLAGS });
    if (positionals.length === 0) throw new UsageError('name at least one run folder');
    const written = await writeReport(positionals, values.out as string, { title: values.title });
    const lines = written.runs.map(({ dir, label }) => `  ${label}: ${dir}`);
    out(
      [
        `report of ${written.runs.length} run(s) written to ${written.file} (${Math.ceil(written.bytes / 1024)} KiB)`,
        ...lines,
      ].join('\n'),
    );
    if (written.unreadable.length > 0) {
      const left = written.unreadable.map(({ dir, reason }) => `  ${dir}: ${reason}`);
      err(
        [`warning: ${written.unreadable.length} run folder(s) could not be read and are left out:`, ...left].join('\n'),
      );
    }
    return 0;
  },
};
