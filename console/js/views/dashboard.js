// Admin dashboard (staff): live figures, pending approvals with approve and reject, the activity feed,
// admins online and order updates, over /ws/admin/dashboard/ with the REST routes for lists and decisions.
// The lists load on connecting; a reconnection resumes the dashboard stream (the missed pushes are
// replayed and applied) and reloads the lists only when resuming failed.

import { api } from '../api.js';
import { ago, empty, errorBox, formatTime, h, json, number, replace } from '../dom.js';
import { LiveSocket } from '../live.js';

const STATS_EVERY_MS = 5000;
const FEED_LENGTH = 50;
const BASE = '/api/v1/admin-dashboard';

const TILES = [
  ['pending_approvals', 'Pending approvals'],
  ['approved_today', 'Approved today'],
  ['rejected_today', 'Rejected today'],
  ['admins_online', 'Admins online'],
  ['users_online', 'Users online'],
  ['connections', 'Connections'],
];

/** A class for a status tag's colour (delivered green, cancelled red, ...; see style.css). */
function statusClass(status) {
  return `status-${String(status).toLowerCase().replace(/[^a-z0-9_-]/g, '')}`;
}

export function mount(root, ctx) {
  const pending = new Map();
  const orders = new Map();
  const admins = new Set([ctx.session.userId]);
  let feed = [];
  let recent = [];

  const tileValues = Object.fromEntries(TILES.map(([key]) => [key, h('div', { class: 'value', dataset: { stat: key }, text: '–' })]));
  const pendingBody = h('div', { class: 'rows', dataset: { list: 'pending' } });
  const pendingCount = h('span', { class: 'count' });
  const feedList = h('ol', { class: 'feed', dataset: { list: 'activity' } });
  const ordersBody = h('div', { class: 'rows' });
  const recentList = h('ol', { class: 'feed compact' });
  const adminsList = h('div', { class: 'chips' });
  const problem = h('div');
  const resumeNote = h('p', { class: 'hint', dataset: { field: 'resume' }, hidden: true });

  const socket = new LiveSocket('/ws/admin/dashboard/', {
    resumable: true,
    onOpen: (greeting, resumed) => {
      showStats(greeting.stats);
      if (!resumed) {
        reload();
        return;
      }
      const missed = resumed.replayed === 1 ? '1 missed update' : `${number(resumed.replayed)} missed updates`;
      note(`Reconnected: ${missed} replayed.`);
    },
    onResumeFailed: (failed) => {
      note(`Reconnected, but resuming failed (${failed.reason}): the dashboard was reloaded.`);
      reload();
    },
    onMessage: (message) => handle(message),
  });
  ctx.header('Admin dashboard', socket);
  if (!ctx.session.isStaff) {
    root.append(errorBox('The admin dashboard is for staff.', 'Your token has no is_staff claim: sign in with `rtctl console --staff`.'));
    return () => {};
  }

  replace(
    root,
    problem,
    resumeNote,
    h('div', { class: 'tiles' }, TILES.map(([key, label]) => h('div', { class: 'tile' }, h('div', { class: 'label', text: label }), tileValues[key]))),
    h(
      'div',
      { class: 'columns' },
      h(
        'div',
        { class: 'stack' },
        h('section', { class: 'card' }, h('header', {}, h('h3', {}, 'Pending approvals ', pendingCount)), pendingBody),
        h('section', { class: 'card' }, h('header', {}, h('h3', { text: 'Order updates' })), ordersBody),
      ),
      h(
        'div',
        { class: 'stack' },
        h('section', { class: 'card' }, h('header', {}, h('h3', { text: 'Activity' })), feedList),
        h(
          'section',
          { class: 'card' },
          h('header', {}, h('h3', { text: 'Admins online' })),
          adminsList,
          h('header', { class: 'sub' }, h('h3', { text: 'Recent decisions' })),
          recentList,
        ),
      ),
    ),
  );

  function note(text) {
    resumeNote.textContent = text;
    resumeNote.hidden = false;
  }

  function showStats(stats) {
    if (!stats) return;
    for (const [key] of TILES) if (key in stats) tileValues[key].textContent = number(stats[key]);
    drawAdmins(stats.admins_online);
  }

  async function reload() {
    try {
      const [list, decided, activity] = await Promise.all([
        api(`${BASE}/approvals/pending/?limit=200`),
        api(`${BASE}/approvals/recent/?limit=10`),
        api(`${BASE}/notifications/?limit=${FEED_LENGTH}`),
      ]);
      pending.clear();
      for (const user of list.users) pending.set(user.user_id, { user, error: null, rejecting: false });
      tileValues.pending_approvals.textContent = number(list.count);
      recent = decided.approvals;
      feed = activity.notifications.map((entry) => ({ type: entry.type, data: entry.data, at: entry.created_at }));
      orders.clear();
      for (const entry of [...feed].reverse()) if (entry.type === 'order_update') orders.set(entry.data.order_id, { ...entry.data, at: entry.at });
      replace(problem);
      drawAll();
    } catch (error) {
      replace(problem, errorBox('Cannot load the dashboard lists.', error.message));
    }
  }

  function handle(message) {
    switch (message.type) {
      case 'new_user':
        pending.set(message.user.user_id, { user: message.user, error: null, rejecting: false });
        addFeed('new_user', message.user, message.user.registered_at);
        drawPending();
        break;
      case 'approval_update':
        decided(message);
        break;
      case 'pending_count_update':
        tileValues.pending_approvals.textContent = number(message.count);
        break;
      case 'order_update': {
        const at = new Date().toISOString();
        orders.set(message.order_id, { order_id: message.order_id, status: message.status, data: message.data, at });
        addFeed('order_update', { order_id: message.order_id, status: message.status, data: message.data }, at);
        drawOrders();
        break;
      }
      case 'admin_joined':
        admins.add(message.user_id);
        tileValues.admins_online.textContent = number(message.admins_online);
        drawAdmins(message.admins_online);
        break;
      case 'admin_left':
        admins.delete(message.user_id);
        tileValues.admins_online.textContent = number(message.admins_online);
        drawAdmins(message.admins_online);
        break;
      default:
        break;
    }
  }

  /** An approval, from our own REST answer or another admin's push (the same decision may come twice). */
  function decided(approval) {
    pending.delete(approval.user_id);
    const approvalOnly = {
      user_id: approval.user_id,
      status: approval.status,
      reason: approval.reason,
      decided_by: approval.decided_by,
      decided_at: approval.decided_at,
    };
    if (!recent.some((r) => r.user_id === approval.user_id && r.decided_at === approval.decided_at)) {
      recent = [approvalOnly, ...recent].slice(0, 10);
      addFeed('approval', approvalOnly, approval.decided_at);
    }
    drawPending();
    drawRecent();
  }

  function addFeed(type, data, at) {
    feed = [{ type, data, at }, ...feed].slice(0, FEED_LENGTH);
    drawFeed();
  }

  async function decide(userId, verdict, reason) {
    const row = pending.get(userId);
    if (!row) return;
    row.busy = true;
    row.error = null;
    drawPending();
    try {
      const body = verdict === 'reject' && reason ? { reason } : undefined;
      const approval = await api(`${BASE}/users/${encodeURIComponent(userId)}/${verdict}/`, { method: 'POST', body });
      decided(approval);
      refreshStats();
    } catch (error) {
      row.busy = false;
      row.error = error.status === 409 ? `${error.message} (by another admin)` : error.message;
      drawPending();
    }
  }

  function drawAll() {
    drawPending();
    drawFeed();
    drawOrders();
    drawRecent();
  }

  function drawPending() {
    pendingCount.textContent = pending.size ? `(${pending.size})` : '';
    if (!pending.size) {
      replace(pendingBody, empty('No one is waiting for approval.', h('p', { class: 'hint', text: 'Backends register them with POST /api/v1/admin-dashboard/users/; try `rtctl notify pending-user --user-id 7 --email ada@example.com`.' })));
      return;
    }
    const rows = [...pending.values()].sort((a, b) => String(b.user.registered_at).localeCompare(a.user.registered_at));
    replace(pendingBody, rows.map((row) => pendingRow(row)));
  }

  function pendingRow(row) {
    const { user } = row;
    const who = h(
      'div',
      { class: 'who' },
      h('div', { class: 'name', text: user.name || user.user_id }),
      h('div', { class: 'meta' }, h('span', { class: 'mono', text: user.user_id }), user.email ? ` · ${user.email}` : '', ` · registered ${ago(user.registered_at)}`),
    );
    let actions;
    if (row.rejecting) {
      const reason = h('input', { type: 'text', placeholder: 'Reason (optional, sent to the user)', maxLength: 1000, dataset: { field: 'reason' } });
      const form = h(
        'form',
        { class: 'inline', on: { submit: (e) => { e.preventDefault(); row.rejecting = false; decide(user.user_id, 'reject', reason.value.trim()); } } },
        reason,
        h('button', { type: 'submit', class: 'danger', dataset: { action: 'confirm-reject' }, text: 'Reject' }),
        h('button', { type: 'button', class: 'ghost', text: 'Cancel', on: { click: () => { row.rejecting = false; drawPending(); } } }),
      );
      queueMicrotask(() => reason.focus());
      actions = form;
    } else {
      actions = h(
        'div',
        { class: 'actions' },
        h('button', { class: 'primary', disabled: row.busy, dataset: { action: 'approve' }, text: 'Approve', on: { click: () => decide(user.user_id, 'approve') } }),
        h('button', { class: 'ghost danger', disabled: row.busy, dataset: { action: 'reject' }, text: 'Reject…', on: { click: () => { row.rejecting = true; drawPending(); } } }),
      );
    }
    return h('div', { class: 'row', dataset: { userId: user.user_id } }, who, actions, row.error ? h('div', { class: 'row-error', role: 'alert', text: row.error }) : null);
  }

  function drawFeed() {
    if (!feed.length) {
      replace(feedList, h('li', { class: 'empty', text: 'New users, decisions and order updates appear here as they happen.' }));
      return;
    }
    replace(feedList, feed.map((entry) => h('li', { class: `kind-${entry.type}` }, h('span', { class: 'dot' }), h('div', {}, describe(entry), h('time', { text: ago(entry.at), title: formatTime(entry.at) })))));
  }

  function describe({ type, data }) {
    if (type === 'new_user') return h('p', {}, h('b', { text: data.name || data.user_id }), ` registered${data.email ? ` (${data.email})` : ''}`);
    if (type === 'approval') {
      return h('p', {}, h('b', { text: data.user_id }), ` ${data.status} by `, h('b', { text: data.decided_by }), data.reason ? `: “${data.reason}”` : '');
    }
    if (type === 'order_update') return h('p', {}, 'Order ', h('b', { class: 'mono', text: data.order_id }), ' → ', h('span', { class: `tag ${statusClass(data.status)}`, text: data.status }));
    return h('p', { text: `${type}: ${json(data)}` });
  }

  function drawOrders() {
    if (!orders.size) {
      replace(ordersBody, empty('No order updates yet.', h('p', { class: 'hint', text: 'Backends post them to /api/v1/admin-dashboard/orders/{order_id}/; try `rtctl notify order --order-id A-1001 --status shipped`.' })));
      return;
    }
    const rows = [...orders.values()].sort((a, b) => String(b.at).localeCompare(a.at)).slice(0, 20);
    replace(
      ordersBody,
      rows.map((order) =>
        h('div', { class: 'row', dataset: { orderId: order.order_id } },
          h('div', { class: 'who' }, h('div', { class: 'name mono', text: order.order_id }), h('div', { class: 'meta', text: Object.keys(order.data ?? {}).length ? json(order.data) : ' ' })),
          h('div', { class: 'actions' }, h('span', { class: `tag ${statusClass(order.status)}`, text: order.status }), h('time', { text: ago(order.at), title: formatTime(order.at) }))),
      ),
    );
  }

  function drawRecent() {
    if (!recent.length) {
      replace(recentList, h('li', { class: 'empty', text: 'No decisions yet.' }));
      return;
    }
    replace(recentList, recent.map((a) => h('li', { class: `kind-approval status-${a.status}` }, h('span', { class: 'dot' }), h('div', {}, h('p', {}, h('b', { text: a.user_id }), ` ${a.status} by ${a.decided_by}`, a.reason ? `: “${a.reason}”` : ''), h('time', { text: ago(a.decided_at), title: formatTime(a.decided_at) })))));
  }

  function drawAdmins(count) {
    const known = [...admins];
    const others = typeof count === 'number' ? Math.max(0, count - known.length) : 0;
    replace(
      adminsList,
      known.map((id) => h('span', { class: ['chip', id === ctx.session.userId && 'me'], text: id === ctx.session.userId ? `${id} (you)` : id })),
      others ? h('span', { class: 'chip muted', text: `+${others} more` }) : null,
    );
  }

  /** Online counts change without a push (users come and go on other endpoints): ask now and then. */
  function refreshStats() {
    if (socket.phaseIs('live')) socket.request({ type: 'get_stats' }).then((reply) => showStats(reply.stats), () => {});
  }

  drawAll();
  socket.start();
  const statsTimer = setInterval(refreshStats, STATS_EVERY_MS);
  return () => {
    clearInterval(statsTimer);
    socket.stop();
  };
}
