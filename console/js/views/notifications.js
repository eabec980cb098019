// Notifications: the person's notification center over /ws/notifications/ (the page-wide connection of
// center.js): the list with paging, mark read, mark all read, delete, new ones arriving live, the
// subscribe filter (the hub then pushes only those types; the list shows only them too), and other
// tabs' changes followed through the hub's unread_count pushes.

import { ago, empty, errorBox, formatTime, h, number, replace, safeLink } from '../dom.js';

const PAGE = 20;
/** The most one get_notifications may return (PROTOCOL §4.1). */
const MAX_PAGE = 200;

export function mount(root, ctx) {
  const { center } = ctx;
  const socket = center.socket;
  ctx.header('Notifications', socket);

  let items = [];
  let total = 0;
  let unreadOnly = false;
  let hasMore = false;
  let resync = null;

  const problem = h('div');
  const caughtUp = h('p', { class: 'hint', dataset: { field: 'caught-up' }, hidden: true });
  const list = h('ol', { class: 'notifications', dataset: { list: 'notifications' } });
  const footer = h('div', { class: 'list-footer' });
  const unreadBadge = h('span', { class: 'count-badge', dataset: { stat: 'unread' } });
  const markAll = h('button', { class: 'ghost', dataset: { action: 'mark-all-read' }, text: 'Mark all read', on: { click: () => act(() => markAllRead()) } });
  const unreadToggle = h('input', { type: 'checkbox', on: { change: () => { unreadOnly = unreadToggle.checked; load(); } } });
  const typesInput = h('input', { type: 'text', placeholder: 'all types', value: center.types.join(', '), dataset: { field: 'types' } });
  const typesNote = h('span', { class: 'hint' });
  const filter = h(
    'form',
    { class: 'inline', on: { submit: (e) => { e.preventDefault(); act(() => applyTypes()); } } },
    h('label', { text: 'Only types' }),
    typesInput,
    h('button', { type: 'submit', class: 'ghost', dataset: { action: 'subscribe' }, text: 'Apply' }),
    typesNote,
  );

  replace(
    root,
    problem,
    h(
      'section',
      { class: 'card' },
      h(
        'header',
        { class: 'toolbar' },
        h('h3', {}, 'Inbox ', unreadBadge),
        h('label', { class: 'toggle' }, unreadToggle, ' Unread only'),
        markAll,
      ),
      h('div', { class: 'filterbar' }, filter),
      caughtUp,
      list,
      footer,
    ),
  );

  /** Runs a request, showing its error as text. */
  async function act(fn) {
    try {
      replace(problem);
      await fn();
    } catch (error) {
      replace(problem, errorBox('The hub refused that.', error.message));
    }
  }

  async function load(limit = PAGE) {
    if (!socket.phaseIs('live')) return;
    try {
      const page = await socket.request({ type: 'get_notifications', limit: Math.min(limit, MAX_PAGE), unread_only: unreadOnly });
      items = page.notifications;
      total = page.total;
      hasMore = items.length === Math.min(limit, MAX_PAGE) && items.length < page.total;
      center.setUnread(page.unread_count);
      replace(problem);
      draw();
    } catch (error) {
      replace(problem, errorBox('Cannot load the notifications.', error.message));
    }
  }

  async function loadOlder() {
    const last = items[items.length - 1];
    const page = await socket.request({ type: 'get_notifications', limit: PAGE, before_id: last.id, unread_only: unreadOnly });
    const known = new Set(items.map((n) => n.id));
    items = items.concat(page.notifications.filter((n) => !known.has(n.id)));
    hasMore = page.notifications.length === PAGE;
    total = page.total;
    draw();
  }

  async function markRead(id) {
    await socket.request({ type: 'mark_read', notification_id: id });
    items = items.map((n) => (n.id === id ? { ...n, read: true } : n));
    if (unreadOnly) items = items.filter((n) => n.id !== id);
    draw();
  }

  async function markAllRead() {
    await socket.request({ type: 'mark_all_read' });
    items = unreadOnly ? [] : items.map((n) => ({ ...n, read: true }));
    draw();
  }

  async function remove(id) {
    await socket.request({ type: 'delete_notification', notification_id: id });
    items = items.filter((n) => n.id !== id);
    total = Math.max(0, total - 1);
    draw();
  }

  async function applyTypes() {
    const types = typesInput.value.split(',').map((t) => t.trim()).filter(Boolean);
    await center.subscribe(types);
    drawTypes();
    draw();
  }

  /** The loaded notifications of the chosen types (all when none is chosen). */
  function shown() {
    return center.types.length ? items.filter((n) => center.types.includes(n.type)) : items;
  }

  function drawTypes() {
    typesNote.textContent = center.types.length
      ? `the hub pushes only ${center.types.join(', ')} to this tab`
      : 'every type, comma separated to narrow';
  }

  function draw() {
    const unread = center.unread ?? items.filter((n) => !n.read).length;
    unreadBadge.textContent = unread ? `${number(unread)} unread` : 'all read';
    unreadBadge.dataset.count = String(unread);
    markAll.disabled = unread === 0;
    const visible = shown();
    if (!visible.length) {
      replace(
        list,
        h('li', {}, empty(unreadOnly ? 'Nothing unread.' : center.types.length ? `No ${center.types.join(' or ')} notifications loaded.` : 'No notifications yet.',
          h('p', { class: 'hint' }, 'Send one with ', h('code', { text: `rtctl notify --user-id ${ctx.session.userId} --title Hi --message "Hello"` })))),
      );
    } else {
      replace(list, visible.map((n) => item(n)));
    }
    const filtered = visible.length === items.length ? '' : `${number(visible.length)} shown, `;
    replace(
      footer,
      h('span', { class: 'hint', text: `${filtered}${number(items.length)} of ${number(total)} loaded${unreadOnly ? ' (unread only)' : ''}` }),
      hasMore ? h('button', { class: 'ghost', dataset: { action: 'older' }, text: 'Load older', on: { click: () => act(loadOlder) } }) : null,
    );
  }

  function item(n) {
    const link = safeLink(n.link);
    return h(
      'li',
      { class: ['notification', !n.read && 'unread'], dataset: { notificationId: String(n.id), read: String(n.read) } },
      h('span', { class: 'dot', title: n.read ? 'read' : 'unread' }),
      h(
        'div',
        { class: 'body' },
        h('div', { class: 'title' }, h('b', { text: n.title }), h('span', { class: 'tag', text: n.type })),
        n.message ? h('p', { text: n.message }) : null,
        h('div', { class: 'meta' }, h('time', { text: ago(n.created_at), title: formatTime(n.created_at) }),
          link ? h('a', { href: link, target: '_blank', rel: 'noopener noreferrer', text: 'Open link' }) : null),
      ),
      h(
        'div',
        { class: 'actions' },
        n.read ? null : h('button', { class: 'ghost', dataset: { action: 'mark-read' }, text: 'Mark read', on: { click: () => act(() => markRead(n.id)) } }),
        h('button', { class: 'ghost danger', dataset: { action: 'delete' }, text: 'Delete', title: 'Delete this notification', on: { click: () => act(() => remove(n.id)) } }),
      ),
    );
  }

  const unsubscribe = [
    center.on('open', () => load(Math.max(PAGE, items.length))),
    center.on('caught_up', (count) => {
      if (!count) return;
      caughtUp.textContent = `Reconnected: ${count === 1 ? '1 notification' : `${count} notifications`} arrived while disconnected.`;
      caughtUp.hidden = false;
    }),
    center.on('notification', (n) => {
      if (items.some((m) => m.id === n.id)) return;
      items = [n, ...items];
      total += 1;
      draw();
    }),
    // Another tab or device read or deleted something: the count moved without this tab's doing.
    // Fetch what is shown again (debounced), so read marks and deletions match.
    center.on('unread', () => {
      draw();
      clearTimeout(resync);
      resync = setTimeout(() => load(Math.max(PAGE, items.length)), 300);
    }),
  ];
  drawTypes();
  draw();
  load();
  return () => {
    clearTimeout(resync);
    for (const off of unsubscribe) off();
  };
}
