// Small DOM helpers: elements are built with h(), text always goes in as text (never as HTML), so
// nothing a hub or a user sends can become markup.

/** An element: h('button', {class: 'primary', on: {click}}, 'Approve'). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element; props are attributes. */
export function svg(tag, props = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(props)) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (name === 'text') el.textContent = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'on') for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (name in el && typeof el[name] !== 'function' && !name.startsWith('aria')) el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const pad = (n) => String(n).padStart(2, '0');

/** "14:03:07" today, "Jan 15 14:03" another day. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? '');
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${time.slice(0, 5)}`;
}

/** "5s ago", "3m ago", "2h ago", else the date. */
export function ago(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return formatTime(iso);
}

/** A span of seconds as people say it: "42s", "5m 3s", "2h 13m", "3d 4h". */
export function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** 12,345 (or 12.3 for small fractions). */
export function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  return Math.abs(value) < 10 && !Number.isInteger(value) ? decimal.format(value) : integer.format(value);
}

/** 18.2 MiB. */
export function bytes(value) {
  if (!value && value !== 0) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${unit ? n.toFixed(1) : n} ${units[unit]}`;
}

/** An error as a readable block of text (a view shows this instead of going blank). */
export function errorBox(message, detail) {
  return h('div', { class: 'error-box', role: 'alert' }, h('strong', { text: message }), detail ? h('p', { text: detail }) : null);
}

/** An empty list's explanation. */
export function empty(text, ...more) {
  return h('div', { class: 'empty' }, h('p', { text }), ...more);
}

/** A code sample that can be copied. */
export function code(text) {
  return h('code', { class: 'command', text });
}

/** A link target that is safe to follow from a notification: http(s) or a path on the app's site. */
export function safeLink(link) {
  if (typeof link !== 'string' || link === '') return null;
  try {
    const url = new URL(link, location.origin);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** JSON for people: compact when short, indented when not. */
export function json(value) {
  const compact = JSON.stringify(value);
  return compact && compact.length <= 80 ? compact : JSON.stringify(value, null, 2);
}
