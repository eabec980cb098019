// A live line chart in SVG, drawn by hand (no library): the last few minutes of a few series, with a
// grid, a y axis on round numbers, a legend with the latest values and a hover readout. A chart opened a
// moment ago spans the time it has data for (a minute at least), not a mostly empty window.

import { h, number, svg, replace, formatTime } from './dom.js';

const HEIGHT = 170;
/** A fresh chart spans at least this much time, then grows with its data up to `windowSeconds`. */
const MIN_SPAN_MS = 60000;
/** Time-axis steps, in seconds: the first that leaves each label about this much room is used. */
const TICKS = [10, 15, 30, 60, 120, 300, 600];
const TICK_ROOM_PX = 64;
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
    this.span = MIN_SPAN_MS;
    this.hover = null;
    this.legend = h('div', { class: 'legend' });
    this.plot = h('div', { class: 'plot' });
    this.el = h('section', { class: 'card chart' }, h('header', {}, h('h3', { text: title })), this.plot, this.legend);
    this.width = 0;
    // Redrawn only when the width changed, and in the next frame: drawing inside the observer's
    // callback would resize what it observes and trip the browser's ResizeObserver loop error.
    this.resize = new ResizeObserver(() => {
      if (this.plot.clientWidth !== this.width) requestAnimationFrame(() => this.draw());
    });
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
    const time = now - this.span + ((event.clientX - box.left - PAD.left) / (this.width - PAD.left - PAD.right)) * this.span;
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
    const first = this.points.length ? this.points[0].time : now;
    this.span = Math.min(this.windowMs, Math.max(MIN_SPAN_MS, now - first));
    const start = now - this.span;
    let max = 0;
    for (const point of this.points) for (const s of this.series) max = Math.max(max, point.values[s.key] ?? 0);
    const { top, steps } = niceScale(Math.max(max, this.minTop));
    const x = (time) => PAD.left + ((time - start) / this.span) * (width - PAD.left - PAD.right);
    const y = (value) => PAD.top + (1 - value / top) * (HEIGHT - PAD.top - PAD.bottom);

    const grid = [];
    for (let i = 0; i <= steps; i += 1) {
      const value = (top * i) / steps;
      grid.push(svg('line', { class: 'grid', x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value) }));
      grid.push(svg('text', { class: 'axis', x: PAD.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, this.format(value)));
    }
    const room = Math.max(2, Math.floor((width - PAD.left - PAD.right) / TICK_ROOM_PX));
    const step = TICKS.find((s) => this.span / 1000 / s <= room) ?? TICKS[TICKS.length - 1];
    for (let s = 0; s * 1000 <= this.span; s += step) {
      const label = s === 0 ? 'now' : `−${s % 60 === 0 ? `${s / 60}m` : `${s}s`}`;
      const anchor = s === 0 ? 'end' : (s + step) * 1000 > this.span ? 'start' : 'middle';
      grid.push(svg('text', { class: 'axis', x: x(now - s * 1000), y: HEIGHT - 6, 'text-anchor': anchor }, label));
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
