// "… is typing" for one conversation (SPEC 5 `typing`, not stored): tells
// the others while this person types, at most once per interval, and shows
// who else is typing until their frames stop.

import { connection } from "./socket.js";

const me = document.body.dataset;
// How long "… is typing" stays after the last typing frame: a bit more
// than the interval at which a typing person's client repeats it.
const TYPING_GRACE = 2.5;

export class Typing {
  constructor(conversation, indicator) {
    this.conversation = conversation;
    this.indicator = indicator;
    this.interval = Number(me.typingInterval) || 2000;
    this.lastSent = 0;
    this.timer = null;
  }

  /** This person typed. */
  send() {
    const now = Date.now();
    if (now - this.lastSent < this.interval) return;
    if (connection.send({ type: "typing", conversation: this.conversation })) this.lastSent = now;
  }

  /** Someone else is typing. */
  show(who) {
    this.indicator.querySelector('[data-field="typing-text"]').textContent = `${who.name} is typing…`;
    this.indicator.hidden = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.hide(), this.interval * TYPING_GRACE);
  }

  hide() {
    clearTimeout(this.timer);
    this.indicator.hidden = true;
  }
}
