// One conversation: history with infinite scroll upward, live messages,
// read receipts, typing, deletes and the composer (SPEC 5 and 6).
//
// Messages are keyed by seq, so whatever path a message takes (history,
// replay after a reconnect, live frame, ack, HTTP fallback) it is shown once.

import { api, query } from "./api.js";
import { connection } from "./socket.js";
import { Composer } from "./composer.js";
import { confirmAction, toast } from "./dialog.js";
import { bindMenu, clone, fileSize, hue, initials, statusLabel } from "./ui.js";
import { clock, dayKey, dayLabel, fullTime } from "./time.js";
import { isSystemLine, systemLine } from "./system-line.js";

const me = document.body.dataset;
const PAGE = 50;
// Consecutive messages of one sender within this window share one header.
const GROUP_WINDOW_MS = 5 * 60 * 1000;
// "At the bottom" tolerance, so a new message keeps the view pinned.
const BOTTOM_SLACK_PX = 80;
// How long "… is typing" stays after the last typing frame: a bit more
// than the interval at which a typing person's client repeats it.
const TYPING_GRACE = 2.5;
const READ_DEBOUNCE_MS = 250;

function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function isMine(person) {
  return person.kind === me.kind && person.id === me.me;
}

/** "Our side" of the conversation: for staff, every staff member (a shared
 * inbox); for a candidate, only themselves. Shown on the right. */
function isOurs(person) {
  return me.kind === "staff" ? person.kind === "staff" : isMine(person);
}

const FILE_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V9h5.5z"/></svg>';
const SEEN_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="m1.5 12.5 1.4-1.4 4.1 4.1L16.6 5.6 18 7 7 18zm7.6 3.4 1.4 1.4L22.1 5.6l-1.4-1.4z"/></svg>';

export class ConversationView {
  constructor(pane, summary, { onArchive, archived = false, onBack, onChange, onMarkedUnread } = {}) {
    this.pane = pane;
    this.summary = summary;
    this.id = summary.id;
    this.onArchive = onArchive;
    this.archived = archived;
    this.onBack = onBack;
    // Told when what the inbox row shows may have changed (a delete, a state).
    this.onChange = onChange || (() => {});
    this.onMarkedUnread = onMarkedUnread;
    this.byseq = new Map();
    this.pending = new Map();
    this.maxSeq = 0;
    this.minSeq = null;
    this.reachedStart = false;
    this.loadingOlder = false;
    this.otherReadSeq = 0;
    this.myReadSeq = 0;
    this.visibleMax = 0;
    this.lastTypingSent = 0;
    this.typingTimer = null;
    this.readTimer = null;
    this.destroyed = false;
    for (const r of summary.reads || []) this.noteRead(r.kind, r.id, r.seq);
  }

  // -- lifecycle -------------------------------------------------------------

  async mount() {
    const root = clone("conversation-template");
    this.root = root;
    this.timeline = root.querySelector('[data-role="timeline"]');
    this.list = root.querySelector('[data-role="messages"]');
    this.top = root.querySelector('[data-role="top"]');
    this.empty = root.querySelector('[data-role="empty"]');
    this.typing = root.querySelector('[data-testid="typing"]');
    this.pane.append(root);
    this.composer = new Composer(root.querySelector('[data-role="composer"]'), {
      onSend: (body, files) => this.send(body, files),
      onTyping: () => this.sendTyping(),
      maxAttachments: Number(me.maxAttachments) || 5,
    });
    const maxBody = Number(me.maxBody);
    if (maxBody) this.composer.textarea.maxLength = maxBody;
    this.bindHeader();
    this.renderSummary();
    this.observeReads();
    this.onFocus = () => this.scheduleRead();
    window.addEventListener("focus", this.onFocus);
    document.addEventListener("visibilitychange", this.onFocus);
    await this.loadLatest();
    if (this.destroyed) return;
    connection.join(this.id, this);
    this.observeTop();
    if (this.composer.enabled && matchMedia("(hover: hover)").matches) this.composer.textarea.focus();
  }

  destroy() {
    this.destroyed = true;
    connection.leave(this.id);
    window.removeEventListener("focus", this.onFocus);
    document.removeEventListener("visibilitychange", this.onFocus);
    this.readObserver?.disconnect();
    this.topObserver?.disconnect();
    clearTimeout(this.typingTimer);
    clearTimeout(this.readTimer);
    this.root?.remove();
  }

  // -- header, menu and summary -----------------------------------------------

  bindHeader() {
    const root = this.root;
    const menuButton = root.querySelector('[data-testid="conversation-menu"]');
    bindMenu(menuButton, menuButton.nextElementSibling);
    for (const el of root.querySelectorAll("[data-staff-only]")) el.hidden = me.kind !== "staff";
    root.querySelector('[data-action="end"]').addEventListener("click", () => this.end(menuButton));
    root.querySelector('[data-action="archive"]').addEventListener("click", () => this.toggleArchive());
    const unread = root.querySelector('[data-action="unread"]');
    // Only beside the inbox: a conversation left open would be read again at once.
    unread.hidden = me.kind !== "staff" || !this.onMarkedUnread;
    unread.addEventListener("click", () => this.markUnread());
    root.querySelector('[data-field="transcript"]').href = `/api/conversations/${encodeURIComponent(this.id)}/transcript`;
    const back = root.querySelector('[data-role="back"]');
    back.addEventListener("click", (event) => {
      if (this.onBack && !event.metaKey && !event.ctrlKey) {
        event.preventDefault();
        this.onBack();
      }
    });
  }

  renderSummary() {
    const s = this.summary;
    const field = (name) => this.root.querySelector(`[data-field="${name}"]`);
    const staff = me.kind === "staff";
    // Staff see who they talk to; a candidate sees which job it is about.
    const title = staff ? s.candidate.name : s.job.title;
    const avatar = field("avatar");
    avatar.textContent = initials(title);
    avatar.dataset.hue = hue(staff ? s.candidate.id : s.org.id);
    field("title").textContent = title;
    const applied = new Date(s.applied_at).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
    const about = staff ? s.job.title : s.org.name;
    field("subtitle").textContent = `${about} · Applied ${applied}`;
    const pill = field("status");
    pill.textContent = s.state === "ended" ? "Ended" : statusLabel(s.status);
    pill.dataset.status = s.status;
    pill.dataset.state = s.state;
    const notice = field("notice");
    notice.hidden = !(staff && s.state === "ended" && s.can_send);
    notice.textContent = "This conversation has ended. Sending a message reopens it.";
    field("empty-hint").textContent = staff
      ? `Send ${s.candidate.name} the first message.`
      : s.can_send ? "Send the hiring team a message." : "";
    const end = this.root.querySelector('[data-action="end"]');
    end.hidden = !staff || s.state === "ended";
    this.root.querySelector('[data-action="archive"]').textContent = this.archived ? "Unarchive" : "Archive";
    this.composer.setEnabled(Boolean(s.can_send), s.send_disabled_reason);
  }

  async refreshSummary() {
    // Frames can ask for several refreshes at once; an older answer that
    // arrives last must not undo a newer one.
    this.summaryRound = (this.summaryRound || 0) + 1;
    const round = this.summaryRound;
    try {
      const fresh = await api.get(`/api/conversations/${encodeURIComponent(this.id)}`);
      if (this.destroyed || round !== this.summaryRound) return;
      this.summary = { ...this.summary, ...fresh };
      this.renderSummary();
      this.onChange({ state: fresh.state, status: fresh.status });
    } catch {
      // The next frame or reload will bring it; the composer keeps its state.
    }
  }

  async end(returnTo) {
    const who = this.summary.candidate ? this.summary.candidate.name : "the candidate";
    const ok = await confirmAction({
      title: "End this conversation?",
      text: `${who} will no longer be able to reply. You can reopen it later by sending a message.`,
      confirm: "End conversation",
      returnTo,
    });
    if (!ok || this.destroyed) return;
    this.clearError();
    try {
      await api.post(`/api/conversations/${encodeURIComponent(this.id)}/end`);
      this.summary.state = "ended";
      this.renderSummary();
      this.refreshSummary();
      this.onChange({ state: "ended" });
    } catch (err) {
      this.flash(err.message);
    }
  }

  /** Archive and unarchive act at once; the toast offers to undo. */
  async toggleArchive({ undoing = false } = {}) {
    const archiving = !this.archived;
    const id = this.id;
    this.clearError();
    try {
      await api.post(`/api/conversations/${encodeURIComponent(id)}/${archiving ? "archive" : "unarchive"}`);
    } catch (err) {
      if (undoing) toast(`Couldn't undo: ${err.message}`);
      else this.flash(err.message);
      return;
    }
    this.archived = archiving;
    if (!this.destroyed) this.renderSummary();
    if (this.onArchive) this.onArchive(id, archiving);
    if (!undoing) {
      toast(archiving ? "Conversation archived." : "Conversation moved back to the inbox.", {
        action: { label: "Undo", run: () => this.toggleArchive({ undoing: true }) },
      });
    }
  }

  /** Staff: the newest candidate message counts as unread again, and the
   * conversation closes, so that opening it is what reads it. */
  async markUnread() {
    this.clearError();
    try {
      await api.post(`/api/conversations/${encodeURIComponent(this.id)}/unread`);
    } catch (err) {
      this.flash(err.message);
      return;
    }
    if (this.onMarkedUnread) this.onMarkedUnread(this.id);
  }

  /** Says what went wrong, apart from the conversation's own notice (which
   * every summary refresh rewrites), until the next action succeeds. */
  flash(text) {
    const error = this.root.querySelector('[data-field="error"]');
    error.textContent = text;
    error.hidden = false;
  }

  clearError() {
    this.root.querySelector('[data-field="error"]').hidden = true;
  }

  // -- history -----------------------------------------------------------------

  async loadLatest() {
    this.top.classList.add("loading");
    try {
      const { messages } = await api.get(`/api/conversations/${encodeURIComponent(this.id)}/messages${query({ limit: PAGE })}`);
      if (this.destroyed) return;
      this.reachedStart = messages.length < PAGE;
      for (const m of messages) this.add(m, { quiet: true });
      if (!messages.length) this.reachedStart = true;
    } catch (err) {
      this.flash(`Couldn't load messages: ${err.message}`);
    }
    this.top.classList.remove("loading");
    this.top.classList.toggle("done", this.reachedStart);
    this.layout();
    this.scrollToBottom();
  }

  async loadOlder() {
    if (this.loadingOlder || this.reachedStart || this.minSeq === null) return;
    this.loadingOlder = true;
    this.top.classList.add("loading");
    this.list.setAttribute("aria-busy", "true");
    try {
      const { messages } = await api.get(
        `/api/conversations/${encodeURIComponent(this.id)}/messages${query({ before: this.minSeq, limit: PAGE })}`,
      );
      if (this.destroyed) return;
      const before = this.timeline.scrollHeight;
      for (const m of messages) this.add(m, { quiet: true });
      this.reachedStart = messages.length < PAGE;
      this.layout();
      this.timeline.scrollTop += this.timeline.scrollHeight - before;
    } catch {
      // Scrolling up again retries.
    } finally {
      this.loadingOlder = false;
      this.top.classList.remove("loading");
      this.top.classList.toggle("done", this.reachedStart);
      this.list.removeAttribute("aria-busy");
    }
  }

  observeTop() {
    this.topObserver = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) this.loadOlder();
      },
      { root: this.timeline, rootMargin: "200px 0px 0px 0px" },
    );
    this.topObserver.observe(this.top);
  }

  // -- rendering messages --------------------------------------------------------

  atBottom() {
    const t = this.timeline;
    return t.scrollHeight - t.scrollTop - t.clientHeight < BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.timeline.scrollTop = this.timeline.scrollHeight;
  }

  /** Show (or update) one MESSAGE; returns nothing, never duplicates a seq. */
  add(message, { quiet = false, el: given = null } = {}) {
    const seq = message.seq;
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
        this.fill(known.el, message);
      }
      return;
    }
    const pinned = quiet || this.atBottom();
    const system = isSystemLine(message);
    let el = given || (system ? systemLine(message) : null);
    if (!el && isMine(message.sender)) el = this.adoptPending(message);
    if (!el) el = clone("message-template");
    if (!system) this.fill(el, message);
    this.byseq.set(seq, { message, el });
    this.place(el, seq);
    if (!isMine(message.sender) && !system) this.hideTyping();
    if (!quiet) {
      this.layout();
      if (pinned || isMine(message.sender)) this.scrollToBottom();
    }
    this.readObserver.observe(el);
    if (!system) this.empty.hidden = true;
  }

  /** A message frame for one of our own pending sends may beat its ack. */
  adoptPending(message) {
    for (const [clientId, p] of this.pending) {
      if (p.body === message.body && p.files.length === message.attachments.length) {
        this.pending.delete(clientId);
        p.el.classList.remove("pending", "failed");
        return p.el;
      }
    }
    return null;
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

  fill(el, message) {
    const mine = isMine(message.sender);
    el.dataset.seq = String(message.seq);
    el.dataset.id = message.id;
    el.dataset.sender = `${message.sender.kind}:${message.sender.id}`;
    el.dataset.at = message.created_at;
    el.classList.toggle("mine", mine);
    el.classList.toggle("ours", isOurs(message.sender));
    el.classList.toggle("deleted", message.deleted);
    // A reply to a notification email says so (MESSAGE `via`).
    const byEmail = message.via === "email";
    el.classList.toggle("via-email", byEmail);
    el.querySelector(".msg-via").hidden = !byEmail;
    el.classList.remove("pending", "failed");
    el.querySelector(".msg-actions").hidden = false;
    el.querySelector(".msg-sender").textContent = mine ? "You" : message.sender.name;
    const at = new Date(message.created_at);
    const time = el.querySelector(".msg-time");
    time.dateTime = message.created_at;
    time.textContent = clock(at);
    time.title = fullTime(at);
    // A message grouped under the one before shows its own time beside it.
    const aside = el.querySelector(".msg-time-aside");
    aside.textContent = clock(at);
    aside.title = fullTime(at);
    const body = el.querySelector(".msg-body");
    body.classList.remove("plain");
    const files = el.querySelector(".msg-files");
    files.replaceChildren();
    if (message.deleted) {
      body.textContent = mine ? "You deleted this message" : "This message was deleted";
    } else {
      // Sanitised on the server with an allowlist (SPEC 2); never the raw body.
      body.innerHTML = message.html;
      for (const a of message.attachments) files.append(this.fileItem(a));
    }
    el.querySelector(".msg-status").replaceChildren();
    this.bindMessageMenu(el, message);
  }

  fileItem(a) {
    if (a.thumbnail_url) return this.imageItem(a);
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.className = "file-link";
    link.href = a.url;
    link.setAttribute("download", a.name);
    link.insertAdjacentHTML("afterbegin", FILE_ICON);
    const name = document.createElement("span");
    name.textContent = a.name;
    const size = document.createElement("span");
    size.className = "file-size";
    size.textContent = fileSize(a.size);
    link.append(name, size);
    li.append(link);
    return li;
  }

  /** An image: its server-made thumbnail, which opens the full image. */
  imageItem(a) {
    const li = document.createElement("li");
    li.className = "image-item";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.setAttribute("aria-label", `Open image ${a.name}`);
    const img = document.createElement("img");
    img.src = a.thumbnail_url;
    img.alt = a.name;
    img.loading = "lazy";
    img.decoding = "async";
    button.append(img);
    button.addEventListener("click", () => openImage(a, button));
    li.append(button);
    return li;
  }

  bindMessageMenu(el, message) {
    const button = el.querySelector('[data-testid="message-menu"]');
    const menu = button.nextElementSibling;
    const forEveryone = menu.querySelector('[data-action="delete-everyone"]');
    forEveryone.hidden = !isMine(message.sender) || message.deleted;
    if (el.dataset.bound) return;
    el.dataset.bound = "1";
    bindMenu(button, menu);
    menu.querySelector('[data-action="delete-me"]').addEventListener("click", () => this.remove(el, "me"));
    forEveryone.addEventListener("click", () => this.remove(el, "everyone", button));
  }

  async remove(el, scope, returnTo) {
    const seq = Number(el.dataset.seq);
    const entry = this.byseq.get(seq);
    if (!entry) return;
    if (scope === "everyone") {
      const ok = await confirmAction({
        title: "Delete for everyone?",
        text: "The message is removed for everyone in this conversation. This can't be undone.",
        confirm: "Delete for everyone",
        returnTo,
      });
      if (!ok || this.destroyed) return;
    }
    this.clearError();
    try {
      await api.del(`/api/messages/${encodeURIComponent(entry.message.id)}?for=${scope}`);
    } catch (err) {
      this.flash(err.message);
      return;
    }
    if (scope === "me") {
      el.remove();
      this.byseq.set(seq, { message: { ...entry.message, hidden: true }, el: null });
    } else {
      entry.message = { ...entry.message, deleted: true, body: "", html: "", attachments: [] };
      this.fill(el, entry.message);
    }
    this.layout();
    this.onChange({ message: this.newestVisible() });
  }

  /** The newest message this viewer still sees (deleted ones as placeholders). */
  newestVisible() {
    let newest = null;
    for (const { message } of this.byseq.values()) {
      if (!message.hidden && !isSystemLine(message) && (!newest || message.seq > newest.seq)) newest = message;
    }
    return newest;
  }

  /** Day separators, sender grouping and the "Seen" receipt, in one pass. */
  layout() {
    for (const sep of this.list.querySelectorAll(".day-sep")) sep.remove();
    let prev = null;
    let lastSeenMine = null;
    const mineSeqd = [];
    for (const el of [...this.list.querySelectorAll(".msg")]) {
      const at = new Date(el.dataset.at || Date.now());
      const day = dayKey(at);
      if (!prev || prev.day !== day) {
        const sep = document.createElement("li");
        sep.className = "day-sep";
        sep.textContent = dayLabel(at);
        el.before(sep);
      }
      const sameRun = prev && prev.day === day && prev.sender === el.dataset.sender && at - prev.at < GROUP_WINDOW_MS;
      el.classList.toggle("cont", Boolean(sameRun));
      prev = { day, sender: el.dataset.sender, at };
      if (el.classList.contains("mine") && el.dataset.seq && !el.classList.contains("pending")) {
        mineSeqd.push(el);
        if (Number(el.dataset.seq) <= this.otherReadSeq) lastSeenMine = el;
      }
    }
    for (const el of this.list.querySelectorAll(".read-receipt")) el.remove();
    if (lastSeenMine) {
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

  // -- sending ---------------------------------------------------------------------

  send(body, files) {
    const clientId = uuid4();
    const el = clone("message-template");
    el.classList.add("mine", "ours", "pending");
    el.dataset.sender = `${me.kind}:${me.me}`;
    el.dataset.at = new Date().toISOString();
    el.dataset.clientId = clientId;
    el.querySelector(".msg-sender").textContent = "You";
    el.querySelector(".msg-time").textContent = clock(new Date());
    const text = el.querySelector(".msg-body");
    text.classList.add("plain");
    text.textContent = body;
    for (const f of files) text.append(this.fileItem({ ...f, url: "#" }));
    el.querySelector(".msg-actions").hidden = true;
    el.querySelector(".msg-status").textContent = "Sending…";
    this.list.append(el);
    this.pending.set(clientId, { el, body, files });
    this.layout();
    this.scrollToBottom();
    connection.sendMessage(this, this.id, clientId, body, files.map((f) => f.id));
  }

  onAck(clientId, message) {
    const p = this.pending.get(clientId);
    this.pending.delete(clientId);
    if (this.byseq.has(message.seq)) {
      if (p) p.el.remove();
      return;
    }
    this.add(message, { el: p ? p.el : null });
  }

  onSendError(clientId, code, text) {
    const p = this.pending.get(clientId);
    if (!p) return;
    p.el.classList.add("failed");
    p.el.classList.remove("pending");
    const status = p.el.querySelector(".msg-status");
    status.textContent = `Not sent: ${text} `;
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "link-button";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => {
      p.el.classList.replace("failed", "pending");
      status.textContent = "Sending…";
      connection.sendMessage(this, this.id, clientId, p.body, p.files.map((f) => f.id));
    });
    const discard = document.createElement("button");
    discard.type = "button";
    discard.className = "link-button";
    discard.textContent = "Discard";
    discard.addEventListener("click", () => {
      this.pending.delete(clientId);
      p.el.remove();
      this.layout();
    });
    status.append(retry, discard);
    if (code === "not_allowed" || code === "conversation_ended" || code === "forbidden") this.refreshSummary();
  }

  sendTyping() {
    const interval = Number(me.typingInterval) || 2000;
    const now = Date.now();
    if (now - this.lastTypingSent < interval) return;
    if (connection.send({ type: "typing", conversation: this.id })) this.lastTypingSent = now;
  }

  showTyping(who) {
    const interval = Number(me.typingInterval) || 2000;
    this.typing.querySelector('[data-field="typing-text"]').textContent = `${who.name} is typing…`;
    this.typing.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.hideTyping(), interval * TYPING_GRACE);
  }

  hideTyping() {
    clearTimeout(this.typingTimer);
    this.typing.hidden = true;
  }

  // -- reading ---------------------------------------------------------------------

  noteRead(kind, id, seq) {
    if (kind === me.kind && id === me.me) this.myReadSeq = Math.max(this.myReadSeq, seq);
    else if (kind !== me.kind) this.otherReadSeq = Math.max(this.otherReadSeq, seq);
  }

  observeReads() {
    this.readObserver = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          if (e.isIntersecting && e.target.dataset.seq) {
            this.visibleMax = Math.max(this.visibleMax, Number(e.target.dataset.seq));
          }
        }
        this.scheduleRead();
      },
      { root: this.timeline, threshold: 0.5 },
    );
  }

  scheduleRead() {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.markRead(), READ_DEBOUNCE_MS);
  }

  /** Read up to the last message seen, only while the tab is visible and focused. */
  markRead() {
    if (this.destroyed || document.visibilityState !== "visible" || !document.hasFocus()) return;
    const lastShown = [...this.byseq.values()].filter((v) => v.el).map((v) => v.message.seq);
    const newestShown = lastShown.length ? Math.max(...lastShown) : 0;
    // Seqs hidden for this viewer after the newest shown message count as read.
    const target = this.visibleMax >= newestShown ? this.maxSeq : this.visibleMax;
    if (target <= this.myReadSeq) return;
    this.myReadSeq = target;
    if (!connection.send({ type: "read", conversation: this.id, seq: target })) {
      api.post(`/api/conversations/${encodeURIComponent(this.id)}/read`, { seq: target }).catch(() => {
        this.myReadSeq = 0;
      });
    }
  }

  // -- socket frames (called by the connection) ----------------------------------

  after() {
    return this.maxSeq;
  }

  onFrame(frame) {
    switch (frame.type) {
      case "subscribed":
        // Anything may have changed before this (re)subscription went live,
        // including why sending is disabled while can_send stays false.
        this.summary.state = frame.state;
        this.summary.can_send = frame.can_send;
        this.refreshSummary();
        break;
      case "message":
        this.add(frame.message);
        this.scheduleRead();
        break;
      case "deleted": {
        const entry = this.byseq.get(frame.seq);
        if (entry && !entry.message.deleted) {
          entry.message = { ...entry.message, deleted: true, body: "", html: "", attachments: [] };
          if (entry.el) {
            this.fill(entry.el, entry.message);
            this.layout();
          }
          this.onChange({ message: this.newestVisible() });
        }
        break;
      }
      case "read":
        this.noteRead(frame.reader.kind, frame.reader.id, frame.seq);
        this.layout();
        break;
      case "typing":
        if (!isMine(frame.who)) this.showTyping(frame.who);
        break;
      case "conversation":
        this.summary.state = frame.state;
        this.summary.can_send = frame.can_send;
        this.refreshSummary();
        this.onChange({ state: frame.state });
        break;
      case "error":
        this.flash(frame.message);
        break;
      default:
        break;
    }
  }
}

/** The full image in a modal dialog, with a download link; Escape or the
 * close button goes back. The image is the attachment's own download URL. */
function openImage(a, returnTo) {
  const dialog = document.createElement("dialog");
  dialog.className = "dialog image-dialog";
  dialog.setAttribute("aria-label", a.name);
  const img = document.createElement("img");
  img.src = a.url;
  img.alt = a.name;
  const bar = document.createElement("div");
  bar.className = "dialog-actions";
  const download = document.createElement("a");
  download.className = "button";
  download.href = a.url;
  download.setAttribute("download", a.name);
  download.textContent = `Download (${fileSize(a.size)})`;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "button primary";
  close.textContent = "Close";
  close.addEventListener("click", () => dialog.close());
  bar.append(download, close);
  dialog.append(img, bar);
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    returnTo.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  close.focus();
}
