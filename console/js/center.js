// The signed-in person's notification center: one /ws/notifications/ connection for the whole page, so
// the unread badge stays live in every view, and the Notifications view works through it. The hub's
// `unread_count` pushes keep it in step with the person's other tabs and devices.

import { LiveSocket } from './live.js';

const TYPES_KEY = 'rtctl.console.notification-types';

export class NotificationCenter extends EventTarget {
  constructor() {
    super();
    this.unread = null;
    this.types = readTypes();
    this.socket = new LiveSocket('/ws/notifications/', {
      onOpen: (greeting) => {
        this.setUnread(greeting.unread_count);
        // A filter is per connection: every reconnection sets it again.
        if (this.types.length) this.socket.request({ type: 'subscribe', notification_types: this.types }).catch(() => {});
        this.emit('open', greeting);
      },
      onMessage: (message) => {
        if (message.type === 'unread_count') this.setUnread(message.count);
        else if (message.type === 'notification') this.emit('notification', message.notification);
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
