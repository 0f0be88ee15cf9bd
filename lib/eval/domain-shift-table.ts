import { DOMAIN_SHIFT_SETS } from '../data/domain-shift';
import type { DomainShiftReport } from './domain-shift';

const percent = (value: number | undefined) => (value === undefined ? '–' : (100 * value).toFixed(1));

/**
 * A markdown table of domain-adaptation results in the paper's layout: one row per labelled report, top-1 in
 * percent with one decimal, the source (ImageNet) first, then -Sketch, -V2, -A, -R and the mean over the
 * targets. Only the columns some report has are shown; a set a row lacks reads `–`, and so does its mean (over
 * fewer targets, it would not compare with the others).
 */
export function formatDomainShiftTable(rows: { label: string; report: DomainShiftReport }[]): string {
  const columns = DOMAIN_SHIFT_SETS.filter((set) =>
    rows.some((row) => row.report.sets.some((s) => s.name === set.name)),
  );
  const withTargets = columns.some((set) => !set.source);
  const header = ['Method', ...columns.map((set) => (set.source ? `${set.title} (source)` : set.title))];
  if (withTargets) header.push('Mean (targets)');
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const { label, report } of rows) {
    const cells = columns.map((set) => percent(report.sets.find((s) => s.name === set.name)?.result.top1));
    // A mean over fewer targets than the table shows would not compare with the other rows' means.
    const complete = columns.every((set) => set.source || report.sets.some((s) => s.name === set.name));
    if (withTargets) cells.push(percent(complete ? report.targetMean : undefined));
    lines.push(`| ${[label.replace(/\|/g, '\\|'), ...cells].join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}
