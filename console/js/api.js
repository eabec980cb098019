// The hub's HTTP API as the console calls it: same origin, `Authorization: Bearer <JWT>`, JSON both
// ways, and the hub's `{"error":{"code","message"}}` turned into an ApiError with readable text.

import { signOut, token } from './session.js';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Calls the API; resolves to the JSON body, rejects with an ApiError. A 401 also signs out. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'unreachable', `the hub did not answer (${error.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data?.error;
    const retryAfter = Number(response.headers.get('Retry-After')) || null;
    const message = error?.message ?? `${response.status} ${response.statusText}`.trim();
    const failure = new ApiError(response.status, error?.code ?? `http_${response.status}`, message, retryAfter);
    if (response.status === 401) signOut(`The hub refused your token: ${message}.`);
    throw failure;
  }
  return data;
}

/** A WebSocket URL on the console's own hub. */
export function wsUrl(path, wsToken) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}?token=${encodeURIComponent(wsToken)}`;
}

/** `/api/v1/chat/rooms/a b/messages` with each id escaped. */
export function path(strings, ...ids) {
  return strings.reduce((out, part, i) => out + part + (i < ids.length ? encodeURIComponent(ids[i]) : ''), '');
}
