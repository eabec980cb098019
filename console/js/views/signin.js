// The sign-in page: how to get a signed-in link (`rtctl console --staff --open`), why the person is here
// (token expired, refused, ...), and a field to paste a JWT for hubs whose tokens come from elsewhere.

import { code, h, replace } from '../dom.js';
import { signIn, takeNotice } from '../session.js';

export function render(root, notice, onSignedIn) {
  const field = h('input', { type: 'password', autocomplete: 'off', spellcheck: false, placeholder: 'eyJhbGciOi…', dataset: { field: 'token' } });
  const note = h('div');
  const form = h(
    'form',
    {
      class: 'paste',
      on: {
        submit: (event) => {
          event.preventDefault();
          const session = signIn(field.value.trim());
          if (session) onSignedIn(session);
          else replace(note, h('p', { class: 'row-error', role: 'alert', text: 'That is not a JWT: expected three base64url parts with a "sub" claim.' }));
          takeNotice();
        },
      },
    },
    h('label', { text: 'Or paste a JWT signed for this hub' }),
    h('div', { class: 'inline' }, field, h('button', { type: 'submit', class: 'primary', text: 'Sign in' })),
    note,
  );
  replace(
    root,
    h(
      'main',
      { class: 'signin' },
      h(
        'section',
        { class: 'card' },
        h('div', { class: 'brand big' }, h('img', { src: 'favicon.svg', alt: '', width: 36, height: 36 }), h('span', {}, 'rtctl ', h('em', { text: 'console' }))),
        notice ? h('div', { class: 'notice', role: 'alert', dataset: { field: 'notice' }, text: notice }) : null,
        h('p', { text: 'The console signs in with a short-lived token in the link that opens it. On the machine that runs the hub, in the directory of its rtctl.toml:' }),
        code('rtctl console --staff --open'),
        h('p', {}, 'opens this page signed in as staff (user ', h('code', { text: 'console' }), '). ',
          'Without ', h('code', { text: '--staff' }), ' you see a user\u2019s own notifications, chat rooms and org events; ',
          h('code', { text: '--user-id ID' }), ' and ', h('code', { text: '--org ORG' }), ' choose whose. Add ', h('code', { text: '--url' }),
          ' when the hub is not on http://127.0.0.1:8000.'),
        h('p', { class: 'hint', text: 'The token travels after the # of the link, which browsers never send to a server; it stays in this tab only (sessionStorage) until it expires or you sign out.' }),
        form,
      ),
    ),
  );
  field.focus();
}
