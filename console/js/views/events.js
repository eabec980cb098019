// Org events: pick one of the orgs in the token's `orgs` claim and watch /ws/events/{org_id}/ live.
// What was published before the page connected is not shown; what was published while it was
// disconnected is replayed when it reconnects (the socket resumes from the last event's position), and
// the view says how many, or that resuming failed and those events are missing.

import { empty, errorBox, formatTime, h, json, number, replace } from '../dom.js';
import { LiveSocket } from '../live.js';

const KEEP = 200;

export function mount(root, ctx) {
  const orgs = ctx.session.orgs;
  const chosen = ctx.params[0] ? decodeURIComponent(ctx.params[0]) : orgs[0];
  if (!orgs.length) {
    ctx.header('Org events', null);
    replace(
      root,
      h('section', { class: 'card' }, empty('Your token names no organization.',
        h('p', { class: 'hint' }, 'Org events are for members: sign in with ', h('code', { text: 'rtctl console --org ORG' }), ' (repeat --org for several).'))),
    );
    return () => {};
  }
  if (!orgs.includes(chosen)) {
    ctx.header('Org events', null);
    replace(root, errorBox(`Your token is not a member of ${chosen}.`, `Its orgs: ${orgs.join(', ')}.`));
    return () => {};
  }

  let events = [];
  let count = 0;
  let paused = false;
  const list = h('ol', { class: 'events', dataset: { list: 'events' } });
  const counter = h('span', { class: 'hint', dataset: { stat: 'events' } });
  const resumeNote = h('p', { class: 'hint', dataset: { field: 'resume' }, hidden: true });
  const pause = h('button', { class: 'ghost', text: 'Pause', on: { click: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; draw(); } } });
  const clear = h('button', { class: 'ghost', text: 'Clear', on: { click: () => { events = []; draw(); } } });
  const picker = h(
    'select',
    { dataset: { field: 'org' }, on: { change: () => { location.hash = `#/events/${encodeURIComponent(picker.value)}`; } } },
    orgs.map((org) => h('option', { value: org, selected: org === chosen, text: org })),
  );

  const socket = new LiveSocket(`/ws/events/${encodeURIComponent(chosen)}/`, {
    resumable: true,
    onOpen: (greeting, resumed) => {
      if (!resumed) return;
      const missed = resumed.replayed === 1 ? '1 missed event' : `${number(resumed.replayed)} missed events`;
      note(`Reconnected: ${missed} replayed.`);
    },
    onResumeFailed: (failed) => {
      const why = failed.reason === 'expired' ? 'the hub no longer keeps events that old' : 'the hub lost its event history';
      note(`Reconnected, but resuming failed (${failed.reason}: ${why}): events published while disconnected are missing.`);
    },
    onMessage: (message) => {
      if (message.type !== 'event') return;
      count += 1;
      events = [message, ...events].slice(0, KEEP);
      if (!paused) draw();
      else counter.textContent = `${number(count)} received · paused`;
    },
  });
  ctx.header(`Org events · ${chosen}`, socket);

  replace(
    root,
    h(
      'section',
      { class: 'card' },
      h('header', { class: 'toolbar' }, h('label', {}, 'Organization ', picker), counter, h('span', { class: 'spacer' }), pause, clear),
      resumeNote,
      list,
    ),
  );

  function note(text) {
    resumeNote.textContent = text;
    resumeNote.hidden = false;
  }

  function draw() {
    counter.textContent = `${number(count)} received since the page connected${paused ? ' · paused' : ''}`;
    if (!events.length) {
      replace(list, h('li', {}, empty(`Waiting for events of ${chosen}…`,
        h('p', { class: 'hint' }, 'Publish one with ', h('code', { text: `rtctl event --org ${chosen} --type user.joined --data '{"user_id": 7}'` })))));
      return;
    }
    replace(
      list,
      events.map((e) =>
        h('li', { class: 'event', dataset: { eventType: e.event_type } },
          h('time', { text: formatTime(e.timestamp) }),
          h('span', { class: 'tag', text: e.event_type }),
          h('pre', { class: 'data', text: json(e.data) })),
      ),
    );
  }

  draw();
  socket.start();
  return () => socket.stop();
}
