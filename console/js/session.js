// The signed-in person: a JWT that arrives in the URL fragment (#token=..., which browsers never send to
// a server), kept in this tab's sessionStorage only, and forgotten on sign-out or when the hub refuses it.

const TOKEN_KEY = 'rtctl.console.token';
const NOTICE_KEY = 'rtctl.console.notice';
/** What the sign-in page says when the token ran out. */
export const EXPIRED = 'Your token expired. Run `rtctl console` again for a new link.';

/** The claims of a JWT, decoded but not verified (the hub verifies; this only names the person). */
export function claimsOf(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const text = new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(text);
    return claims && typeof claims === 'object' && typeof claims.sub !== 'undefined' ? claims : null;
  } catch {
    return null;
  }
}

/** Who is signed in, from the token's claims. */
export class Session {
  constructor(token, claims) {
    this.token = token;
    this.userId = String(claims.sub);
    this.isStaff = claims.is_staff === true;
    this.orgs = Array.isArray(claims.orgs) ? claims.orgs.map(String) : [];
    this.name = typeof claims.name === 'string' ? claims.name : null;
    this.expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  }

  /** Seconds until the token expires (negative once it has). */
  secondsLeft() {
    return this.expiresAt === null ? Infinity : (this.expiresAt - Date.now()) / 1000;
  }
}

/**
 * Moves a token from the fragment into sessionStorage and takes it out of the address bar (and out of
 * the history entry), so that it is not in a bookmark or a screenshot. True when there was one.
 */
export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token === null) return false;
  history.replaceState(null, '', location.pathname + location.search);
  signIn(token.trim());
  return true;
}

/** Keeps a token for this tab; the error says why it is not one. */
export function signIn(token) {
  const claims = claimsOf(token);
  if (!claims) {
    remember('The token in that link is not a JWT (expected three base64url parts with a "sub" claim).');
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  return new Session(token, claims);
}

/** The session of this tab, or null (no token, or it expired). */
export function current() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const claims = token && claimsOf(token);
  if (!claims) return null;
  const session = new Session(token, claims);
  if (session.secondsLeft() <= 0) {
    signOut(EXPIRED);
    return null;
  }
  return session;
}

/** Forgets the token and goes back to the sign-in page, saying why. */
export function signOut(reason) {
  if (sessionStorage.getItem(TOKEN_KEY) === null && !reason) return;
  sessionStorage.removeItem(TOKEN_KEY);
  if (reason) remember(reason);
  window.dispatchEvent(new CustomEvent('rtctl:signed-out'));
}

function remember(reason) {
  sessionStorage.setItem(NOTICE_KEY, reason);
}

/** Why the person was sent to the sign-in page, once. */
export function takeNotice() {
  const notice = sessionStorage.getItem(NOTICE_KEY);
  sessionStorage.removeItem(NOTICE_KEY);
  return notice;
}

/** The token for API calls; the views run only while signed in. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}
