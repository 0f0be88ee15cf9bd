import type { SweepResults } from './results';

/** A CSV cell: quoted when it holds a comma, quote or line break. */
function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  const text = typeof value === 'string' ? value : typeof value === 'number' ? String(value) : JSON.stringify(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * `results.csv`: one row per run, with its stage, task, the value of each swept option, seed, folder, status and
 * final numbers at full precision (the last measured validation and test accuracy, as its finished.json records
 * them).
 */
export function resultsCsv(results: SweepResults): string {
  // Domain-adaptation runs add each evaluated set's top-1 (column `top1:<set>`).
  const sets = [...new Set(results.rows.flatMap((row) => Object.keys(row.metrics.domainShift ?? {})))];
  // A finished run whose numbers could not be read says why (column `problem`, present only then).
  const problems = results.rows.some((row) => row.problem !== undefined);
  const header = [
    'stage',
    'task',
    'group',
    'shots',
    ...results.paths,
    'seed',
    'run',
    'status',
    'epochs',
    'val_acc',
    'test_acc',
    ...sets.map((name) => `top1:${name}`),
    ...(problems ? ['problem'] : []),
  ];
  const lines = results.rows.map((row) => {
    const setting = new Map(row.setting);
    return [
      row.stage,
      row.task?.name,
      row.task?.group,
      row.task?.shots,
      ...results.paths.map((p) => setting.get(p)),
      row.seed,
      row.name,
      row.status,
      row.metrics.epochs,
      row.metrics.val_acc,
      row.metrics.test_acc,
      ...sets.map((name) => row.metrics.domainShift?.[name]),
      ...(problems ? [row.problem] : []),
    ]
      .map(cell)
      .join(',');
  });
  return `${[header.map(cell).join(','), ...lines].join('\n')}\n`;
}
