// The console's entry point: sign-in from the URL fragment, the page shell (navigation, who is signed in,
// the unread badge), and hash routes (#/overview, #/chat/ROOM, ...) that mount one view at a time.

import { NotificationCenter } from './center.js';
import { errorBox, h, replace, span } from './dom.js';
import { statePill } from './live.js';
import { EXPIRED, current, signOut, takeNotice, takeTokenFromFragment } from './session.js';
import * as chat from './views/chat.js';
import * as dashboard from './views/dashboard.js';
import * as events from './views/events.js';
import * as notifications from './views/notifications.js';
import * as overview from './views/overview.js';
import * as signin from './views/signin.js';

const VIEWS = {
  overview: { label: 'Overview', staff: true, mount: overview.mount, icon: 'M3 13h4v8H3zM10 8h4v13h-4zM17 3h4v18h-4z' },
  dashboard: { label: 'Admin dashboard', staff: true, mount: dashboard.mount, icon: 'M4 4h7v7H4zM13 4h7v4h-7zM13 10h7v10h-7zM4 13h7v7H4z' },
  notifications: { label: 'Notifications', mount: notifications.mount, icon: 'M12 3a6 6 0 0 0-6 6v4l-2 3h16l-2-3V9a6 6 0 0 0-6-6zM10 19a2 2 0 0 0 4 0' },
  chat: { label: 'Chat', mount: chat.mount, icon: 'M4 5h16v11H9l-5 4z' },
  events: { label: 'Org events', mount: events.mount, icon: 'M13 2 4 14h7l-1 8 9-12h-7z' },
};

const app = document.getElementById('app');
/** The signed-in page: its session, notification center, view and timers; null on the sign-in page. */
let page = null;

function defaultRoute(session) {
  return session.isStaff ? '#/overview' : '#/notifications';
}

function start() {
  takeTokenFromFragment();
  const session = current();
  if (session) enter(session);
  else showSignIn();
}

function showSignIn() {
  leave();
  document.title = 'Sign in · rtctl console';
  signin.render(app, takeNotice(), (session) => {
    history.replaceState(null, '', defaultRoute(session));
    enter(session);
  });
}

function leave() {
  if (!page) return;
  page.unmount?.();
  page.center.stop();
  clearTimeout(page.expiry);
  clearInterval(page.clock);
  page = null;
}

function icon(d) {
  const ns = 'http://www.w3.org/2000/svg';
  const el = document.createElementNS(ns, 'svg');
  el.setAttribute('viewBox', '0 0 24 24');
  el.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', d);
  el.append(path);
  return el;
}

function enter(session) {
  leave();
  const center = new NotificationCenter().start();
  const badge = h('span', { class: 'nav-badge', dataset: { stat: 'nav-unread' }, hidden: true });
  const nav = h(
    'nav',
    { class: 'nav' },
    Object.entries(VIEWS)
      .filter(([, view]) => !view.staff || session.isStaff)
      .map(([name, view]) => h('a', { href: `#/${name}`, dataset: { view: name } }, icon(view.icon), h('span', { text: view.label }), name === 'notifications' ? badge : null)),
  );
  const expires = h('div', { class: 'hint', dataset: { field: 'expires' } });
  const title = h('h1');
  const pillSlot = h('div', { class: 'pill-slot' });
  const banner = h('div', { class: 'banner-slot' });
  const view = h('div', { class: 'view' });
  replace(
    app,
    h(
      'div',
      { class: 'shell' },
      h(
        'aside',
        { class: 'sidebar' },
        h('div', { class: 'brand' }, h('img', { src: 'favicon.svg', alt: '', width: 28, height: 28 }), h('span', {}, 'rtctl ', h('em', { text: 'console' }))),
        h('div', { class: 'hub', title: 'the hub this console belongs to', text: location.host }),
        nav,
        h(
          'div',
          { class: 'who' },
          h('div', { class: 'hint', text: 'Signed in as' }),
          h('div', { class: 'user' }, h('b', { dataset: { field: session.name ? 'name' : 'user' }, text: session.name ?? session.userId }), session.isStaff ? h('span', { class: 'tag staff', text: 'staff' }) : null),
          session.name ? h('div', { class: 'hint mono', title: 'user id (the token\u2019s sub)', dataset: { field: 'user' }, text: session.userId }) : null,
          session.orgs.length ? h('div', { class: 'hint', text: `orgs: ${session.orgs.join(', ')}` }) : null,
          expires,
          h('button', { class: 'ghost small', dataset: { action: 'sign-out' }, text: 'Sign out', on: { click: () => signOut('You signed out.') } }),
        ),
      ),
      h('div', { class: 'main' }, h('header', { class: 'topbar' }, title, pillSlot), banner, view),
    ),
  );
  center.on('unread', (count) => {
    badge.hidden = !count;
    badge.textContent = count > 99 ? '99+' : String(count);
    document.title = `${count ? `(${count}) ` : ''}${page?.pageTitle ? `${page.pageTitle} · ` : ''}rtctl console`;
  });

  const tick = () => {
    const left = session.secondsLeft();
    expires.textContent = left === Infinity ? 'token never expires' : `token expires in ${span(left)}`;
  };
  tick();
  page = {
    session,
    center,
    view,
    title,
    pillSlot,
    banner,
    nav,
    unmount: null,
    clock: setInterval(tick, 15000),
    // A timer longer than 2^31 ms fires at once: cap it, the next page load sets it again.
    expiry: setTimeout(() => signOut(EXPIRED), Math.min(session.secondsLeft() * 1000, 2 ** 31 - 1)),
  };
  route();
}

function route() {
  if (!page) return;
  const [name, ...params] = location.hash.replace(/^#\/?/, '').split('/');
  const view = VIEWS[name];
  if (!view || (view.staff && !page.session.isStaff)) {
    history.replaceState(null, '', defaultRoute(page.session));
    route();
    return;
  }
  page.unmount?.();
  page.unmount = null;
  for (const link of page.nav.querySelectorAll('a')) link.classList.toggle('active', link.dataset.view === name);
  replace(page.banner);
  const root = h('div', { class: `view-${name}` });
  replace(page.view, root);
  let unwatch = null;
  const ctx = {
    session: page.session,
    center: page.center,
    params: params.filter(Boolean),
    header: (text, source) => {
      page.title.textContent = text;
      page.pageTitle = text;
      document.title = `${page.center.unread ? `(${page.center.unread}) ` : ''}${text} · rtctl console`;
      unwatch?.();
      unwatch = null;
      if (source) {
        const pill = statePill(source);
        unwatch = pill.unwatch;
        replace(page.pillSlot, pill.el);
      } else {
        replace(page.pillSlot);
      }
    },
  };
  try {
    const unmount = view.mount(root, ctx);
    page.unmount = () => {
      unwatch?.();
      unmount?.();
    };
  } catch (error) {
    replace(root, errorBox(`The ${view.label} view failed to start.`, String(error?.stack ?? error)));
  }
}

/** Shows what went wrong, as text, instead of a dead page. */
function report(message) {
  const target = page?.banner ?? app;
  target.append(h('div', { class: 'banner' }, errorBox('Something went wrong in the console.', message), h('button', { class: 'ghost small', text: 'Dismiss', on: { click: (e) => e.target.parentElement.remove() } })));
}
window.addEventListener('error', (event) => {
  // Chromium reports a ResizeObserver that could not deliver everything in one frame as an error; it is
  // harmless (the next frame delivers it) and not the console's failure.
  if (!String(event.message).startsWith('ResizeObserver loop')) report(event.message);
});
window.addEventListener('unhandledrejection', (event) => report(String(event.reason?.message ?? event.reason)));
window.addEventListener('rtctl:signed-out', () => showSignIn());
// A new link pasted into this tab changes only the fragment: no reload, so sign in from here too.
window.addEventListener('hashchange', () => (new URLSearchParams(location.hash.slice(1)).has('token') ? start() : route()));

start();
