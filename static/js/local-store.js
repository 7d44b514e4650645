// What the browser keeps for the signed-in person from one page load to
// the next, in localStorage: drafts (drafts.js) and sends not yet
// acknowledged (pending-sends.js). Every key names its kind and the
// person, so two people sharing a browser never see each other's; signing
// out forgets all of them.
//
// Where the browser refuses storage (some private modes, a full quota),
// nothing is kept and nothing fails: the page works as if it had none.

const ROOT = "chatserver.";
const me = document.body.dataset;
// Set once the person signs out: the page going away must not save again.
let forgotten = false;

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** The key of one thing of `kind` ("draft", "outbox") kept for this person. */
export function keyOf(kind, name) {
  return `${ROOT}${kind}.${me.kind}:${me.me}.${name}`;
}

/** This person's keys of `kind`. */
export function keysOf(kind) {
  const store = storage();
  if (!store) return [];
  const prefix = keyOf(kind, "");
  const keys = [];
  for (let i = 0; i < store.length; i += 1) {
    const key = store.key(i);
    if (key?.startsWith(prefix)) keys.push(key);
  }
  return keys;
}

/** The value kept at `key`, or null (one that does not parse is dropped). */
export function load(key) {
  const store = storage();
  const raw = store?.getItem(key);
  if (!raw) return null;
  try {
    return JSON.parse(raw);
  } catch {
    store.removeItem(key);
    return null;
  }
}

export function keep(key, value) {
  const store = storage();
  if (!store || forgotten) return;
  try {
    store.setItem(key, JSON.stringify(value));
  } catch {
    // Over the browser's quota: what was kept before stays.
  }
}

export function drop(key) {
  storage()?.removeItem(key);
}

/** Forget everything kept in this browser, everyone's, and keep nothing
 * more from this page (on signing out: the next person at this browser
 * must find none of it). */
export function forgetAll() {
  forgotten = true;
  const store = storage();
  if (!store) return;
  const keys = [];
  for (let i = 0; i < store.length; i += 1) {
    const key = store.key(i);
    if (key?.startsWith(ROOT)) keys.push(key);
  }
  for (const key of keys) store.removeItem(key);
}
