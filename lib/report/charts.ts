import type { D3 } from './d3';
import { escapeXml } from './escape';
import { extent } from './extent';
import type { SettingGrid } from './grids';
import { formatValue } from './labels';
import type { ChartModel } from './model';

/** A line chart's default size and the margins around its plot area, in CSS pixels. */
export const CHART_SIZE = { width: 400, height: 230 };
const MARGIN = { top: 12, right: 14, bottom: 34, left: 58 };

/** Dash patterns for the repeats of a group (seeds): solid, then dashed and dotted. */
const DASHES = ['', '6 3', '2 3', '9 3 2 3', '1 3', '12 4'];

const FONT = 'font-family="system-ui, sans-serif" font-size="11"';

/** A colour of a palette, cycling: d3's Tableau 10 for runs, Dark 2 for the metrics of one run's charts. */
export function paletteColour(d3: D3, index: number, palette: 'runs' | 'metrics' = 'runs'): string {
  const scheme = palette === 'runs' ? d3.chromatic.schemeTableau10 : d3.chromatic.schemeDark2;
  return scheme[index % scheme.length];
}

/** The dash pattern of a run's place among its group's repeats. */
export function dashPattern(index: number): string {
  return DASHES[index % DASHES.length];
}

/** An inline swatch (a short line in the series' colour and dash) for legends. */
export function swatch(colour: string, dash: string): string {
  return (
    `<svg class="swatch" width="26" height="10" aria-hidden="true"><line x1="1" y1="5" x2="25" y2="5" ` +
    `stroke="${colour}" stroke-width="2.5"${dash ? ` stroke-dasharray="${dash}"` : ''}/></svg>`
  );
}

/**
 * A long series' points thinned to what its plot can show: in each pixel column, its first, lowest, highest and
 * last point, in order (the line's every extreme stays). A 3,000-epoch run drew 3,000 vertices into 330 columns,
 * and a few hundred such runs made a page larger than a string can be.
 */
export function thinned(points: [number, number][], columnOf: (epoch: number) => number, columns: number) {
  if (points.length <= 4 * columns) return points;
  const kept: [number, number][] = [];
  for (let start = 0; start < points.length;) {
    const column = Math.floor(columnOf(points[start][0]));
    let [end, lowest, highest] = [start, start, start];
    while (end + 1 < points.length && Math.floor(columnOf(points[end + 1][0])) === column) {
      end++;
      if (points[end][1] < points[lowest][1]) lowest = end;
      if (points[end][1] > points[highest][1]) highest = end;
    }
    for (const i of [...new Set([start, lowest, highest, end])].sort((a, b) => a - b)) kept.push(points[i]);
    start = end + 1;
  }
  return kept;
}

function valueDomain(values: number[]): [number, number] {
  let [lo, hi] = extent(values);
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  return [lo, hi];
}

/**
 * A line chart of per-epoch values (d3 scales for the axes' domains and ticks, d3-shape for the paths) as an SVG
 * element. The element says where its plot area is and what its axes span (`data-plot`, `data-x-domain`,
 * `data-y-domain`), so readers (and tests) can map drawn points back to values.
 */
export function lineChart(chart: ChartModel, d3: D3, size = CHART_SIZE): string {
  const { width, height } = size;
  const plot = {
    x: MARGIN.left,
    y: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right,
    height: height - MARGIN.top - MARGIN.bottom,
  };
  const points = chart.series.flatMap((s) => s.points);
  const [firstEpoch, lastEpoch] = [chart.epochs[0], Math.max(chart.epochs[0] + 1, chart.epochs[1])];
  const x = d3.scale
    .scaleLinear()
    .domain([firstEpoch, lastEpoch])
    .range([plot.x, plot.x + plot.width]);
  const y = d3.scale
    .scaleLinear()
    .domain(valueDomain(points.map((p) => p[1])))
    .nice(5)
    .range([plot.y + plot.height, plot.y]);
  const yFormat = chart.percent ? y.tickFormat(5, '%') : y.tickFormat(5);
  const xTicks = x.ticks(Math.min(6, lastEpoch - firstEpoch)).filter(Number.isInteger);
  const line = d3.shape
    .line<[number, number]>()
    .x((p) => x(p[0]))
    .y((p) => y(p[1]))
    .digits(3);
  const bottom = plot.y + plot.height;
  const grid = y
    .ticks(5)
    .map(
      (t) =>
        `<line x1="${plot.x}" x2="${plot.x + plot.width}" y1="${y(t)}" y2="${y(t)}" stroke="#e6e6e6"/>` +
        `<text x="${plot.x - 6}" y="${y(t)}" dy="0.32em" text-anchor="end">${escapeXml(yFormat(t))}</text>`,
    )
    .join('');
  const xAxis = xTicks
    .map(
      (t) =>
        `<line x1="${x(t)}" x2="${x(t)}" y1="${bottom}" y2="${bottom + 4}" stroke="#888"/>` +
        `<text x="${x(t)}" y="${bottom + 15}" text-anchor="middle">${t}</text>`,
    )
    .join('');
  const lines = chart.series
    .map((s) => {
      const drawn = thinned(s.points, x, plot.width);
      const colour = paletteColour(d3, s.colour, chart.palette);
      const dash = dashPattern(s.dash);
      const attributes =
        `class="series" data-run="${s.run}" data-key="${s.key}" data-points="${s.points.length}" ` +
        `stroke="${colour}" fill="none" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}`;
      const path =
        s.points.length > 1 ? `<path ${attributes} d="${line(drawn)}"><title>${escapeXml(s.name)}</title></path>` : '';
      const markers = s.markers
        ? drawn
            .map(([e, v]) => `<circle cx="${x(e).toFixed(3)}" cy="${y(v).toFixed(3)}" r="3" fill="${colour}"/>`)
            .join('')
        : '';
      return `<g class="run" data-run="${s.run}" data-key="${s.key}">${path}${markers}</g>`;
    })
    .join('');
  const [y0, y1] = y.domain();
  return (
    `<svg class="chart" data-chart="${escapeXml(chart.id)}" viewBox="0 0 ${width} ${height}" width="${width}" ` +
    `height="${height}" role="img" aria-label="${escapeXml(chart.title)}" ` +
    `data-plot="${plot.x} ${plot.y} ${plot.width} ${plot.height}" data-x-domain="${firstEpoch} ${lastEpoch}" ` +
    `data-y-domain="${y0} ${y1}" ${FONT} fill="#333">` +
    `<g class="axes">${grid}${xAxis}<line x1="${plot.x}" x2="${plot.x + plot.width}" y1="${bottom}" y2="${bottom}" ` +
    `stroke="#888"/><text x="${plot.x + plot.width / 2}" y="${height - 4}" text-anchor="middle">epoch</text></g>` +
    `<g class="plot">${lines}</g></svg>`
  );
}

/** Heatmap cells' size and the room for the axes and the colour bar. */
const CELL = { width: 64, height: 34 };
const HEAT_MARGIN = { top: 24, right: 86, bottom: 40, left: 84 };

/** A cell one of whose runs ended with its accuracy not finite: outside the colour scale, as the table says. */
const NOT_FINITE_FILL = '#f4c7c3';

/**
 * A heatmap of accuracy against two settings (d3's YlGnBu scheme over the cells' range); each cell is labelled
 * with its value and holds `data-value` and `data-runs`. Empty cells (no run made there) are grey; a cell with a
 * run whose accuracy ended not finite says so (`data-value="NaN"`) and is left out of the scale.
 */
export function heatmap(grid: SettingGrid, id: string, d3: D3): string {
  const nx = grid.x.values.length;
  const ny = grid.y.values.length;
  const width = HEAT_MARGIN.left + nx * CELL.width + HEAT_MARGIN.right;
  const height = HEAT_MARGIN.top + ny * CELL.height + HEAT_MARGIN.bottom;
  const means = grid.cells.flat().flatMap((cell) => (cell.mean === undefined ? [] : [cell.mean]));
  const [lo, hi] = means.length > 0 ? valueDomain(means) : [0, 1]; // (every cell not finite: the bar spans 0–100 %)
  const colour = d3.scale.scaleSequential(d3.chromatic.interpolateYlGnBu).domain([lo, hi]);
  const percent = (v: number) => `${(100 * v).toFixed(1)}%`;
  // Rows from the top: the largest y value first, as on a plot's y axis.
  const top = (yi: number) => HEAT_MARGIN.top + (ny - 1 - yi) * CELL.height;
  const left = (xi: number) => HEAT_MARGIN.left + xi * CELL.width;
  const cells = grid.cells
    .flatMap((row, yi) =>
      row.map((cell, xi) => {
        const fill = cell.mean !== undefined ? colour(cell.mean) : cell.notFinite ? NOT_FINITE_FILL : '#eee';
        const dark = cell.mean !== undefined && (cell.mean - lo) / (hi - lo) > 0.6;
        const text = cell.mean !== undefined ? percent(cell.mean) : cell.notFinite ? 'not finite' : '–';
        const value = cell.mean !== undefined ? cell.mean : cell.notFinite ? 'NaN' : undefined;
        return (
          `<g class="cell" data-x="${xi}" data-y="${yi}" data-runs="${cell.runs.join(' ')}"` +
          `${value === undefined ? '' : ` data-value="${value}"`}>` +
          `<rect x="${left(xi)}" y="${top(yi)}" width="${CELL.width - 2}" height="${CELL.height - 2}" fill="${fill}"/>` +
          `<text x="${left(xi) + CELL.width / 2 - 1}" y="${top(yi) + CELL.height / 2}" dy="0.32em" text-anchor="middle" ` +
          `fill="${dark ? '#fff' : '#222'}">${text}</text></g>`
        );
      }),
    )
    .join('');
  const xLabels = grid.x.values
    .map(
      (v, xi) =>
        `<text x="${left(xi) + CELL.width / 2 - 1}" y="${HEAT_MARGIN.top + ny * CELL.height + 14}" ` +
        `text-anchor="middle">${escapeXml(formatValue(v))}</text>`,
    )
    .join('');
  const yLabels = grid.y.values
    .map(
      (v, yi) =>
        `<text x="${HEAT_MARGIN.left - 6}" y="${top(yi) + CELL.height / 2}" dy="0.32em" text-anchor="end">` +
        `${escapeXml(formatValue(v))}</text>`,
    )
    .join('');
  const barX = HEAT_MARGIN.left + nx * CELL.width + 18;
  const barHeight = ny * CELL.height - 2;
  const steps = 24;
  const bar = Array.from({ length: steps }, (_, i) => {
    const value = lo + ((hi - lo) * (i + 0.5)) / steps;
    const y = HEAT_MARGIN.top + barHeight - ((i + 1) * barHeight) / steps;
    return `<rect x="${barX}" y="${y.toFixed(2)}" width="12" height="${(barHeight / steps + 0.5).toFixed(2)}" fill="${colour(value)}"/>`;
  }).join('');
  return (
    `<svg class="heatmap" data-chart="${escapeXml(id)}" data-metric="${grid.metric}" viewBox="0 0 ${width} ${height}" ` +
    `width="${width}" height="${height}" role="img" aria-label="${escapeXml(`${grid.metric} against ${grid.x.name} and ${grid.y.name}`)}" ` +
    `${FONT} fill="#333"><g class="plot">${cells}</g><g class="axes">${xLabels}${yLabels}` +
    `<text x="${HEAT_MARGIN.left + (nx * CELL.width) / 2}" y="${height - 6}" text-anchor="middle" font-weight="600">` +
    `${escapeXml(grid.x.name)}</text><text x="${HEAT_MARGIN.left - 6}" y="${HEAT_MARGIN.top - 8}" text-anchor="end" ` +
    `font-weight="600">${escapeXml(grid.y.name)}</text>${bar}` +
    `<text x="${barX + 16}" y="${HEAT_MARGIN.top + 4}" dy="0.32em">${percent(hi)}</text>` +
    `<text x="${barX + 16}" y="${HEAT_MARGIN.top + barHeight - 4}" dy="0.32em">${percent(lo)}</text></g></svg>`
  );
}
