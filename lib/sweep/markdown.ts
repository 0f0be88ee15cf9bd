import { DOMAIN_SHIFT_SETS, domainShiftSet } from '../data/domain-shift';
import { scoringNote } from '../eval/domain-shift-table';
import { accuracyCell, percent } from './accuracy-cell';
import type { Summary, SweepResults } from './results';
import { meanOf } from './stats';
import { VTAB_GROUPS } from './vtab-groups';

/** A cell's text as Markdown keeps it in its cell: a `|` would split it, a line break end the row. */
const cell = (text: string): string =>
  text
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|')
    .replace(/\r?\n|\r/g, ' ');

const table = (header: string[], rows: string[][]): string =>
  [
    `| ${header.map(cell).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');

/** The rows of a table: under `select` one row (each task's chosen point), under `grid` one per point. */
function rowKey(results: SweepResults, summary: Summary): string {
  return results.protocol === 'select' ? 'selected per task' : summary.label;
}

function inOrder<T>(values: T[]): T[] {
  return [...new Set(values)];
}

/**
 * VTAB-1k as the paper's Table 1: the tasks by group, each group's mean after its tasks, then the mean of the
 * group means. The columns are the sweep's tasks, those without a result yet included: a group's mean is shown
 * once every one of its tasks has a result (a mean over some would not be the group's), the overall mean once
 * every group's is.
 */
export function vtabTable(results: SweepResults, summaries: Summary[]): string {
  const planned = results.seeds.length;
  const swept = new Set([...results.rows, ...summaries].flatMap((r) => (r.task?.kind === 'vtab' ? [r.task.name] : [])));
  const groups = VTAB_GROUPS.map((group) => ({
    name: group.name,
    tasks: group.tasks.filter((task) => swept.has(task)),
  })).filter((group) => group.tasks.length > 0);
  const header = ['Setting', ...groups.flatMap((g) => [...g.tasks, `**${g.name}**`]), '**Mean**'];
  const rows = inOrder(summaries.map((s) => rowKey(results, s))).map((key) => {
    const of = summaries.filter((s) => rowKey(results, s) === key);
    const groupMeans: (number | undefined)[] = [];
    const cells = groups.flatMap((group) => {
      const found = group.tasks.map((task) => of.find((s) => s.task?.name === task));
      const complete = found.every((s) => s !== undefined && s.n > 0);
      const mean = complete ? meanOf(found.map((s) => s?.mean)) : undefined;
      groupMeans.push(mean);
      return [
        ...found.map((s) => (s ? accuracyCell(s, planned) : '—')),
        mean === undefined ? '—' : `**${percent(mean)}**`,
      ];
    });
    const overall = groupMeans.every((mean) => mean !== undefined) ? meanOf(groupMeans) : undefined;
    return [key, ...cells, overall === undefined ? '—' : `**${percent(overall)}**`];
  });
  return table(header, rows);
}

/** Few-shot results: one row per dataset (and point), one column per shot count. */
export function fewShotTable(results: SweepResults, summaries: Summary[]): string {
  const shots = inOrder(summaries.map((s) => s.task?.shots as number)).sort((a, b) => a - b);
  const keys = inOrder(summaries.map((s) => JSON.stringify([s.task?.dataset, rowKey(results, s)])));
  const rows = keys.map((key) => {
    const [dataset, row] = JSON.parse(key) as [string, string];
    const cells = shots.map((k) => {
      const found = summaries.find(
        (s) => s.task?.dataset === dataset && s.task?.shots === k && rowKey(results, s) === row,
      );
      return found ? accuracyCell(found, results.seeds.length) : '—';
    });
    return [dataset, row, ...cells];
  });
  return table(['Dataset', 'Setting', ...shots.map((k) => `${k}-shot`)], rows);
}

/**
 * Domain adaptation as the paper's table: one row per task and setting, one column per evaluated set (the source
 * first), then the mean over the shifted sets.
 */
export function domainShiftTable(results: SweepResults, summaries: Summary[]): string {
  const names = DOMAIN_SHIFT_SETS.map((s) => s.name).filter((name) => summaries.some((s) => s.sets?.[name]));
  const titles = names.map((name) => {
    const set = domainShiftSet(name);
    return set.source ? `${set.title} (source)` : set.title;
  });
  const rows = summaries.map((s) => [
    s.task?.name ?? '—',
    rowKey(results, s),
    ...names.map((name) => {
      const cell = s.sets?.[name];
      return cell ? accuracyCell(cell, results.seeds.length) + scoringNote(name, s.scoring?.[name]) : '—';
    }),
    accuracyCell(s, results.seeds.length),
  ]);
  return table(['Task', 'Setting', ...titles, 'Mean (targets)'], rows);
}

/** Other tasks (and a sweep without tasks): one row per task and point. */
export function plainTable(results: SweepResults, summaries: Summary[]): string {
  return table(
    ['Task', 'Setting', 'Accuracy (%)', 'Seeds', 'Metric'],
    summaries.map((s) => [s.task?.name ?? '—', s.label, accuracyCell(s, results.seeds.length), String(s.n), s.metric]),
  );
}

function selectionTable(results: SweepResults): string {
  return table(
    ['Task', 'Selected', 'Validation accuracy (%)', 'Points (finished)'],
    results.selections.map((s) => [
      s.task?.name ?? '—',
      s.label ?? '— (no finished tuning run)',
      s.valAcc === undefined ? '—' : percent(s.valAcc),
      `${s.candidates} (${s.finished})`,
    ]),
  );
}

/** `results.md`: the sweep's tables in the paper's layout, accuracies in percent as mean ± std over seeds. */
export function resultsMarkdown(results: SweepResults): string {
  const { summaries } = results;
  const seeds = results.seeds.length;
  const protocol =
    results.protocol === 'select'
      ? `Each point ran once on each task's tuning split; the best by validation accuracy then ran on the ` +
        `evaluation split with ${seeds} seed(s) (${results.seeds.join(', ')}).`
      : `Every point ran with ${seeds} seed(s) (${results.seeds.join(', ')}), nothing selected.`;
  const parts = [
    '# Sweep results',
    `${protocol} Accuracy in percent: the last measured test accuracy (validation where most runs have no test ` +
      'set), mean ± standard deviation over the seeds (population std); a single seed shows its value alone, and ' +
      `a cell over fewer seeds than the ${seeds} planned says how many (n=1 of ${seeds}). VTAB group columns are ` +
      "the means of their tasks' means, shown once every task of the group has a result; Mean is the mean of " +
      'the group means, shown once every group has one.',
  ];
  if (results.protocol === 'select') parts.push('## Selection on the tuning split', selectionTable(results));
  const vtab = summaries.filter((s) => s.task?.kind === 'vtab');
  const fewShot = summaries.filter((s) => s.task?.kind === 'fewShot');
  const domainShift = summaries.filter((s) => s.task?.kind === 'domainShift');
  const plain = summaries.filter(
    (s) => s.task?.kind !== 'vtab' && s.task?.kind !== 'fewShot' && s.task?.kind !== 'domainShift',
  );
  if (vtab.length > 0) parts.push('## VTAB-1k', vtabTable(results, vtab));
  if (fewShot.length > 0) parts.push('## Few-shot', fewShotTable(results, fewShot));
  if (domainShift.length > 0) {
    parts.push(
      '## Domain adaptation',
      "Top-1 of each set from the runs' domain-shift.json (ImageNet-A's and -R's logits restricted to their " +
        'classes; a cell scored otherwise names its classes, and "squashed" its resize); Mean (targets) is the ' +
        'mean over the shifted sets shown.',
      domainShiftTable(results, domainShift),
    );
  }
  if (plain.length > 0)
    parts.push(
      vtab.length + fewShot.length + domainShift.length > 0 ? '## Other tasks' : '## Results',
      plainTable(results, plain),
    );
  const unreadable = results.rows.filter((row) => row.problem !== undefined);
  if (unreadable.length > 0) {
    parts.push(
      "Finished, but their numbers could not be read (left out of the tables; fix or remove the run's " +
        'finished.json to have it read or run again):',
      // a problem quotes the file, which may hold lines of its own: one line each, as a table's cells are
      unreadable.map((row) => `- ${row.name}: ${(row.problem ?? '').replace(/\s*[\r\n]+\s*/g, ' ')}`).join('\n'),
    );
  }
  const waiting = results.rows.filter((row) => row.status !== 'finished');
  if (waiting.length > 0) {
    parts.push(
      `Not finished: ${waiting.map((row) => `${row.name}${row.status === 'failed' ? ' (failed)' : ''}`).join(', ')}.`,
    );
  }
  return `${parts.join('\n\n')}\n`;
}
