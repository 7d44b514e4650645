// What a screen reader hears of a conversation: each message that arrives
// live from someone else, once, as "Name: words" (messages that arrive
// together, as a reconnect replays what was missed, as one line: "3 new
// messages. The last, Name: words"). The message list itself
// cannot be the live region: its day separators, grouping and "Seen" are
// laid out again as messages come, history arrives a page at a time, and
// one's own send turns from a pending bubble into the stored message, so a
// live list re-read all of that (docs/pages.md, "Accessibility").

import { liveRegion } from "./live-region.js";

// Lines kept in the region: enough for a burst, never a growing list.
const KEEP = 5;
// Messages arriving this close together (a reconnect's replay of what was
// missed, frame after frame) are said as one line.
const TOGETHER_MS = 250;
// A long message is cut: the list holds the whole of it.
const MAX_CHARS = 300;

/** The words said for MESSAGE, shown as `el`. */
export function spoken(message, el) {
  if (message.sender.kind === "system") return message.body;
  const words = (el.querySelector(".msg-body")?.textContent || "").replace(/\s+/g, " ").trim();
  const cut = words.length > MAX_CHARS ? `${words.slice(0, MAX_CHARS)}…` : words;
  const files = message.deleted ? 0 : (message.attachments || []).length;
  const attached = files ? `${files === 1 ? "a file" : `${files} files`}` : "";
  const said = cut && attached ? `${cut} (with ${attached})` : cut || `sent ${attached}`;
  return `${message.sender.name}: ${said}`;
}

/** What is said for the messages that arrived together: the one, or how
 * many and the last (a reconnect replays what was missed all at once). */
export function spokenTogether(arrived) {
  const [message, el] = arrived[arrived.length - 1];
  if (arrived.length === 1) return spoken(message, el);
  return `${arrived.length} new messages. The last, ${spoken(message, el)}`;
}

/** A function that says the messages it is given in `host`, a polite live
 * region (`live-region.js`): those given within TOGETHER_MS of the first
 * as one line. */
export function announcer(host) {
  const region = liveRegion(host, { keep: KEEP });
  let arrived = [];
  return (message, el) => {
    arrived.push([message, el]);
    if (arrived.length > 1) return;
    setTimeout(() => {
      region.say(spokenTogether(arrived));
      arrived = [];
    }, TOGETHER_MS);
  };
}
