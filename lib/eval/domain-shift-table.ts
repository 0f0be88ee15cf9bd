import { DOMAIN_SHIFT_SETS, IMAGENET_CLASSES, domainShiftSet, type DomainShiftResize } from '../data/domain-shift';
import type { DomainShiftReport } from './domain-shift';

/** How a set was scored: over how many classes, its images resized how (absent: given as they are). */
export interface DomainShiftScoring {
  classes: number;
  resize?: DomainShiftResize;
}

/**
 * What a cell adds where a set was scored otherwise than by default (its own classes, the centre crop):
 * ` (1000 classes, squashed)` for ImageNet-A scored as NOAH's code does, `` otherwise; seeds of one cell scored
 * differently say so.
 */
export function scoringNote(name: string, scoring: DomainShiftScoring | 'mixed' | undefined): string {
  if (!scoring) return '';
  if (scoring === 'mixed') return ' (seeds scored differently)';
  const own = domainShiftSet(name).classes?.length ?? IMAGENET_CLASSES;
  const notes = [
    ...(scoring.classes !== own ? [`${scoring.classes} classes`] : []),
    ...(scoring.resize === 'squash-crop' ? ['squashed'] : []),
  ];
  return notes.length > 0 ? ` (${notes.join(', ')})` : '';
}

const percent = (value: number | undefined) => (value === undefined ? '–' : (100 * value).toFixed(1));

/**
 * A markdown table of domain-adaptation results in the paper's layout: one row per labelled report, top-1 in
 * percent with one decimal, the source (ImageNet) first, then -Sketch, -V2, -A, -R and the mean over the
 * targets. Only the columns some report has are shown; a set a row lacks reads `–`, and so does its mean (over
 * fewer targets, it would not compare with the others). A mean over other than the paper's four targets says over
 * how many; a set scored over other classes than its own (ImageNet-A over all 1,000, say) says over how many,
 * and one resized by squashing (NOAH's Resize((256, 256)) and centre crop) says so.
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
      return percent(result?.top1) + scoringNote(set.name, result);
    });
    // A mean over fewer targets than the table shows would not compare with the other rows' means.
    const complete = columns.every((set) => set.source || report.sets.some((s) => s.name === set.name));
    if (targets > 0) cells.push(percent(complete ? report.targetMean : undefined));
    lines.push(`| ${[label.replace(/\|/g, '\\|'), ...cells].join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}
