// The conversation's message list: which message shows where, day
// separators, sender grouping and the "Seen" receipt.
//
// Messages are keyed by seq, so whatever path a message takes (history,
// replay after a reconnect, live frame, ack, HTTP fallback) it is shown once.
// Pending sends live in pending-sends.js, keyed by client_id; their bubbles carry
// that client_id, and only an ack (which names it) turns a bubble into the
// stored message. Our own message frame can beat its ack: while a send of
// this conversation is in flight such a frame is held back, and shown by
// the ack or, if it was another tab's, once nothing is in flight.

import { connection } from "./socket.js";
import { dayKey, dayLabel } from "./time.js";
import { fillMessage, isMine, newMessage, pendingMessage, showFailed, showSending } from "./message-view.js";
import { isSystemLine, systemLine } from "./system-line.js";

// Consecutive messages of one sender within this window share one header.
const GROUP_WINDOW_MS = 5 * 60 * 1000;
// "At the bottom" tolerance, so a new message keeps the view pinned.
const BOTTOM_SLACK_PX = 80;

const SEEN_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="m1.5 12.5 1.4-1.4 4.1 4.1L16.6 5.6 18 7 7 18zm7.6 3.4 1.4 1.4L22.1 5.6l-1.4-1.4z"/></svg>';

export class MessageList {
  /**
   * @param {object} parts the timeline (scrolls), the list and the empty state
   * @param {object} hooks `onDelete(el, scope, button)` from a message's menu,
   *   `onShown(el)` for each element shown, `seenUpTo()` the other side's read seq,
   *   `onArrived(message, el)` for each message of someone else's shown live
   */
  constructor({ conversation, timeline, list, empty, newBelow }, { onDelete, onShown, seenUpTo, onArrived }) {
    this.conversation = conversation;
    this.timeline = timeline;
    this.list = list;
    this.empty = empty;
    this.onDelete = onDelete;
    this.onShown = onShown;
    this.seenUpTo = seenUpTo;
    this.onArrived = onArrived;
    this.byseq = new Map();
    // Our own live messages that arrived while a send was in flight, by seq.
    this.held = new Map();
    this.maxSeq = 0;
    this.minSeq = null;
    // Every message up to this seq has come by the history or the
    // subscription (which sends them in order, without gaps): where a
    // (re)subscription resumes. Not maxSeq, which an ack can take past
    // messages of others still on their way.
    this.through = 0;
    // Whether the view follows the newest message: until the person scrolls
    // up. Content that grows after it was placed (a thumbnail loading, the
    // composer taking more lines) then keeps the newest message in view.
    this.pinned = true;
    // Takes the reader back to the newest message: "Jump to newest" once
    // they are scrolled up by more than a screen, "New messages" as soon
    // as something arrived below while they read further up.
    this.newBelow = newBelow;
    this.unseenBelow = false;
    newBelow.addEventListener("click", () => {
      this.scrollToBottom();
      this.unseenBelow = false;
      this.showNewBelow();
    });
    timeline.addEventListener(
      "scroll",
      () => {
        this.pinned = this.atBottom();
        this.showNewBelow();
      },
      { passive: true },
    );
    this.resizes = new ResizeObserver(() => {
      if (this.pinned) this.scrollToBottom();
    });
    this.resizes.observe(list);
    this.resizes.observe(timeline);
  }

  stop() {
    this.resizes.disconnect();
  }

  // -- scrolling -------------------------------------------------------------------

  atBottom() {
    const t = this.timeline;
    return t.scrollHeight - t.scrollTop - t.clientHeight < BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.timeline.scrollTop = this.timeline.scrollHeight;
  }

  /** Shows the way back to the newest message, labelled for what is below. */
  showNewBelow() {
    const t = this.timeline;
    if (this.atBottom()) this.unseenBelow = false;
    const far = t.scrollHeight - t.scrollTop - t.clientHeight > t.clientHeight;
    const kind = this.unseenBelow ? "new" : far ? "jump" : "";
    this.newBelow.hidden = !kind;
    if (!kind || this.newBelow.dataset.kind === kind) return;
    this.newBelow.dataset.kind = kind;
    this.newBelow.querySelector('[data-role="label"]').textContent = kind === "new" ? "New messages" : "Jump to newest";
  }

  // -- stored messages ---------------------------------------------------------------

  /** A live message frame: ours waits for its ack while a send is in flight. */
  receive(message) {
    this.caughtUp(message.seq);
    if (!this.byseq.has(message.seq) && isMine(message.sender) && connection.sends.hasInFlight(this.conversation)) {
      this.held.set(message.seq, message);
      return;
    }
    this.add(message);
  }

  /** Messages up to SEQ have all come (history or subscription). */
  caughtUp(seq) {
    this.through = Math.max(this.through, seq);
  }

  /** Show (or update) one MESSAGE; never duplicates a seq. `el` is the
   * pending bubble it replaces, if any. */
  add(message, { quiet = false, el: given = null } = {}) {
    const seq = message.seq;
    this.held.delete(seq);
    this.maxSeq = Math.max(this.maxSeq, seq);
    this.minSeq = this.minSeq === null ? seq : Math.min(this.minSeq, seq);
    const known = this.byseq.get(seq);
    if (message.hidden) {
      if (known?.el) known.el.remove();
      this.byseq.set(seq, { message, el: null });
      return;
    }
    if (known) {
      if (known.el && message.deleted && !known.message.deleted) {
        known.message = message;
        fillMessage(known.el, message, this.onDelete);
      }
      return;
    }
    const pinned = quiet || this.atBottom();
    const system = isSystemLine(message);
    const el = given || (system ? systemLine(message) : newMessage());
    if (!system) fillMessage(el, message, this.onDelete);
    this.byseq.set(seq, { message, el });
    this.place(el, seq);
    if (!quiet) {
      this.layout();
      if (pinned || isMine(message.sender)) this.scrollToBottom();
      else if (seq === this.maxSeq) {
        this.unseenBelow = true;
        this.showNewBelow();
      }
    }
    this.onShown(el);
    if (!quiet && !given && !isMine(message.sender)) this.onArrived(message, el);
    if (!system) this.empty.hidden = true;
  }

  /** Show the messages held back for an ack once no send is in flight (they
   * were another tab's, or their ack went astray and a later one covers them). */
  release() {
    if (!this.held.size || connection.sends.hasInFlight(this.conversation)) return;
    const held = [...this.held.values()].sort((a, b) => a.seq - b.seq);
    this.held.clear();
    for (const message of held) this.add(message);
  }

  place(el, seq) {
    const placed = [...this.list.querySelectorAll(".msg[data-seq]")].filter((n) => n !== el);
    for (let i = placed.length - 1; i >= 0; i -= 1) {
      if (Number(placed[i].dataset.seq) < seq) {
        placed[i].after(el);
        return;
      }
    }
    if (placed.length) {
      placed[0].before(el);
      return;
    }
    const firstPending = this.list.querySelector(".msg:not([data-seq])");
    if (firstPending && firstPending !== el) firstPending.before(el);
    else this.list.append(el);
  }

  /** The element showing seq `seq`, if this viewer sees it. */
  element(seq) {
    return this.byseq.get(seq)?.el || null;
  }

  message(seq) {
    return this.byseq.get(seq)?.message || this.held.get(seq) || null;
  }

  /** Deleted for this viewer only: gone from the list, its seq still known. */
  hide(seq) {
    const entry = this.byseq.get(seq);
    if (!entry) return;
    entry.el?.remove();
    this.byseq.set(seq, { message: { ...entry.message, hidden: true }, el: null });
    this.layout();
  }

  /** Deleted for everyone: a placeholder. Returns whether anything changed. */
  markDeleted(seq) {
    const gone = (m) => ({ ...m, deleted: true, body: "", html: "", attachments: [] });
    const heldMessage = this.held.get(seq);
    if (heldMessage) {
      this.held.set(seq, gone(heldMessage));
      return false;
    }
    const entry = this.byseq.get(seq);
    if (!entry || entry.message.deleted) return false;
    entry.message = gone(entry.message);
    if (entry.el) {
      fillMessage(entry.el, entry.message, this.onDelete);
      this.layout();
    }
    return true;
  }

  /** The newest message this viewer still sees (deleted ones as placeholders). */
  newestVisible() {
    let newest = null;
    for (const { message } of this.byseq.values()) {
      if (!message.hidden && !isSystemLine(message) && (!newest || message.seq > newest.seq)) newest = message;
    }
    return newest;
  }

  /** The newest seq shown as an element (0 if none). */
  newestShown() {
    let newest = 0;
    for (const { message, el } of this.byseq.values()) if (el) newest = Math.max(newest, message.seq);
    return newest;
  }

  // -- pending sends (held by pending-sends.js, shown here by client_id) -------------

  bubble(clientId) {
    return this.list.querySelector(`.msg:not([data-seq])[data-client-id="${CSS.escape(clientId)}"]`);
  }

  /** A send pending-sends.js holds ({clientId, body, files, failed}), as a bubble. */
  showPending(send, handlers) {
    if (this.bubble(send.clientId)) return;
    const el = pendingMessage(send);
    this.list.append(el);
    if (send.failed) showFailed(el, send.failed.text, handlers);
    this.layout();
    this.scrollToBottom();
  }

  /** The ack for `clientId`: its bubble becomes MESSAGE (or goes, if the
   * message is already shown). The server may leave out this socket's own
   * `message` copy, so the ack of the next seq counts as having come. */
  confirm(clientId, message) {
    if (message.seq <= this.through + 1) this.caughtUp(message.seq);
    const el = this.bubble(clientId);
    if (this.byseq.has(message.seq)) {
      this.held.delete(message.seq);
      if (el) {
        el.remove();
        this.layout();
      }
      return;
    }
    this.add(message, { el });
  }

  failed(clientId, text, handlers) {
    const el = this.bubble(clientId);
    if (el) showFailed(el, text, handlers);
  }

  sending(clientId) {
    const el = this.bubble(clientId);
    if (el) showSending(el);
  }

  drop(clientId) {
    this.bubble(clientId)?.remove();
    this.layout();
  }

  // -- layout ------------------------------------------------------------------------

  /** Day separators, sender grouping and the "Seen" receipt, in one pass;
   * what is already in place stays (a separator or receipt is replaced only
   * where it changed). */
  layout() {
    const stale = new Set(this.list.querySelectorAll(".day-sep"));
    const seenUpTo = this.seenUpTo();
    let prev = null;
    let lastSeenMine = null;
    for (const el of [...this.list.querySelectorAll(".msg")]) {
      const at = new Date(el.dataset.at || Date.now());
      const day = dayKey(at);
      if (!prev || prev.day !== day) {
        const label = dayLabel(at);
        const before = el.previousElementSibling;
        if (before?.classList.contains("day-sep") && before.textContent === label) stale.delete(before);
        else {
          const sep = document.createElement("li");
          sep.className = "day-sep";
          sep.textContent = label;
          el.before(sep);
        }
      }
      const sameRun = prev && prev.day === day && prev.sender === el.dataset.sender && at - prev.at < GROUP_WINDOW_MS;
      el.classList.toggle("cont", Boolean(sameRun));
      prev = { day, sender: el.dataset.sender, at };
      const stored = el.dataset.seq && !el.classList.contains("pending");
      if (el.classList.contains("mine") && stored && Number(el.dataset.seq) <= seenUpTo) lastSeenMine = el;
    }
    for (const sep of stale) sep.remove();
    const receipts = [...this.list.querySelectorAll(".read-receipt")];
    const kept = receipts.find((r) => lastSeenMine && r.parentElement === lastSeenMine.querySelector(".msg-status"));
    for (const r of receipts) if (r !== kept) r.remove();
    if (lastSeenMine && !kept) {
      const receipt = document.createElement("span");
      receipt.className = "read-receipt";
      receipt.dataset.testid = "read-receipt";
      receipt.insertAdjacentHTML("afterbegin", SEEN_ICON);
      receipt.append("Seen");
      lastSeenMine.querySelector(".msg-status").append(receipt);
    }
    // System lines are not messages: "No messages yet" stays beside them.
    this.empty.hidden = this.list.querySelector(".msg:not(.system-line)") !== null;
  }
}
