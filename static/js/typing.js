// "… is typing" for one conversation (SPEC 5 `typing`, not stored): tells
// the others while this person types, at most once per interval, and shows
// who else is typing until their frames stop: everyone typing at once, each
// on their own timer ("Alice and Bob are typing…").

import { connection } from "./socket.js";

const me = document.body.dataset;
// How long "… is typing" stays after the last typing frame: a bit more
// than the interval at which a typing person's client repeats it.
const TYPING_GRACE = 2.5;
// Names shown before the rest are counted ("Alice, Bob and 2 others").
const NAMED = 2;

/** The sentence for the people typing, in the order they started. */
export function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === NAMED) return `${names[0]} and ${names[1]} are typing…`;
  const others = names.length - NAMED;
  return `${names.slice(0, NAMED).join(", ")} and ${others} ${others === 1 ? "other" : "others"} are typing…`;
}

const keyOf = (who) => `${who.kind}:${who.id}`;

export class Typing {
  constructor(conversation, indicator) {
    this.conversation = conversation;
    this.indicator = indicator;
    this.interval = Number(me.typingInterval) || 2000;
    this.lastSent = 0;
    // Who is typing, by kind and id: their name and their own expiry timer.
    this.typists = new Map();
  }

  /** This person typed. */
  send() {
    const now = Date.now();
    if (now - this.lastSent < this.interval) return;
    if (connection.send({ type: "typing", conversation: this.conversation })) this.lastSent = now;
  }

  /** Someone else is typing: shown until their frames stop. */
  show(who) {
    const key = keyOf(who);
    const typist = this.typists.get(key);
    if (typist) clearTimeout(typist.timer);
    const timer = setTimeout(() => this.hide(who), this.interval * TYPING_GRACE);
    this.typists.set(key, { name: who.name || "Someone", timer });
    this.render();
  }

  /** `who` stopped typing (their message arrived); without `who`, everyone. */
  hide(who) {
    const keys = who ? [keyOf(who)] : [...this.typists.keys()];
    for (const key of keys) {
      clearTimeout(this.typists.get(key)?.timer);
      this.typists.delete(key);
    }
    this.render();
  }

  render() {
    const names = [...this.typists.values()].map((typist) => typist.name);
    // Set only when it changes: a live region says a text set again anew,
    // and a typing person's client repeats its frame every interval.
    // Emptied when nobody types, so the next person typing is said again.
    const field = this.indicator.querySelector('[data-field="typing-text"]');
    const text = typingText(names);
    if (field.textContent !== text) field.textContent = text;
    this.indicator.hidden = names.length === 0;
  }
}
