// A WebSocket to one hub endpoint that stays connected: every attempt first fetches a single-use ws token
// (GET /api/user/ws-token/, so the JWT never travels in a URL), and a dropped connection is retried with
// exponential backoff and jitter, or not at all when the close code says retrying cannot help. A
// resumable stream (org events, the dashboard) remembers the position (seq, epoch) of the last push and
// reconnects with ?since=&epoch=, so the hub replays what was missed (PROTOCOL "Stream positions and
// resume"); a push at or before the position is a duplicate and is dropped.

import { ApiError, api, wsUrl } from './api.js';
import { signOut } from './session.js';

/** First retry after about this long; each failure doubles it, up to the cap. */
const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 30000;
/** After a 4029 the hub asks for a pause, not a quick retry. */
const RATE_LIMIT_PAUSE_MS = 15000;
/** A connection that stayed up this long was healthy: the next drop starts the backoff afresh. */
const STABLE_MS = 10000;
/** How long a request waits for the reply that repeats its request_id. */
const REQUEST_TIMEOUT_MS = 15000;

/** What each close code (PROTOCOL §2) means to a person, and whether to reconnect. */
const CLOSES = {
  1000: { text: 'closed', retry: false },
  1001: { text: 'the hub is restarting', retry: true },
  1003: { text: 'the hub refused a binary frame', retry: false },
  1006: { text: 'the connection dropped', retry: true },
  1007: { text: 'the hub refused invalid text', retry: false },
  1009: { text: 'a message was larger than the hub allows', retry: false },
  1011: { text: 'the hub had an internal error', retry: true },
  1013: { text: 'the hub is at its connection limit', retry: true },
  4000: { text: 'heartbeat timeout', retry: true },
  4001: { text: 'unauthorized', retry: false },
  4003: { text: 'forbidden', retry: false },
  4004: { text: 'not found', retry: false },
  4008: { text: 'this tab fell behind the hub (slow consumer)', retry: true },
  4029: { text: 'rate limited', retry: true },
};

/** Equal jitter: half the doubled delay, plus up to as much again at random (no thundering herd). */
export function backoff(attempt) {
  const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return delay / 2 + Math.random() * (delay / 2);
}

export class LiveSocket {
  /**
   * @param {string} path e.g. '/ws/notifications/'
   * @param {{onMessage?: (msg) => void, onOpen?: (greeting, resumed) => void,
   *   onResumeFailed?: (msg) => void, resumable?: boolean}} handlers pushes (not replies); the greeting
   *   of every (re)connection, with `{since, replayed}` when it resumed a stream (`replayed` missed pushes
   *   follow it); `resume_failed` (the pushes missed are lost: reload); `resumable` for a stream
   */
  constructor(path, { onMessage = () => {}, onOpen = () => {}, onResumeFailed = () => {}, resumable = false } = {}) {
    this.path = path;
    this.onMessage = onMessage;
    this.onOpen = onOpen;
    this.onResumeFailed = onResumeFailed;
    this.resumable = resumable;
    /** The last position received, {seq, epoch}, or null before the first greeting. */
    this.position = null;
    /** Where the current connection continues live after a failed resume: its greeting's position. */
    this.greeted = null;
    this.state = { phase: 'idle', text: 'not connected' };
    this.listeners = new Set();
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = true;
    this.wake = () => this.phaseIs('waiting') && this.connectNow();
  }

  start() {
    if (!this.stopped) return this;
    this.stopped = false;
    window.addEventListener('online', this.wake);
    this.connectNow();
    return this;
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.wake);
    clearTimeout(this.timer);
    this.failPending('the view was closed');
    if (this.ws) this.ws.close(1000, 'view closed');
    this.ws = null;
    this.setState('stopped', 'disconnected');
  }

  /** Calls fn(state) now and on every change; returns the unsubscribe function. */
  watch(fn) {
    this.listeners.add(fn);
    fn(this.state);
    return () => this.listeners.delete(fn);
  }

  phaseIs(phase) {
    return this.state.phase === phase;
  }

  /** Sends a message if connected; false when it could not go. */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.phaseIs('live')) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** Sends a request; resolves to the reply with its request_id, rejects with the hub's error. */
  request(message) {
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...message, request_id: id })) {
        reject(new ApiError(0, 'not_connected', `not connected (${this.state.text})`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ApiError(0, 'timeout', 'the hub did not answer in time'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  setState(phase, text) {
    this.state = { phase, text };
    for (const fn of this.listeners) fn(this.state);
  }

  connectNow() {
    clearTimeout(this.timer);
    this.attemptConnection().catch((error) => this.retry(`cannot connect: ${error.message}`));
  }

  async attemptConnection() {
    this.setState('connecting', this.attempt ? `reconnecting (attempt ${this.attempt + 1})` : 'connecting');
    let wsToken;
    try {
      ({ ws_token: wsToken } = await api('/api/user/ws-token/'));
    } catch (error) {
      if (this.stopped || error.status === 401) return; // a 401 signed out already
      if (error.status === 429) return this.retry(`rate limited: ${error.message}`, (error.retryAfter ?? 5) * 1000);
      if (error.status >= 400 && error.status < 500) return this.setState('failed', error.message);
      return this.retry(error.message);
    }
    if (this.stopped) return;
    const from = this.resumable ? this.position : null;
    const query = from ? `&since=${from.seq}&epoch=${encodeURIComponent(from.epoch)}` : '';
    const ws = new WebSocket(wsUrl(this.path, wsToken) + query);
    this.ws = ws;
    let openedAt = null;
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === 'connection_established') {
        openedAt = Date.now();
        this.setState('live', 'live');
        this.onOpen(message, this.greet(message, from));
        return;
      }
      if (this.resumable && message.type === 'resume_failed') {
        // Nothing is replayed: the connection continues live from where its greeting said.
        this.position = this.greeted;
        this.onResumeFailed(message);
        return;
      }
      if (this.resumable && message.request_id === undefined && message.type === 'error' && this.greeted) {
        // A position the hub does not know (ahead of its stream): continue live from the greeting's.
        this.position = this.greeted;
      }
      if (this.resumable && !this.advance(message)) return;
      const waiting = message.request_id !== undefined && this.pending.get(message.request_id);
      if (waiting) {
        this.pending.delete(message.request_id);
        clearTimeout(waiting.timer);
        if (message.type === 'error') waiting.reject(new ApiError(0, message.code, message.message));
        else waiting.resolve(message);
        return;
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (openedAt !== null && Date.now() - openedAt >= STABLE_MS) this.attempt = 0;
      this.closed(event.code, event.reason);
    };
  }

  /**
   * Takes a greeting's position: a resume (same epoch) continues from `from`, as the replay follows; a
   * fresh connection from the greeting. Returns `{since, replayed}` for a resume, else null.
   */
  greet(greeting, from) {
    if (!this.resumable || typeof greeting.seq !== 'number') return null;
    this.greeted = { seq: greeting.seq, epoch: greeting.epoch };
    if (!from) {
      this.position = this.greeted;
      return null;
    }
    // After ?since= the greeting's seq is the last one replayed (PROTOCOL): those in between follow.
    const replayed = greeting.epoch === from.epoch ? Math.max(0, greeting.seq - from.seq) : 0;
    return { since: from.seq, replayed };
  }

  /** Moves the position past a push; false for a push already received (a duplicate to drop). */
  advance(message) {
    if (typeof message.seq !== 'number' || typeof message.epoch !== 'string') return true;
    const at = this.position;
    if (at && at.epoch === message.epoch && message.seq <= at.seq) return false;
    this.position = { seq: message.seq, epoch: message.epoch };
    return true;
  }

  closed(code, reason) {
    this.failPending('the connection closed');
    if (this.stopped) return;
    const known = CLOSES[code] ?? { text: `closed with code ${code}`, retry: code < 4000 || code >= 4100 };
    const why = reason ? `${known.text}: ${reason}` : known.text;
    if (code === 4001) {
      signOut(`The hub closed the connection with 4001 (${reason || 'unauthorized'}): sign in again.`);
      return;
    }
    if (!known.retry) {
      this.setState('failed', `${why} (close ${code})`);
      return;
    }
    this.retry(`${why} (close ${code})`, code === 4029 ? RATE_LIMIT_PAUSE_MS : 0);
  }

  /** Waits (backoff, at least `minimum` ms), counting down, then tries again. */
  retry(why, minimum = 0) {
    if (this.stopped) return;
    const delay = Math.max(minimum, backoff(this.attempt));
    this.attempt += 1;
    const until = Date.now() + delay;
    const tick = () => {
      if (this.stopped) return;
      const left = until - Date.now();
      if (left <= 0) return this.connectNow();
      this.setState('waiting', `${why}; reconnecting in ${Math.ceil(left / 1000)}s`);
      this.timer = setTimeout(tick, Math.min(1000, left));
    };
    tick();
  }

  failPending(why) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new ApiError(0, 'closed', why));
    }
    this.pending.clear();
  }
}

/** A pill that shows a socket's state: live, connecting, reconnecting in Ns (and why), or failed. */
export function statePill(source) {
  const pill = document.createElement('span');
  pill.className = 'pill';
  pill.setAttribute('role', 'status');
  const unwatch = source.watch((state) => {
    pill.dataset.state = state.phase;
    pill.textContent = state.text;
    pill.title = state.text;
  });
  return { el: pill, unwatch };
}
