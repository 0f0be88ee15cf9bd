import { dashPattern, heatmap, lineChart, paletteColour, swatch } from './charts';
import type { D3 } from './d3';
import { escapeXml } from './escape';
import { extent } from './extent';
import type { Measured } from './final-numbers';
import { formatValue } from './labels';
import type { ChartModel, ReportModel } from './model';
import type { MetricKey } from './read-runs';

/** Named in every page's head: what tells a file writeReport may replace. */
export const REPORT_GENERATOR = 'pace-peft report';

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 24px auto; max-width: 1320px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; } .muted { color: #666; }
.charts { display: flex; flex-wrap: wrap; gap: 8px 18px; }
figure { margin: 0; } figcaption { font-weight: 600; font-size: 13px; margin: 0 0 2px 8px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #f6f6f6; } td.text, th.text { text-align: left; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 6px 0 10px; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
code { font-size: 12px; }
`;

/** How the runs table shows each final number. */
const COLUMNS: { key: MetricKey; title: string; format: (v: number) => string }[] = [
  { key: 'loss', title: 'loss', format: (v) => v.toFixed(4) },
  { key: 'clsLoss', title: 'classification', format: (v) => v.toFixed(4) },
  { key: 'paceLoss', title: 'consistency', format: (v) => v.toPrecision(3) },
  { key: 'acc', title: 'train acc', format: (v) => `${(100 * v).toFixed(1)}%` },
  { key: 'val_acc', title: 'val acc', format: (v) => `${(100 * v).toFixed(1)}%` },
  { key: 'test_acc', title: 'test acc', format: (v) => `${(100 * v).toFixed(1)}%` },
  { key: 'gradNorm', title: 'grad norm', format: (v) => v.toPrecision(3) },
  { key: 'fpDistance', title: 'FP-distance', format: (v) => v.toPrecision(3) },
];

const numberCell = (key: string, measured: Measured | number | undefined, text: (v: number) => string) => {
  if (measured === undefined) return `<td data-key="${key}">—</td>`;
  const { value, epoch } = typeof measured === 'number' ? { value: measured, epoch: undefined } : measured;
  const at = epoch === undefined ? '' : ` data-epoch="${epoch}" title="epoch ${epoch}"`;
  if (Number.isNaN(value)) return `<td data-key="${key}" data-value="NaN"${at}>not finite</td>`;
  return `<td data-key="${key}" data-value="${value}"${at}>${text(value)}</td>`;
};

function runsTable(report: ReportModel, d3: D3): string {
  const columns = COLUMNS.filter((c) => report.runs.some((run) => run.final.last[c.key]));
  const hasBest = report.runs.some((run) => run.final.bestValAcc);
  const head =
    '<tr><th class="text">run</th><th class="text">folder</th><th>epochs</th>' +
    columns.map((c) => `<th>${c.title}</th>`).join('') +
    (hasBest ? '<th>best val acc</th>' : '') +
    '<th>images/s</th><th>train time</th></tr>';
  const rows = report.runs.map(({ record, label, final }, i) => {
    const colour = paletteColour(d3, label.groupIndex);
    return (
      `<tr data-run="${i}"><td class="text">${swatch(colour, dashPattern(label.dashIndex))} ${escapeXml(label.label)}</td>` +
      `<td class="text"><code title="${escapeXml(record.dir)}">${escapeXml(record.name)}</code></td>` +
      `<td data-key="epochs">${final.epochs}</td>` +
      columns.map((c) => numberCell(c.key, final.last[c.key], c.format)).join('') +
      (hasBest ? numberCell('best_val_acc', final.bestValAcc, (v) => `${(100 * v).toFixed(1)}%`) : '') +
      numberCell('meanImagesPerSecond', final.meanImagesPerSecond, (v) => v.toFixed(0)) +
      numberCell('totalSeconds', final.totalSeconds, (v) => `${v.toFixed(1)} s`) +
      '</tr>'
    );
  });
  return `<table class="runs"><thead>${head}</thead><tbody>${rows.join('')}</tbody></table>`;
}

function settingsTable(report: ReportModel): string {
  const head =
    '<tr><th class="text">run</th>' +
    report.varying
      .map(({ key, name }) => `<th class="text" title="${escapeXml(key)}">${escapeXml(name)}</th>`)
      .join('') +
    '</tr>';
  const rows = report.runs.map(
    ({ label, settings }, i) =>
      `<tr data-run="${i}"><td class="text">${escapeXml(label.label)}</td>` +
      report.varying
        .map(
          ({ key }) =>
            `<td class="text" data-setting="${escapeXml(key)}">${escapeXml(formatValue(settings.get(key)))}</td>`,
        )
        .join('') +
      '</tr>',
  );
  const names = report.varying.map(({ key, name }) => `${escapeXml(name)}: <code>${escapeXml(key)}</code>`).join('; ');
  const varying = report.varying.length
    ? `<p class="muted">Settings that differ between the runs (${names}).</p>` +
      `<table class="settings"><thead>${head}</thead><tbody>${rows.join('')}</tbody></table>`
    : '<p class="muted">The runs share every setting.</p>';
  const common = report.common
    .map(
      ({ key, value }) =>
        `<tr><td class="text"><code>${escapeXml(key)}</code></td><td class="text">${escapeXml(value)}</td></tr>`,
    )
    .join('');
  return (
    `${varying}<details><summary>Settings shared by every run (${report.common.length})</summary>` +
    `<table class="common"><tbody>${common}</tbody></table></details>`
  );
}

/** A run's own charts are smaller: four to a row. */
const SMALL = { width: 290, height: 200 };

function figure(chart: ChartModel, d3: D3): string {
  const size = chart.palette === 'metrics' ? SMALL : undefined;
  return `<figure><figcaption>${escapeXml(chart.title)}</figcaption>${lineChart(chart, d3, size)}</figure>`;
}

function legend(entries: { colour: string; dash: string; text: string }[]): string {
  const items = entries.map((e) => `<span>${swatch(e.colour, e.dash)}${escapeXml(e.text)}</span>`);
  return `<div class="legend">${items.join('')}</div>`;
}

function gridsSection(report: ReportModel, d3: D3): string {
  if (report.grids.length === 0) return '';
  const metricNames = { val_acc: 'validation', test_acc: 'test', acc: 'training' };
  const figures = report.grids.map((grid, i) => {
    const perCell = extent(grid.cells.flat().map((cell) => cell.runs.length))[1];
    const over = grid.averagedOver.length
      ? `, mean over ${grid.averagedOver.join(', ')} (up to ${perCell} runs a cell)`
      : '';
    return (
      `<figure><figcaption>Final ${metricNames[grid.metric]} accuracy${grid.group ? ` of the ${escapeXml(grid.group)}` : ''}: ` +
      `${escapeXml(grid.y.name)} × ${escapeXml(grid.x.name)}` +
      `${escapeXml(over)}</figcaption>${heatmap(grid, `grid-${i}`, d3)}</figure>`
    );
  });
  return `<section id="grids"><h2>Accuracy against settings</h2><div class="charts">${figures.join('')}</div></section>`;
}

/** The numbers behind the report, for programs: every run's epochs as read, labels, final numbers and grids. */
function dataBlock(report: ReportModel): string {
  const data = {
    format: 'pace-peft-report',
    version: 1,
    runs: report.runs.map(({ record, label, final, settings }) => ({
      label: label.label,
      group: label.group,
      dir: record.dir,
      source: record.source,
      settings: Object.fromEntries(report.varying.map(({ key }) => [key, settings.get(key) ?? null])),
      final,
      epochs: record.epochs,
    })),
    charts: [...report.overview, ...report.perRun.flat()].map((chart) => chart.id),
    grids: report.grids,
  };
  const json = JSON.stringify(data).replace(/</g, '\\u003c');
  return `<script type="application/json" id="pace-report-data">${json}</script>`;
}

/** The run folders left out because they could not be read, each with its reason. */
function unreadableList(report: ReportModel): string {
  if (report.unreadable.length === 0) return '';
  const items = report.unreadable.map(
    ({ dir, reason }) => `<li><code>${escapeXml(dir)}</code>: ${escapeXml(reason)}</li>`,
  );
  return `<div id="unreadable"><p>Left out, as they could not be read:</p><ul>${items.join('')}</ul></div>`;
}

/** The whole report: one HTML file with inline CSS and SVG, no script to run and nothing to fetch. */
export function renderHtml(report: ReportModel, d3: D3): string {
  const runLegend = legend(
    report.runs.map(({ label }) => ({
      colour: paletteColour(d3, label.groupIndex),
      dash: dashPattern(label.dashIndex),
      text: label.label,
    })),
  );
  const perRun = report.runs.map(({ record, label }, i) => {
    const charts = report.perRun[i];
    const keys = [...new Map(charts.flatMap((c) => c.series).map((s) => [s.key, s])).values()];
    return (
      `<section class="run" data-run="${i}"><h3>${escapeXml(label.label)} <span class="muted">` +
      `<code>${escapeXml(record.dir)}</code></span></h3>` +
      legend(keys.map((s) => ({ colour: paletteColour(d3, s.colour, 'metrics'), dash: '', text: s.name }))) +
      `<div class="charts">${charts.map((c) => figure(c, d3)).join('')}</div></section>`
    );
  });
  const count = report.runs.length;
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<meta name="generator" content="${REPORT_GENERATOR}">`,
    `<title>${escapeXml(report.title)}</title><style>${STYLE}</style></head><body>`,
    `<h1>${escapeXml(report.title)}</h1>`,
    `<p class="muted">${count === 1 ? '1 run.' : `${count} runs, labelled by the settings that differ between them.`}</p>`,
    `<section id="runs"><h2>Runs</h2>${unreadableList(report)}${runsTable(report, d3)}</section>`,
    `<section id="overview"><h2>Across runs</h2>${runLegend}`,
    `<div class="charts">${report.overview.map((c) => figure(c, d3)).join('')}</div></section>`,
    gridsSection(report, d3),
    `<section id="each-run"><h2>Each run</h2>${perRun.join('\n')}</section>`,
    `<section id="settings"><h2>Settings</h2>${settingsTable(report)}</section>`,
    dataBlock(report),
    '</body></html>',
    '',
  ].join('\n');
}
