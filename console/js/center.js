// The signed-in person's notification center: one /ws/notifications/ connection for the whole page, so
// the unread badge stays live in every view, and the Notifications view works through it. The hub's
// `unread_count` pushes keep it in step with the person's other tabs and devices. After a reconnection it
// catches up with `get_notifications {after_id}` (the greatest id it knew): what arrived while it was
// away comes as if pushed, oldest first, and a `caught_up` event says how many (the notifications view
// shows it when there were some).

import { LiveSocket } from './live.js';

const TYPES_KEY = 'rtctl.console.notification-types';
/** The most one get_notifications may return (PROTOCOL §4.1). */
const MAX_PAGE = 200;
/** Pages a catch-up reads at most; beyond them the list view's reload shows the newest anyway. */
const CATCH_UP_PAGES = 5;
/** Ids remembered for spotting a notification twice. */
const SEEN_KEPT = 1000;

export class NotificationCenter extends EventTarget {
  constructor() {
    super();
    this.unread = null;
    this.types = readTypes();
    /** The greatest notification id known (null before the first connection asked). */
    this.lastId = null;
    /** Ids passed on lately: a push may overtake the catch-up that lists it too. */
    this.seen = new Set();
    this.socket = new LiveSocket('/ws/notifications/', {
      onOpen: (greeting) => {
        this.setUnread(greeting.unread_count);
        // A filter is per connection: every reconnection sets it again.
        if (this.types.length) this.socket.request({ type: 'subscribe', notification_types: this.types }).catch(() => {});
        this.emit('open', greeting);
        this.catchUp().catch(() => {});
      },
      onMessage: (message) => {
        if (message.type === 'unread_count') this.setUnread(message.count);
        else if (message.type === 'notification') this.received(message.notification);
      },
    });
  }

  start() {
    this.socket.start();
    return this;
  }

  stop() {
    this.socket.stop();
  }

  /** Live pushes only of these types from now on ([] means all); kept for this tab. */
  async subscribe(types) {
    const reply = await this.socket.request({ type: 'subscribe', notification_types: types });
    this.types = reply.notification_types;
    sessionStorage.setItem(TYPES_KEY, JSON.stringify(this.types));
    this.emit('types', this.types);
    return this.types;
  }

  /** On the first connection learns the newest id; on a reconnection fetches what came after it. */
  async catchUp() {
    if (this.lastId === null) {
      const page = await this.socket.request({ type: 'get_notifications', limit: 1 });
      this.lastId = Math.max(this.lastId ?? 0, page.notifications[0]?.id ?? 0);
      return;
    }
    let count = 0;
    for (let pages = 0; pages < CATCH_UP_PAGES; pages += 1) {
      const page = await this.socket.request({ type: 'get_notifications', after_id: this.lastId, limit: MAX_PAGE });
      for (const notification of page.notifications) {
        if (this.received(notification)) count += 1;
      }
      if (page.notifications.length < MAX_PAGE) break;
    }
    this.emit('caught_up', count);
  }

  /** A notification pushed or caught up: passed on once (within this tab's filter); true when new. */
  received(notification) {
    if (this.seen.has(notification.id)) return false;
    this.seen.add(notification.id);
    if (this.seen.size > SEEN_KEPT) this.seen.delete(this.seen.values().next().value);
    this.lastId = Math.max(this.lastId ?? 0, notification.id);
    if (this.types.length && !this.types.includes(notification.type)) return false;
    this.emit('notification', notification);
    return true;
  }

  setUnread(count) {
    if (typeof count !== 'number' || count === this.unread) return;
    this.unread = count;
    this.emit('unread', count);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Listens until the returned function is called. */
  on(type, fn) {
    const listener = (event) => fn(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }
}

function readTypes() {
  try {
    const types = JSON.parse(sessionStorage.getItem(TYPES_KEY) ?? '[]');
    return Array.isArray(types) ? types.filter((t) => typeof t === 'string') : [];
  } catch {
    return [];
  }
}
