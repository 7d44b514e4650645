// Read state of one conversation: how far this viewer has read (and tells
// the server, SPEC 5 `read`), and how far the other side has (the "Seen"
// receipt). A message counts as read only once at least half of it was on
// screen while the tab was visible and focused.

import { api } from "./api.js";
import { connection } from "./socket.js";

const me = document.body.dataset;
const READ_DEBOUNCE_MS = 250;

export class ReadTracker {
  /**
   * @param {string} conversation its id
   * @param {Element} timeline the scrolling element messages are seen in
   * @param {() => {newestShown: number, maxSeq: number}} extent what the list holds
   */
  constructor(conversation, timeline, extent) {
    this.conversation = conversation;
    this.extent = extent;
    this.myReadSeq = 0;
    this.otherReadSeq = 0;
    this.visibleMax = 0;
    this.timer = null;
    this.stopped = false;
    this.observer = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          if (e.isIntersecting && e.target.dataset.seq) {
            this.visibleMax = Math.max(this.visibleMax, Number(e.target.dataset.seq));
          }
        }
        this.schedule();
      },
      { root: timeline, threshold: 0.5 },
    );
    this.onFocus = () => this.schedule();
    window.addEventListener("focus", this.onFocus);
    document.addEventListener("visibilitychange", this.onFocus);
  }

  /** A reader's position (from the summary's `reads` or a `read` frame). */
  note(reader, seq) {
    if (reader.kind === me.kind && reader.id === me.me) this.myReadSeq = Math.max(this.myReadSeq, seq);
    else if (reader.kind !== me.kind) this.otherReadSeq = Math.max(this.otherReadSeq, seq);
  }

  /** Watch a shown message for when it comes into view. */
  observe(el) {
    this.observer.observe(el);
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.markRead(), READ_DEBOUNCE_MS);
  }

  /** Read up to the last message seen, only while the tab is visible and focused. */
  markRead() {
    if (this.stopped || document.visibilityState !== "visible" || !document.hasFocus()) return;
    const { newestShown, maxSeq } = this.extent();
    // Seqs hidden for this viewer after the newest shown message count as read.
    const target = this.visibleMax >= newestShown ? maxSeq : this.visibleMax;
    if (target <= this.myReadSeq) return;
    this.myReadSeq = target;
    if (!connection.send({ type: "read", conversation: this.conversation, seq: target })) {
      api.post(`/api/conversations/${encodeURIComponent(this.conversation)}/read`, { seq: target }).catch(() => {
        this.myReadSeq = 0;
      });
    }
  }

  stop() {
    this.stopped = true;
    this.observer.disconnect();
    clearTimeout(this.timer);
    window.removeEventListener("focus", this.onFocus);
    document.removeEventListener("visibilitychange", this.onFocus);
  }
}
