// A live line chart in SVG, drawn by hand (no library): the last few minutes of a few series, with a
// grid, a y axis on round numbers, a legend with the latest values and a hover readout.

import { h, number, svg, replace, formatTime } from './dom.js';

const HEIGHT = 170;
const PAD = { top: 10, right: 12, bottom: 22, left: 46 };

/** The axis top, the smallest "round" number (1, 2 or 5 × 10^k) at or above `value`, and how many
 * grid steps divide it into round numbers too. */
function niceScale(value) {
  if (value <= 0) return { top: 4, steps: 4 };
  if (value <= 1) return { top: 1, steps: 5 };
  const power = 10 ** Math.floor(Math.log10(value));
  for (const [lead, steps] of [[1, 5], [2, 4], [5, 5], [10, 5]]) {
    if (lead * power >= value) return { top: lead * power, steps };
  }
  return { top: 10 * power, steps: 5 };
}

export class LineChart {
  /**
   * @param {{title: string, series: {key: string, label: string}[], windowSeconds?: number,
   *   format?: (n: number) => string, minTop?: number}} options; `minTop` keeps a chart of small
   *   counts on whole-number grid lines
   */
  constructor({ title, series, windowSeconds = 300, format = number, minTop = 0 }) {
    this.series = series;
    this.minTop = minTop;
    this.windowMs = windowSeconds * 1000;
    this.format = format;
    this.points = [];
    this.hover = null;
    this.legend = h('div', { class: 'legend' });
    this.plot = h('div', { class: 'plot' });
    this.el = h('section', { class: 'card chart' }, h('header', {}, h('h3', { text: title }), this.legend), this.plot);
    this.width = 0;
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.plot);
    this.plot.addEventListener('mousemove', (event) => this.pointAt(event));
    this.plot.addEventListener('mouseleave', () => {
      this.hover = null;
      this.draw();
    });
  }

  /** Adds a sample: `values` by series key (null: no value, e.g. the first rate). */
  push(time, values) {
    this.points.push({ time, values });
    const oldest = time - this.windowMs - 5000;
    while (this.points.length && this.points[0].time < oldest) this.points.shift();
    this.draw();
  }

  dispose() {
    this.resize.disconnect();
  }

  pointAt(event) {
    if (!this.points.length || !this.width) return;
    const box = this.plot.getBoundingClientRect();
    const now = this.points[this.points.length - 1].time;
    const time = now - this.windowMs + ((event.clientX - box.left - PAD.left) / (this.width - PAD.left - PAD.right)) * this.windowMs;
    let best = null;
    for (const point of this.points) if (!best || Math.abs(point.time - time) < Math.abs(best.time - time)) best = point;
    this.hover = best;
    this.draw();
  }

  draw() {
    this.width = this.plot.clientWidth;
    const width = this.width;
    if (!width) return;
    const now = this.points.length ? this.points[this.points.length - 1].time : Date.now();
    const start = now - this.windowMs;
    let max = 0;
    for (const point of this.points) for (const s of this.series) max = Math.max(max, point.values[s.key] ?? 0);
    const { top, steps } = niceScale(Math.max(max, this.minTop));
    const x = (time) => PAD.left + ((time - start) / this.windowMs) * (width - PAD.left - PAD.right);
    const y = (value) => PAD.top + (1 - value / top) * (HEIGHT - PAD.top - PAD.bottom);

    const grid = [];
    for (let i = 0; i <= steps; i += 1) {
      const value = (top * i) / steps;
      grid.push(svg('line', { class: 'grid', x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value) }));
      grid.push(svg('text', { class: 'axis', x: PAD.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, this.format(value)));
    }
    const minutes = Math.round(this.windowMs / 60000);
    for (let m = 0; m <= minutes; m += 1) {
      const at = x(now - m * 60000);
      const label = m === 0 ? 'now' : `−${m}m`;
      grid.push(svg('text', { class: 'axis', x: at, y: HEIGHT - 6, 'text-anchor': m === 0 ? 'end' : 'middle' }, label));
    }

    const lines = this.series.map((s, index) => {
      let d = '';
      let pen = false;
      for (const point of this.points) {
        const value = point.values[s.key];
        if (value === null || value === undefined || point.time < start) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${x(point.time).toFixed(1)},${y(value).toFixed(1)}`;
        pen = true;
      }
      return svg('path', { class: `line s${index}`, d: d || 'M0,0' });
    });

    const marks = [];
    const shown = this.hover ?? this.points[this.points.length - 1];
    if (this.hover) {
      marks.push(svg('line', { class: 'cursor', x1: x(this.hover.time), x2: x(this.hover.time), y1: PAD.top, y2: HEIGHT - PAD.bottom }));
      this.series.forEach((s, index) => {
        const value = this.hover.values[s.key];
        if (value !== null && value !== undefined) {
          marks.push(svg('circle', { class: `dot s${index}`, cx: x(this.hover.time), cy: y(value), r: 3.5 }));
        }
      });
    }
    replace(
      this.plot,
      svg('svg', { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img' }, grid, lines, marks),
    );
    replace(
      this.legend,
      this.hover ? h('span', { class: 'at', text: formatTime(new Date(this.hover.time).toISOString()) }) : null,
      this.series.map((s, index) =>
        h(
          'span',
          { class: 'key', dataset: { series: s.key } },
          h('i', { class: `swatch s${index}` }),
          `${s.label} `,
          h('b', { text: shown ? this.format(shown.values[s.key] ?? null) : '–' }),
        ),
      ),
    );
  }
}
