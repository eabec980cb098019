// Overview (staff): this hub node's figures from GET /api/v1/stats, polled every second, with live charts
// of the last five minutes. Rates are computed here from the counters the hub reports.

import { api } from '../api.js';
import { LineChart } from '../chart.js';
import { bytes, errorBox, h, number, replace, span } from '../dom.js';

const POLL_MS = 1000;
const ENDPOINTS = ['notifications', 'events', 'dashboard', 'chat'];

/** A polling source with the same watch() as a LiveSocket, for the header's state pill. */
class Poller {
  constructor() {
    this.state = { phase: 'connecting', text: 'loading' };
    this.listeners = new Set();
  }

  watch(fn) {
    this.listeners.add(fn);
    fn(this.state);
    return () => this.listeners.delete(fn);
  }

  set(phase, text) {
    this.state = { phase, text };
    for (const fn of this.listeners) fn(this.state);
  }
}

export function mount(root, ctx) {
  const poller = new Poller();
  ctx.header('Overview', poller);
  if (!ctx.session.isStaff) {
    root.append(errorBox('The overview is for staff.', 'Your token has no is_staff claim: sign in with `rtctl console --staff`.'));
    poller.set('failed', 'staff only');
    return () => {};
  }

  const tile = (key, label, hint) => {
    const value = h('div', { class: 'value', dataset: { stat: key }, text: '–' });
    const sub = h('div', { class: 'hint', text: hint ?? '' });
    return { el: h('div', { class: 'tile' }, h('div', { class: 'label', text: label }), value, sub), value, sub };
  };
  const tiles = {
    connections: tile('connections_total', 'Connections'),
    users: tile('users_online', 'Users online', 'distinct users, all nodes'),
    inRate: tile('messages_in_rate', 'Messages in', 'per second, from clients'),
    outRate: tile('messages_out_rate', 'Messages out', 'per second, to clients'),
    slow: tile('slow_consumers_dropped', 'Slow consumers', 'closed with 4008'),
    limited: tile('rate_limit_closes', 'Rate-limit closes', 'closed with 4029'),
  };
  const endpointCells = Object.fromEntries(ENDPOINTS.map((e) => [e, h('dd', { dataset: { stat: `connections.${e}` }, text: '–' })]));
  const node = {
    node: h('dd', { class: 'mono', dataset: { stat: 'node_id' }, text: '–' }),
    layer: h('dd', { dataset: { stat: 'layer' }, text: '–' }),
    store: h('dd', { dataset: { stat: 'store' }, text: '–' }),
    uptime: h('dd', { dataset: { stat: 'uptime' }, text: '–' }),
    memory: h('dd', { dataset: { stat: 'memory' }, text: '–' }),
  };
  const connections = new LineChart({
    title: 'Connections by endpoint',
    series: ENDPOINTS.map((e) => ({ key: e, label: e })),
    minTop: 5,
  });
  const messages = new LineChart({
    title: 'Messages per second',
    series: [
      { key: 'in', label: 'in' },
      { key: 'out', label: 'out' },
    ],
  });
  const users = new LineChart({ title: 'Users online', series: [{ key: 'users', label: 'users' }], minTop: 5 });
  const problem = h('div');

  replace(
    root,
    problem,
    h('div', { class: 'tiles' }, Object.values(tiles).map((t) => t.el)),
    h('div', { class: 'charts' }, connections.el, messages.el, users.el),
    h(
      'div',
      { class: 'split' },
      h(
        'section',
        { class: 'card' },
        h('header', {}, h('h3', { text: 'This node' })),
        h('dl', { class: 'facts' }, h('dt', { text: 'Node' }), node.node, h('dt', { text: 'Channel layer' }), node.layer,
          h('dt', { text: 'Store' }), node.store, h('dt', { text: 'Uptime' }), node.uptime,
          h('dt', { text: 'Memory (RSS)' }), node.memory),
      ),
      h(
        'section',
        { class: 'card' },
        h('header', {}, h('h3', { text: 'Connections per endpoint' })),
        h('dl', { class: 'facts' }, ENDPOINTS.map((e) => [h('dt', { text: `/ws/${e === 'dashboard' ? 'admin/dashboard' : e}/` }), endpointCells[e]])),
      ),
    ),
  );

  let previous = null;
  let timer = null;
  let stopped = false;
  const controller = new AbortController();

  const poll = async () => {
    const started = Date.now();
    try {
      const stats = await api('/api/v1/stats', { signal: controller.signal });
      if (stopped) return;
      const now = Date.now();
      const seconds = previous ? (now - previous.at) / 1000 : null;
      const rate = (key) => (previous && seconds > 0 ? Math.max(0, (stats[key] - previous.stats[key]) / seconds) : null);
      const inRate = rate('messages_in');
      const outRate = rate('messages_out');
      show(stats, inRate, outRate);
      connections.push(now, Object.fromEntries(ENDPOINTS.map((e) => [e, stats.connections?.[e] ?? 0])));
      messages.push(now, { in: inRate, out: outRate });
      users.push(now, { users: stats.users_online });
      previous = { at: now, stats };
      replace(problem);
      poller.set('live', `live · every ${POLL_MS / 1000}s`);
    } catch (error) {
      if (stopped || error.name === 'AbortError') return;
      poller.set('waiting', `cannot read /api/v1/stats: ${error.message}; retrying`);
      replace(problem, errorBox('The hub did not answer the last poll.', error.message));
      previous = null;
    }
    if (!stopped) timer = setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
  };

  const show = (stats, inRate, outRate) => {
    tiles.connections.value.textContent = number(stats.connections_total);
    tiles.users.value.textContent = number(stats.users_online);
    tiles.inRate.value.textContent = inRate === null ? '–' : number(inRate);
    tiles.outRate.value.textContent = outRate === null ? '–' : number(outRate);
    tiles.inRate.sub.textContent = `per second · ${number(stats.messages_in)} in all`;
    tiles.outRate.sub.textContent = `per second · ${number(stats.messages_out)} in all`;
    tiles.slow.value.textContent = number(stats.slow_consumers_dropped);
    tiles.limited.value.textContent = number(stats.rate_limit_closes);
    tiles.connections.sub.textContent = 'open WebSockets on this node';
    for (const e of ENDPOINTS) endpointCells[e].textContent = number(stats.connections?.[e] ?? 0);
    node.node.textContent = stats.node_id;
    node.layer.textContent = stats.layer;
    node.store.textContent = stats.store;
    node.uptime.textContent = span(stats.uptime_seconds);
    node.memory.textContent = stats.memory_rss_bytes ? bytes(stats.memory_rss_bytes) : 'not measured here';
  };

  poll();
  return () => {
    stopped = true;
    controller.abort();
    clearTimeout(timer);
    for (const chart of [connections, messages, users]) chart.dispose();
  };
}
