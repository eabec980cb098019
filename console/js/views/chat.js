// Chat: the rooms the person may enter (GET /api/v1/chat/rooms, with unread counts), and one room over
// /ws/chat/{room_id}/: history with older pages on scroll, sending with an optimistic copy reconciled by
// client_id, typing indicators, read receipts, and who is online in the room (from user_status).

import { api } from '../api.js';
import { empty, errorBox, formatTime, h, replace, safeLink } from '../dom.js';
import { LiveSocket } from '../live.js';

const ROOMS_EVERY_MS = 10000;
const HISTORY_PAGE = 50;
const MAX_MESSAGE = 4000;
/** Send `typing: true` at most this often while keys are pressed, `false` after this much quiet. */
const TYPING_REPEAT_MS = 2500;
const TYPING_IDLE_MS = 3000;
/** Another user's indicator goes away this long after their last `typing: true`. */
const TYPING_SHOWN_MS = 6000;

/** A client_id for an optimistic message. Not crypto.randomUUID: a hub reached over plain HTTP on
 * another host is not a secure context, where browsers leave it out. */
function clientIdNow() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `c-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export function mount(root, ctx) {
  const roomId = ctx.params[0] ? decodeURIComponent(ctx.params[0]) : null;
  const me = ctx.session.userId;
  const roomsList = h('nav', { class: 'rooms', dataset: { list: 'rooms' } });
  const pane = h('section', { class: 'card room' });
  const problem = h('div');
  replace(root, problem, h('div', { class: 'chat' }, h('aside', { class: 'card rooms-card' }, h('header', {}, h('h3', { text: 'Rooms' })), roomsList, ctx.session.isStaff ? newRoomForm() : null), pane));

  let rooms = [];
  async function loadRooms() {
    try {
      rooms = (await api('/api/v1/chat/rooms')).rooms;
      replace(problem);
      drawRooms();
      if (roomId !== null) drawOnline();
    } catch (error) {
      replace(problem, errorBox('Cannot load the chat rooms.', error.message));
    }
  }

  function drawRooms() {
    if (!rooms.length) {
      replace(roomsList, empty('No rooms you may enter.', h('p', { class: 'hint', text: ctx.session.isStaff ? 'Create one below.' : 'Rooms are created through POST /api/v1/chat/rooms with you among the members.' })));
      return;
    }
    replace(
      roomsList,
      rooms.map((room) =>
        h(
          'a',
          { class: ['room-link', room.room_id === roomId && 'active'], href: `#/chat/${encodeURIComponent(room.room_id)}`, dataset: { roomId: room.room_id } },
          h('div', { class: 'room-name' }, h('b', { text: room.name }), room.unread_count && room.room_id !== roomId ? h('span', { class: 'count-badge', dataset: { unread: String(room.unread_count) }, text: String(room.unread_count) }) : null),
          h('div', { class: 'meta', text: room.last_message ? `${room.last_message.sender_id}: ${room.last_message.content}` : `${room.members.length} members` }),
        ),
      ),
    );
  }

  function newRoomForm() {
    const id = h('input', { type: 'text', placeholder: 'room id, e.g. support', pattern: '[A-Za-z0-9_.\\-]{1,64}', required: true });
    const members = h('input', { type: 'text', placeholder: 'members: user ids, comma separated' });
    const note = h('div');
    return h(
      'form',
      {
        class: 'new-room',
        on: {
          submit: async (event) => {
            event.preventDefault();
            try {
              const body = { room_id: id.value.trim(), members: members.value.split(',').map((m) => m.trim()).filter(Boolean) };
              const room = await api('/api/v1/chat/rooms', { method: 'POST', body });
              location.hash = `#/chat/${encodeURIComponent(room.room_id)}`;
            } catch (error) {
              replace(note, h('p', { class: 'row-error', text: error.message }));
            }
          },
        },
      },
      h('h4', { text: 'New room (staff)' }),
      id,
      members,
      h('button', { type: 'submit', class: 'ghost', text: 'Create room' }),
      note,
    );
  }

  const roomsTimer = setInterval(loadRooms, ROOMS_EVERY_MS);
  loadRooms();

  if (roomId === null) {
    ctx.header('Chat', null);
    replace(pane, empty('Pick a room.'));
    return () => clearInterval(roomsTimer);
  }

  // ---- one room ----
  let messages = [];
  let hasMore = false;
  let loadingOlder = false;
  let lastReceipt = 0;
  const online = new Set([me]);
  const typing = new Map();
  const receipts = new Map();

  const title = h('h3', { text: roomId });
  const onlineLine = h('div', { class: 'online', dataset: { list: 'online' } });
  const scroller = h('div', { class: 'messages', dataset: { list: 'messages' } });
  const typingLine = h('div', { class: 'typing', dataset: { field: 'typing' } });
  const input = h('textarea', { rows: 2, maxLength: MAX_MESSAGE, placeholder: 'Message (Enter sends, Shift+Enter for a new line)', dataset: { field: 'message' } });
  const sendButton = h('button', { type: 'submit', class: 'primary', dataset: { action: 'send' }, text: 'Send' });
  const composer = h('form', { class: 'composer', on: { submit: (e) => { e.preventDefault(); send(); } } }, input, sendButton);
  replace(pane, h('header', { class: 'room-head' }, title, onlineLine), scroller, typingLine, composer);

  const socket = new LiveSocket(`/ws/chat/${encodeURIComponent(roomId)}/`, {
    onOpen: () => drawOnline(),
    onMessage: (message) => handle(message),
  });
  ctx.header(`Chat · ${roomId}`, socket);
  const unwatch = socket.watch((state) => {
    sendButton.disabled = state.phase !== 'live';
  });

  function handle(message) {
    switch (message.type) {
      case 'history':
        // The greeting's history (every reconnection): the newest page, oldest first.
        merge(message.messages, { replaceAll: true });
        hasMore = message.has_more;
        draw({ stick: true });
        break;
      case 'chat_message':
        merge([message.message]);
        online.add(message.message.sender_id);
        typing.delete(message.message.sender_id);
        draw({ stick: atBottom() });
        break;
      case 'typing':
        if (message.is_typing) {
          clearTimeout(typing.get(message.user_id));
          typing.set(message.user_id, setTimeout(() => { typing.delete(message.user_id); drawTyping(); }, TYPING_SHOWN_MS));
          online.add(message.user_id);
        } else {
          clearTimeout(typing.get(message.user_id));
          typing.delete(message.user_id);
        }
        drawTyping();
        drawOnline();
        break;
      case 'read_receipt':
        receipts.set(message.user_id, Math.max(receipts.get(message.user_id) ?? 0, message.message_id));
        online.add(message.user_id);
        draw({ stick: atBottom() });
        break;
      case 'user_status':
        if (message.status === 'online') online.add(message.user_id);
        else online.delete(message.user_id);
        drawOnline();
        break;
      default:
        break;
    }
  }

  /** Adds stored messages by id (a message may come in history and as a push: once only). */
  function merge(stored, { replaceAll = false } = {}) {
    const pending = messages.filter((m) => m.pending);
    const byId = new Map((replaceAll ? [] : messages.filter((m) => !m.pending)).map((m) => [m.id, m]));
    for (const m of stored) byId.set(m.id, m);
    messages = [...byId.values()].sort((a, b) => a.id - b.id).concat(pending);
  }

  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
  }

  async function loadOlder() {
    const first = messages.find((m) => !m.pending);
    if (!hasMore || loadingOlder || !first) return;
    loadingOlder = true;
    draw();
    try {
      const reply = await socket.request({ type: 'get_history', before_id: first.id, limit: HISTORY_PAGE });
      const height = scroller.scrollHeight;
      merge(reply.messages);
      hasMore = reply.has_more;
      loadingOlder = false;
      draw();
      // Keep the message that was on top where it was.
      scroller.scrollTop += scroller.scrollHeight - height;
    } catch (error) {
      loadingOlder = false;
      replace(problem, errorBox('Cannot load older messages.', error.message));
      draw();
    }
  }
  scroller.addEventListener('scroll', () => {
    if (scroller.scrollTop < 80) loadOlder();
    if (atBottom()) sendReceipt();
  });

  async function send() {
    const text = input.value;
    if (!text.trim() || !socket.phaseIs('live')) return;
    const clientId = clientIdNow();
    messages.push({ pending: true, client_id: clientId, sender_id: me, content: text, created_at: new Date().toISOString() });
    input.value = '';
    stopTyping();
    draw({ stick: true });
    try {
      const reply = await socket.request({ type: 'chat_message', message: text, client_id: clientId });
      messages = messages.filter((m) => m.client_id !== clientId || !m.pending);
      merge([reply.message]);
    } catch (error) {
      const failed = messages.find((m) => m.client_id === clientId);
      if (failed) failed.error = error.message;
    }
    draw({ stick: true });
  }

  let typingSentAt = 0;
  let typingIdle = null;
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingSentAt) socket.send({ type: 'typing', is_typing: false });
    typingSentAt = 0;
  }
  input.addEventListener('input', () => {
    if (!input.value) return stopTyping();
    if (Date.now() - typingSentAt > TYPING_REPEAT_MS && socket.send({ type: 'typing', is_typing: true })) typingSentAt = Date.now();
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });

  /** Tells the room how far this person has read: the newest message, once it is on screen. */
  function sendReceipt() {
    const newest = [...messages].reverse().find((m) => !m.pending);
    if (!newest || newest.id <= lastReceipt || document.visibilityState !== 'visible' || !atBottom()) return;
    if (socket.send({ type: 'read_receipt', message_id: newest.id })) {
      lastReceipt = newest.id;
      const room = rooms.find((r) => r.room_id === roomId);
      if (room) room.unread_count = 0;
    }
  }
  const onVisible = () => sendReceipt();
  document.addEventListener('visibilitychange', onVisible);

  function draw({ stick = false } = {}) {
    const nodes = [];
    if (hasMore || loadingOlder) nodes.push(h('div', { class: 'older', text: loadingOlder ? 'Loading older messages…' : 'Scroll up for older messages' }));
    else if (messages.length) nodes.push(h('div', { class: 'older', text: 'Start of the conversation' }));
    else nodes.push(empty('No messages yet: say hello.'));
    let previous = null;
    for (const m of messages) {
      const mine = m.sender_id === me;
      const grouped = previous && previous.sender_id === m.sender_id && !previous.pending === !m.pending;
      const seenBy = m.pending ? [] : [...receipts].filter(([user, id]) => id === m.id && user !== me).map(([user]) => user);
      const link = safeLink(m.attachment_url);
      nodes.push(
        h(
          'div',
          { class: ['message', mine && 'mine', m.pending && 'pending', grouped && 'grouped'], dataset: m.pending ? { clientId: m.client_id } : { messageId: String(m.id), sender: m.sender_id } },
          grouped ? null : h('div', { class: 'from' }, h('b', { text: mine ? 'you' : m.sender_id }), h('time', { text: formatTime(m.created_at) })),
          h('div', { class: 'bubble', text: m.content }),
          link ? h('a', { class: 'attachment', href: link, target: '_blank', rel: 'noopener noreferrer', text: 'attachment' }) : null,
          m.pending && !m.error ? h('div', { class: 'state', text: 'sending…' }) : null,
          m.error ? h('div', { class: 'row-error', text: `not sent: ${m.error}` }) : null,
          seenBy.length ? h('div', { class: 'seen', dataset: { seenBy: seenBy.join(',') }, text: `Seen by ${seenBy.join(', ')}` }) : null,
        ),
      );
      previous = m;
    }
    replace(scroller, nodes);
    if (stick) scroller.scrollTop = scroller.scrollHeight;
    sendReceipt();
  }

  function drawTyping() {
    const who = [...typing.keys()].filter((u) => u !== me);
    typingLine.textContent = who.length ? `${who.join(', ')} ${who.length === 1 ? 'is' : 'are'} typing…` : '';
  }

  function drawOnline() {
    const room = rooms.find((r) => r.room_id === roomId);
    if (room) title.textContent = room.name;
    replace(onlineLine, h('span', { class: 'hint', text: 'Online:' }), [...online].sort().map((u) => h('span', { class: ['chip', u === me && 'me'], dataset: { user: u }, text: u === me ? `${u} (you)` : u })));
  }

  draw();
  drawOnline();
  socket.start();
  return () => {
    clearInterval(roomsTimer);
    clearTimeout(typingIdle);
    for (const timer of typing.values()) clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
    unwatch();
    socket.stop();
  };
}
