import { DOMAIN_SHIFT_SETS, IMAGENET_CLASSES } from '../data/domain-shift';
import type { DomainShiftReport } from './domain-shift';

const percent = (value: number | undefined) => (value === undefined ? '–' : (100 * value).toFixed(1));

/**
 * A markdown table of domain-adaptation results in the paper's layout: one row per labelled report, top-1 in
 * percent with one decimal, the source (ImageNet) first, then -Sketch, -V2, -A, -R and the mean over the
 * targets. Only the columns some report has are shown; a set a row lacks reads `–`, and so does its mean (over
 * fewer targets, it would not compare with the others). A mean over other than the paper's four targets says over
 * how many; a set scored over other classes than its own (ImageNet-A over all 1,000, say) says over how many.
 */
export function formatDomainShiftTable(rows: { label: string; report: DomainShiftReport }[]): string {
  const columns = DOMAIN_SHIFT_SETS.filter((set) =>
    rows.some((row) => row.report.sets.some((s) => s.name === set.name)),
  );
  const targets = columns.filter((set) => !set.source).length;
  const all = DOMAIN_SHIFT_SETS.filter((set) => !set.source).length;
  const header = ['Method', ...columns.map((set) => (set.source ? `${set.title} (source)` : set.title))];
  if (targets > 0) header.push(targets === all ? 'Mean (targets)' : `Mean (${targets} targets)`);
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const { label, report } of rows) {
    const cells = columns.map((set) => {
      const result = report.sets.find((s) => s.name === set.name)?.result;
      const own = set.classes?.length ?? IMAGENET_CLASSES;
      return percent(result?.top1) + (result && result.classes !== own ? ` (${result.classes} classes)` : '');
    });
    // A mean over fewer targets than the table shows would not compare with the other rows' means.
    const complete = columns.every((set) => set.source || report.sets.some((s) => s.name === set.name));
    if (targets > 0) cells.push(percent(complete ? report.targetMean : undefined));
    lines.push(`| ${[label.replace(/\|/g, '\\|'), ...cells].join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}
