import fs from 'node:fs';
import path from 'node:path';

import { writeFileAtomic } from '../files';
import { loadD3 } from './d3';
import { renderHtml } from './html';
import { buildReport } from './model';
import { readRuns } from './read-runs';

/** Options of {@link writeReport} and {@link renderReport}. */
export interface ReportOptions {
  /** The page's heading (default `pace-peft run report`). */
  title?: string;
}

/** What {@link writeReport} wrote. */
export interface WrittenReport {
  /** The HTML file, resolved. */
  file: string;
  /** Each run's folder and label, in the report's order. */
  runs: { dir: string; label: string }[];
  /** Its size in bytes. */
  bytes: number;
}

/**
 * A report of run folders as one self-contained HTML page (inline SVG charts, no script, nothing fetched): the
 * training curves of every run overlaid and of each run alone, the final numbers and settings, and for sweeps the
 * accuracy-against-settings heatmaps. A folder of run folders counts as its runs.
 */
export async function renderReport(runDirs: string[], options: ReportOptions = {}): Promise<string> {
  const report = buildReport(readRuns(runDirs), options.title);
  return renderHtml(report, await loadD3());
}

/** Writes {@link renderReport}'s page to `file` (atomically). */
export async function writeReport(
  runDirs: string[],
  file: string,
  options: ReportOptions = {},
): Promise<WrittenReport> {
  const report = buildReport(readRuns(runDirs), options.title);
  const html = renderHtml(report, await loadD3());
  const resolved = path.resolve(file);
  fs.mkdirSync(path.dirname(resolved), { recursive: true });
  writeFileAtomic(resolved, html);
  return {
    file: resolved,
    runs: report.runs.map(({ record, label }) => ({ dir: record.dir, label: label.label })),
    bytes: Buffer.byteLength(html),
  };
}
