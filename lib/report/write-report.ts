import fs from 'node:fs';
import path from 'node:path';

import { PaceFileError } from '../errors';
import { makeFolder, writeFailure, writeFileAtomic } from '../files';
import { loadD3 } from './d3';
import { renderHtml, REPORT_GENERATOR } from './html';
import { buildReport } from './model';
import { readRunsSettingAside, type UnreadableRun } from './read-runs';

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
  /** Run folders of a sweep folder that could not be read: the page lists them, the charts leave them out. */
  unreadable: UnreadableRun[];
}

/**
 * A report of run folders as one self-contained HTML page (inline SVG charts, no script, nothing fetched): the
 * training curves of every run overlaid and of each run alone, the final numbers and settings, and for sweeps the
 * accuracy-against-settings heatmaps. A folder of run folders counts as its runs.
 */
export async function renderReport(runDirs: string[], options: ReportOptions = {}): Promise<string> {
  return (await reportPage(runDirs, options)).html;
}

/** The run folders read, the report built of them, and its page. */
async function reportPage(runDirs: string[], options: ReportOptions) {
  const { runs, unreadable } = readRunsSettingAside(runDirs);
  const report = buildReport(runs, options.title, unreadable);
  return { report, html: renderHtml(report, await loadD3()) };
}

/**
 * Refuses to replace a file that is not a report (a run's metrics.jsonl given as `--out` was replaced): a page
 * this writes names its generator in its first bytes.
 */
function refuseReplacingOtherFiles(file: string, given: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    return; // nothing there, or nothing readable: the write says why it fails, if it does
  }
  if (stat.isDirectory()) throw new PaceFileError(`cannot write the report to ${given}: it is a folder`);
  const head = Buffer.alloc(1024);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.toString('latin1').includes(`<meta name="generator" content="${REPORT_GENERATOR}">`)) return;
  throw new PaceFileError(
    `${given} exists and is not a pace-peft report: it is left as it is (remove it, or choose another file)`,
  );
}

/** Writes {@link renderReport}'s page to `file` (atomically); an existing file is replaced only if it is a report. */
export async function writeReport(
  runDirs: string[],
  file: string,
  options: ReportOptions = {},
): Promise<WrittenReport> {
  const resolved = path.resolve(file);
  refuseReplacingOtherFiles(resolved, file); // before the runs are read and drawn (a minute for a large sweep)
  const { report, html } = await reportPage(runDirs, options);
  try {
    makeFolder(path.dirname(resolved));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new PaceFileError(`cannot write the report to ${file}: a part of its folder's path is a file`);
    }
    throw writeFailure(error, resolved);
  }
  writeFileAtomic(resolved, html);
  return {
    file: resolved,
    runs: report.runs.map(({ record, label }) => ({ dir: record.dir, label: label.label })),
    bytes: Buffer.byteLength(html),
    unreadable: report.unreadable,
  };
}
