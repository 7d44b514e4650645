// What one tab did for its person alone, told to that person's other tabs
// in this browser: a message deleted for them, a conversation archived or
// unarchived, the bell's entries marked read. The socket says nothing of these (its frames are about the
// conversation, heard by everyone in it), so without this a second tab
// kept showing a message its person had deleted until it was reloaded.
//
// A BroadcastChannel reaches this browser's tabs only: another device
// shows the change when it next loads the conversation or the inbox. Every
// note names its person, so a tab signed in as someone else ignores it.

const me = document.body.dataset;
const person = `${me.kind}:${me.me}`;
const handlers = new Map();

function openChannel() {
  try {
    return new BroadcastChannel("chatserver.tabs");
  } catch {
    // An old browser or a sandboxed frame: each tab shows its own doings.
    return null;
  }
}

const channel = openChannel();
channel?.addEventListener("message", (event) => {
  const note = event.data;
  if (!note || note.person !== person) return;
  for (const handler of handlers.get(note.kind) || []) handler(note.detail);
});

/** Tell this person's other tabs what this one did: `kind` is "hidden"
 * ({ conversation, seq }), "archived" ({ conversation, archived }) or
 * "bell" ({}: entries marked read). */
export function tellOtherTabs(kind, detail) {
  channel?.postMessage({ person, kind, detail });
}

/** Run `handler(detail)` whenever another tab of this person tells `kind`. */
export function onOtherTab(kind, handler) {
  if (!handlers.has(kind)) handlers.set(kind, []);
  handlers.get(kind).push(handler);
}
