// One conversation's page (SPEC 5 and 6): its header, menu and summary,
// the socket's frames, sending and deleting, wired to the parts that each
// do one job: the message list (message-list.js) shows the messages, the
// read tracker (read-tracker.js) reads them, history.js pages them in,
// typing.js says who types, and pending-sends.js (the socket's
// `connection.sends`) holds the pending sends.

import { announcer } from "./announcer.js";
import { api } from "./api.js";
import { connection, SIGNED_OUT_TEXT } from "./socket.js";
import { Composer } from "./composer.js";
import { confirmAction, toast } from "./dialog.js";
import { History } from "./history.js";
import { MessageList } from "./message-list.js";
import { isMine } from "./message-view.js";
import { isSystemLine } from "./system-line.js";
import { ReadTracker } from "./read-tracker.js";
import { onOtherTab, tellOtherTabs } from "./tabs.js";
import { Typing } from "./typing.js";
import { bindMenu, clone, hue, initials, statusLabel } from "./ui.js";

const me = document.body.dataset;

// What a view says once its conversation is no longer the viewer's (the
// host gave the application to another candidate; the socket's resubscribe
// is refused with `not_found`).
export const GONE_TEXT = "This conversation is no longer available to you.";

// The views on screen: a session that ends (signed out elsewhere, the
// person removed by the host) turns their composers off, with the reason.
const mounted = new Set();
connection.on("state", (state) => {
  if (state === "signed-out") for (const view of mounted) view.renderSummary();
  // Back after an outage: an older page that failed meanwhile is asked again.
  if (state === "open") for (const view of mounted) view.history?.retry();
});
// What the person did in another tab of this browser (tabs.js): a message
// deleted for them leaves this tab's view too, and the menu follows an
// archive.
onOtherTab("hidden", ({ conversation, seq }) => {
  for (const view of mounted) if (view.id === conversation) view.messages.hide(seq);
});
onOtherTab("archived", ({ conversation, archived }) => {
  for (const view of mounted) {
    if (view.id !== conversation) continue;
    view.archived = archived;
    view.renderSummary();
  }
});

/** Whether focus is nowhere, or still on `menuButton` or in its menu:
 * where an action chosen from that menu left it. */
function focusLeftNowhere(menuButton) {
  const at = document.activeElement;
  if (!at || at === document.body) return true;
  return Boolean(menuButton) && (at === menuButton || menuButton.nextElementSibling.contains(at));
}

export class ConversationView {
  constructor(pane, summary, { onArchive, onBack, onChange, onMarkedUnread, focus = false } = {}) {
    this.pane = pane;
    this.summary = summary;
    this.id = summary.id;
    this.onArchive = onArchive;
    // Whether this staff member archived it: the server says, whichever
    // list (or link) it was opened from.
    this.archived = Boolean(summary.archived);
    this.onBack = onBack;
    // Told when what the inbox row shows may have changed (a delete, a state).
    this.onChange = onChange || (() => {});
    this.onMarkedUnread = onMarkedUnread;
    // Opened from the keyboard: focus goes to the composer (or, when it is
    // off, the heading), not left on the inbox row.
    this.focusOnOpen = focus;
    // Set once the history is in: focus asked for before waits for it.
    this.ready = false;
    this.destroyed = false;
    // The conversation is no longer this viewer's (`gone`).
    this.unavailable = false;
  }

  // -- lifecycle -------------------------------------------------------------

  async mount() {
    const root = clone("conversation-template");
    this.root = root;
    const timeline = root.querySelector('[data-role="timeline"]');
    this.typing = new Typing(this.id, root.querySelector('[data-testid="typing"]'));
    this.pane.append(root);
    mounted.add(this);
    this.composer = new Composer(root.querySelector('[data-role="composer"]'), {
      onSend: (body, files) => this.send(body, files),
      onTyping: () => this.typing.send(),
      maxAttachments: Number(me.maxAttachments) || 5,
      maxBody: Number(me.maxBody) || 0,
      draft: this.id,
    });
    // A reload or a closed tab keeps what was being written.
    this.keepDraft = () => this.composer.saveDraft();
    window.addEventListener("pagehide", this.keepDraft);
    this.messages = new MessageList(
      {
        conversation: this.id,
        timeline,
        list: root.querySelector('[data-role="messages"]'),
        empty: root.querySelector('[data-role="empty"]'),
        newBelow: root.querySelector('[data-testid="new-below"]'),
      },
      {
        onDelete: (el, scope, button) => this.remove(el, scope, button),
        onShown: (el) => this.reads.observe(el),
        seenUpTo: () => this.reads.otherReadSeq,
        onArrived: announcer(root.querySelector('[data-role="announce"]')),
      },
    );
    this.reads = new ReadTracker(this.id, timeline, () => ({
      newestShown: this.messages.newestShown(),
      maxSeq: this.messages.maxSeq,
    }));
    for (const r of this.summary.reads || []) this.reads.note(r, r.seq);
    this.history = new History(this.id, this.messages, root.querySelector('[data-role="top"]'));
    this.bindHeader();
    this.renderSummary();
    // From here the composer may send: the acks must reach this view even
    // while the history loads (subscribing waits for the history).
    connection.attach(this.id, this);
    await this.loadLatest();
    if (this.destroyed) return;
    connection.join(this.id, this);
    this.history.follow();
    this.ready = true;
    // Focus goes to the composer unless the person already put it somewhere
    // (a menu opened while the history loaded would close as it left).
    const focusFree = !document.activeElement || document.activeElement === document.body;
    // Asked for while the history loaded: taken only if the person has not
    // moved on (still on this conversation's row, in it, or nowhere).
    const stayed = focusFree || this.root.contains(document.activeElement)
      || document.activeElement.closest(`[data-conversation="${CSS.escape(this.id)}"]`) !== null;
    if (this.focusOnOpen && stayed) this.takeFocus();
    else if (this.composer.enabled && focusFree && matchMedia("(hover: hover)").matches) this.composer.textarea.focus();
  }

  /** Focus into the conversation (its row was chosen from the keyboard):
   * the composer, or the heading when nothing can be sent; once the
   * history has loaded, if it is still loading. */
  takeFocus() {
    if (!this.ready) {
      this.focusOnOpen = true;
      return;
    }
    if (this.composer.enabled) {
      this.composer.textarea.focus();
    } else {
      const title = this.root.querySelector('[data-field="title"]');
      title.tabIndex = -1;
      title.focus();
    }
  }

  destroy() {
    this.destroyed = true;
    mounted.delete(this);
    if (this.composer) {
      this.composer.close();
      window.removeEventListener("pagehide", this.keepDraft);
    }
    connection.leave(this.id, this);
    this.reads?.stop();
    this.messages?.stop();
    this.history?.stop();
    this.typing?.hide();
    this.root?.remove();
  }

  // -- header, menu and summary -----------------------------------------------

  bindHeader() {
    const root = this.root;
    const menuButton = root.querySelector('[data-testid="conversation-menu"]');
    bindMenu(menuButton, menuButton.nextElementSibling);
    for (const el of root.querySelectorAll("[data-staff-only]")) el.hidden = me.kind !== "staff";
    root.querySelector('[data-action="end"]').addEventListener("click", () => this.end(menuButton));
    // From the keyboard (a click of no pointer), the toast's Undo takes the
    // focus the closed menu's item had, and gives it back to the menu button.
    root.querySelector('[data-action="archive"]').addEventListener("click", (event) =>
      this.toggleArchive({ byKeyboard: event.detail === 0, returnTo: menuButton }),
    );
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
    notice.hidden = !(this.unavailable || (staff && s.state === "ended" && s.can_send));
    notice.textContent = this.unavailable ? GONE_TEXT : "This conversation has ended. Sending a message reopens it.";
    field("empty-hint").textContent = staff
      ? `Send ${s.candidate.name} the first message.`
      : s.can_send ? "Send the hiring team a message." : "";
    const end = this.root.querySelector('[data-action="end"]');
    end.hidden = !staff || s.state === "ended";
    this.root.querySelector('[data-action="archive"]').textContent = this.archived ? "Unarchive" : "Archive";
    if (this.unavailable) this.composer.setEnabled(false, GONE_TEXT);
    else if (connection.state === "signed-out") this.composer.setEnabled(false, SIGNED_OUT_TEXT);
    else this.composer.setEnabled(Boolean(s.can_send), s.send_disabled_reason);
  }

  async refreshSummary() {
    if (this.unavailable) return;
    // Frames can ask for several refreshes at once; an older answer that
    // arrives last must not undo a newer one.
    this.summaryRound = (this.summaryRound || 0) + 1;
    const round = this.summaryRound;
    try {
      const fresh = await api.get(`/api/conversations/${encodeURIComponent(this.id)}`);
      if (this.destroyed || round !== this.summaryRound) return;
      const before = this.summary.candidate?.id;
      this.summary = { ...this.summary, ...fresh };
      this.renderSummary();
      const change = { state: fresh.state, status: fresh.status };
      // The host gave the application to another candidate: the row names them too.
      if (fresh.candidate && fresh.candidate.id !== before) change.candidate = fresh.candidate;
      this.onChange(change);
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
      this.flash(`Couldn't end the conversation: ${err.message}`);
    }
  }

  /** Archive and unarchive act at once; the toast offers to undo.
   * `byKeyboard`: focus goes to the toast's Undo; `returnTo` has it when
   * the toast goes (Undo, Escape, ×). */
  async toggleArchive({ undoing = false, byKeyboard = false, returnTo = null } = {}) {
    const archiving = !this.archived;
    const id = this.id;
    this.clearError();
    try {
      await api.post(`/api/conversations/${encodeURIComponent(id)}/${archiving ? "archive" : "unarchive"}`);
    } catch (err) {
      if (undoing) toast(`Couldn't undo: ${err.message}`);
      else this.flash(`Couldn't ${archiving ? "archive" : "unarchive"} the conversation: ${err.message}`);
      return;
    }
    this.archived = archiving;
    if (!this.destroyed) this.renderSummary();
    if (this.onArchive) this.onArchive(id, archiving);
    tellOtherTabs("archived", { conversation: id, archived: archiving });
    // The bell counts what the archive holds back no more (bell.js).
    document.dispatchEvent(new CustomEvent("conversation-archive", { detail: { id, archived: archiving } }));
    if (!undoing) {
      toast(archiving ? "Conversation archived." : "Conversation moved back to the inbox.", {
        action: { label: "Undo", run: () => this.toggleArchive({ undoing: true }) },
        // Unless the person moved on while the archive was asked for.
        focus: byKeyboard && !this.destroyed && focusLeftNowhere(returnTo),
        returnTo,
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
      this.flash(`Couldn't mark it as unread: ${err.message}`);
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
    try {
      await this.history.loadLatest();
    } catch (err) {
      this.flash(`Couldn't load messages: ${err.message}`);
    }
    if (this.destroyed) return;
    // Sends still on their way from an earlier visit (pending-sends.js holds them).
    for (const send of connection.sends.of(this.id)) this.messages.showPending(send, this.failedActions(send.clientId));
    this.messages.layout();
    this.messages.scrollToBottom();
  }

  // -- deleting --------------------------------------------------------------------

  async remove(el, scope, returnTo) {
    const seq = Number(el.dataset.seq);
    const message = this.messages.message(seq);
    if (!message) return;
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
      await api.del(`/api/messages/${encodeURIComponent(message.id)}?for=${scope}`);
    } catch (err) {
      this.flash(`Couldn't delete the message: ${err.message}`);
      return;
    }
    if (scope === "me") {
      this.messages.hide(seq);
      tellOtherTabs("hidden", { conversation: this.id, seq });
    } else {
      this.messages.markDeleted(seq);
    }
    this.onChange({ message: this.messages.newestVisible() });
  }

  // -- sending (pending-sends.js holds each send until its ack) -------------------------

  send(body, files) {
    const clientId = connection.sends.add(this.id, body, files);
    this.messages.showPending({ clientId, body, files });
  }

  onAck(clientId, message) {
    this.messages.confirm(clientId, message);
    this.messages.release();
    this.reads.schedule();
  }

  onSendError(clientId, code, text) {
    if (this.unavailable) {
      // Sent again on the reconnect that found the conversation gone: it
      // is refused too, and nothing is left to retry it in.
      connection.sends.discard(clientId);
      this.messages.drop(clientId);
      return;
    }
    this.messages.failed(clientId, text, this.failedActions(clientId));
    this.messages.release();
    if (code === "not_allowed" || code === "conversation_ended" || code === "forbidden") this.refreshSummary();
  }

  /** What a refused send's Retry, Edit and Discard do. */
  failedActions(clientId) {
    return {
      onRetry: () => {
        this.messages.sending(clientId);
        connection.sends.retry(clientId);
      },
      onEdit: () => {
        const body = connection.sends.discard(clientId);
        this.messages.drop(clientId);
        if (body !== null) this.composer.takeBack(body);
      },
      onDiscard: () => {
        connection.sends.discard(clientId);
        this.messages.drop(clientId);
      },
    };
  }

  /** The conversation is no longer the viewer's: its history goes from
   * the screen, the composer turns off with the reason, nothing is sent
   * or subscribed again. The view stays attached, so that sends already
   * on their way hear their refusal and are dropped (`onSendError`). */
  gone() {
    if (this.unavailable || this.destroyed) return;
    this.unavailable = true;
    connection.forget(this.id);
    for (const send of connection.sends.of(this.id)) {
      if (connection.sends.discard(send.clientId) !== null) this.messages.drop(send.clientId);
    }
    this.reads.stop();
    this.history.stop();
    this.typing.hide();
    this.clearError();
    this.root.classList.add("unavailable");
    this.root.querySelector('[data-role="timeline"]').hidden = true;
    this.root.querySelector('[data-testid="new-below"]').hidden = true;
    this.renderSummary();
  }

  // -- socket frames (called by the connection) ----------------------------------

  after() {
    return this.messages.through;
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
        if (!isMine(frame.message.sender) && !isSystemLine(frame.message)) this.typing.hide(frame.message.sender);
        // The employer's message a waiting candidate may now answer: the
        // `conversation` frame before it says so, but one missed with a
        // lost publish would leave the composer off until a reload.
        if (!this.summary.can_send && me.kind === "candidate" && frame.message.sender.kind === "staff") {
          this.refreshSummary();
        }
        // A candidate's reply brings an archived conversation back (the
        // server's rule, store/archiving.py): the menu offers Archive again.
        if (this.archived && frame.message.sender.kind === "candidate") {
          this.archived = false;
          this.renderSummary();
        }
        this.messages.receive(frame.message);
        this.reads.schedule();
        break;
      case "deleted":
        if (this.messages.markDeleted(frame.seq)) this.onChange({ message: this.messages.newestVisible() });
        break;
      case "read":
        this.reads.note(frame.reader, frame.seq);
        this.messages.layout();
        break;
      case "typing":
        if (!isMine(frame.who)) this.typing.show(frame.who);
        break;
      case "conversation":
        this.summary.state = frame.state;
        this.summary.can_send = frame.can_send;
        this.refreshSummary();
        this.onChange({ state: frame.state });
        break;
      case "error":
        // Only a subscribe's error names the conversation (sends name
        // their client_id): `not_found` there means it is no longer ours.
        if (frame.code === "not_found") this.gone();
        else this.flash(frame.message);
        break;
      default:
        break;
    }
  }
}
