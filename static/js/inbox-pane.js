// The conversation beside the staff inbox's list (or instead of it on a
// narrow screen): which one is open, its view (conversation.js, made afresh
// for each conversation opened), and the history entry, page title and
// layout that go with opening and closing it, Back and Forward included.
// inbox.js keeps the list; it hears through hooks what the open
// conversation changes, and when another opens (its rows mark the open one).

import { api } from "./api.js";
import { ConversationView } from "./conversation.js";
import { SIGNED_OUT_TEXT } from "./socket.js";

export class InboxPane {
  /** `hooks`: `query()`, the list's query string, kept in the URL;
   * `onSwitch()`, after a
   * conversation opened or closed; and for the open view
   * `onArchive(id, archived)`, `onChange(id, change)`, `onMarkedUnread(id)`;
   * `focusList(id)`, to put focus on conversation `id`'s row (or the list)
   * when closing the open one left it nowhere. */
  constructor(hooks) {
    this.hooks = hooks;
    this.split = document.getElementById("split");
    this.pane = document.getElementById("conversation-pane");
    this.paneEmpty = document.getElementById("pane-empty");
    this.paneError = document.getElementById("pane-error");
    this.view = null;
    // Which open() is the latest: an earlier one answering later is ignored.
    this.opening = 0;
    this.paneError.querySelector('[data-action="retry"]').addEventListener("click", () => this.route());
    this.paneError.querySelector('[data-action="back"]').addEventListener("click", (event) => {
      event.preventDefault();
      this.back();
    });
  }

  /** The open conversation's id, or null. */
  get id() {
    return this.view ? this.view.id : null;
  }

  /** Follow Back and Forward, and show the conversation the page came with. */
  start() {
    window.addEventListener("popstate", () => this.route());
    const initial = this.pane.dataset.summary;
    // Read once: from here the address says which conversation is open
    // (bell.js asks), also after it is closed.
    delete this.pane.dataset.summary;
    if (initial) this.show(JSON.parse(initial));
  }

  /** `focus`: move focus into the conversation once it is shown (it was
   * opened from the keyboard). */
  async open(id, { push = true, focus = false } = {}) {
    if (this.view && this.view.id === id) {
      // Enter on the open conversation's row: focus follows, as for any row.
      if (focus) this.view.takeFocus();
      return;
    }
    if (push) history.pushState({ conversation: id }, "", `/c/${encodeURIComponent(id)}${this.hooks.query()}`);
    const round = ++this.opening;
    let summary;
    try {
      summary = await api.get(`/api/conversations/${encodeURIComponent(id)}`);
    } catch (err) {
      if (round === this.opening) this.failed(err);
      return;
    }
    if (round === this.opening) this.show(summary, { focus });
  }

  /** The conversation in the address could not be opened: say why, with
   * Try again (unless it does not exist for this person, or the session
   * has ended: trying again cannot help) and Back. */
  failed(err) {
    // close() below counts as a newer round: nothing else is pending.
    this.close();
    this.paneEmpty.hidden = true;
    this.paneError.hidden = false;
    this.split.classList.add("has-conversation");
    const missing = err.status === 404;
    const signedOut = err.status === 401;
    let reason = "The server didn't answer. Check your connection and try again.";
    if (missing) reason = "It doesn't exist, or it isn't shared with you.";
    else if (signedOut) reason = SIGNED_OUT_TEXT;
    this.paneError.querySelector('[data-field="reason"]').textContent = reason;
    this.paneError.querySelector('[data-action="retry"]').hidden = missing || signedOut;
  }

  show(summary, { focus = false } = {}) {
    if (this.view) this.view.destroy();
    this.paneEmpty.hidden = true;
    this.paneError.hidden = true;
    this.split.classList.add("has-conversation");
    const hooks = this.hooks;
    this.view = new ConversationView(this.pane, summary, {
      onArchive: (id, archived) => hooks.onArchive(id, archived),
      onBack: () => this.back(),
      onChange: (change) => hooks.onChange(summary.id, change),
      onMarkedUnread: (id) => hooks.onMarkedUnread(id),
      focus,
    });
    this.view.mount();
    document.title = `${summary.candidate.name} · Inbox · chatserver`;
    hooks.onSwitch();
  }

  close() {
    this.opening += 1;
    const closed = this.view?.id;
    if (this.view) this.view.destroy();
    this.view = null;
    this.paneEmpty.hidden = false;
    this.paneError.hidden = true;
    this.split.classList.remove("has-conversation");
    document.title = "Inbox · chatserver";
    this.hooks.onSwitch();
    // The bell kept quiet about it while it was on screen (bell.js).
    if (closed) document.dispatchEvent(new CustomEvent("conversation-closed", { detail: { id: closed } }));
  }

  back() {
    history.pushState({}, "", `/inbox${this.hooks.query()}`);
    this.closeToList();
  }

  /** Close the open conversation; focus that was in it (now gone) goes to
   * its row in the list, or the list. */
  closeToList() {
    const closed = this.id;
    this.close();
    const at = document.activeElement;
    if (!at || at === document.body) this.hooks.focusList(closed);
  }

  route() {
    const match = location.pathname.match(/^\/c\/([^/]+)$/);
    if (!match) {
      this.closeToList();
      return;
    }
    // Back or Forward to another conversation: focus that was in the one
    // closed follows into it.
    const focus = Boolean(this.view?.root?.contains(document.activeElement));
    this.open(decodeURIComponent(match[1]), { push: false, focus });
  }
}
