// What the browser keeps for the signed-in person from one page load to
// the next, in localStorage: drafts (drafts.js) and sends not yet
// acknowledged (pending-sends.js). Every key names its kind and the
// person, so two people sharing a browser never see each other's; signing
// out forgets all of them.
//
// Where the browser refuses storage (some private modes, a full quota, a
// damaged profile), nothing is kept and nothing fails: the page works as if
// it had none.

const ROOT = "chatserver.";
export const DAY_MS = 24 * 60 * 60 * 1000;
// A draft or a refused send nobody touched for this long is forgotten (a
// send refused for a conversation the person can no longer open would
// otherwise stay in the browser for good).
export const KEPT_MS = 30 * DAY_MS;
// Written and removed at once by the tab that signs out, so that the
// person's other tabs hear of it (a "storage" event) and stop saving too.
const SIGNED_OUT = "chatserver:signed-out";
const me = document.body.dataset;
// Set once the person signs out, here or in another tab: the page going
// away must not save again what signing out forgot.
let forgotten = false;
window.addEventListener("storage", (event) => {
  if (event.key === SIGNED_OUT || event.key === null) forgotten = true;
});

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** The key of one thing of `kind` ("draft", "outbox") kept for this
 * person. Its parts are joined by "/", which no id may hold (ids may hold
 * dots: staff "ann" must not find the keys of staff "ann.lee"). */
export function keyOf(kind, name) {
  return `${ROOT}${kind}/${me.kind}:${me.me}/${name}`;
}

/** This person's keys of `kind`. */
export function keysOf(kind) {
  const store = storage();
  if (!store) return [];
  const prefix = keyOf(kind, "");
  const keys = [];
  try {
    for (let i = 0; i < store.length; i += 1) {
      const key = store.key(i);
      if (key?.startsWith(prefix)) keys.push(key);
    }
  } catch {
    // A damaged store: what was listed is all there is.
  }
  return keys;
}

/** The value kept at `key`, or null (one that does not parse is dropped). */
export function load(key) {
  const store = storage();
  try {
    const raw = store?.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    drop(key);
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
  try {
    storage()?.removeItem(key);
  } catch {
    // A damaged store: nothing more to do.
  }
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
  try {
    store.setItem(SIGNED_OUT, String(Date.now()));
    store.removeItem(SIGNED_OUT);
  } catch {
    // Over the quota even now: the other tabs keep saving until they close.
  }
}
