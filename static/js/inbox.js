// The staff inbox (SPEC 6): filters, search, sort and keyset paging over
// GET /api/conversations, kept live by the socket's inbox feed, beside the
// open conversation (or instead of it on a narrow screen). Each row is
// drawn by inbox-row.js; the open conversation is inbox-pane.js's.

import { api, query } from "./api.js";
import { liveRegion } from "./live-region.js";
import { connection } from "./socket.js";
import { InboxPane } from "./inbox-pane.js";
import { arrowKeys, newRow, paintRow } from "./inbox-row.js";
import { draftPreview, watchDrafts } from "./drafts.js";
import { onOtherTab } from "./tabs.js";

const SEARCH_DEBOUNCE_MS = 250;
// Inbox frames for conversations not on screen are coalesced into one reload.
const REFRESH_DEBOUNCE_MS = 400;
// A page that failed while the socket stayed up (the server answered 503,
// say) is asked for again after this, doubling up to RETRY_MAX_MS.
const RETRY_FIRST_MS = 2000;
const RETRY_MAX_MS = 30000;
const FILTERS = ["all", "unread", "messaged", "archived"];
const SORTS = ["newest", "unread", "oldest"];
const EMPTY = {
  all: ["No conversations yet", "Conversations appear here when the ATS adds applications."],
  unread: ["You're all caught up", "No unread messages."],
  messaged: ["No messages yet", "Conversations with messages appear here."],
  archived: ["Nothing archived", "Archive a conversation from its menu to tidy your inbox."],
};

export class Inbox {
  constructor() {
    this.list = document.getElementById("inbox-list");
    this.sentinel = document.getElementById("inbox-sentinel");
    this.empty = document.getElementById("inbox-empty");
    // Says what a search, filter or sort chosen here found (a screen
    // reader hears nothing of a list replaced under it).
    this.status = liveRegion(document.getElementById("inbox-status"), { keep: 1 });
    // Whether the next first page to come in is to be said: a reload's
    // chosen here, or a later one's (a live change), which answers the
    // same choice.
    this.announcing = false;
    this.search = document.getElementById("search");
    this.sort = document.getElementById("sort");
    const params = new URLSearchParams(location.search);
    this.filter = FILTERS.includes(params.get("filter")) ? params.get("filter") : "all";
    this.sortBy = SORTS.includes(params.get("sort")) ? params.get("sort") : "newest";
    this.q = params.get("q") || "";
    this.items = new Map();
    this.next = null;
    this.loading = false;
    // The last page asked for failed: `retry` asks again.
    this.failed = false;
    this.retryDelay = RETRY_FIRST_MS;
    this.retryTimer = null;
    this.generation = 0;
    this.conversation = new InboxPane({
      query: () => this.stateQuery(),
      onSwitch: () => {
        for (const item of this.items.values()) this.paint(item);
      },
      onArchive: (id, archived) => this.onArchived(id, archived),
      onChange: (id, change) => this.onViewChange(id, change),
      onMarkedUnread: () => this.markedUnread(),
      focusList: (id) => this.focusRow(id),
    });
    // A row shows its conversation's draft as soon as it changes, also
    // when it was written in another tab.
    watchDrafts((id) => {
      const item = this.items.get(id);
      if (item) this.paint(item);
    });
    // What the person did in another tab (tabs.js): an archive moves the
    // row here too, and a message deleted for them may be what its row
    // shows, or one of its unread.
    onOtherTab("archived", ({ conversation, archived }) => this.onArchived(conversation, archived));
    onOtherTab("hidden", ({ conversation }) => {
      const item = this.items.get(conversation);
      if (item) this.refreshRow(item);
    });
  }

  start() {
    // Typed before this script ran (it is loaded after the page shows):
    // what the person typed is the query, and stays as typed.
    const typed = this.search.value.trim();
    if (typed) this.q = typed;
    else this.search.value = this.q;
    this.sort.value = this.sortBy;
    this.renderFilters();
    for (const button of document.querySelectorAll("[data-filter]")) {
      button.addEventListener("click", () => {
        this.filter = button.dataset.filter;
        this.renderFilters();
        this.reload({ announce: true });
      });
    }
    let timer = null;
    this.search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.q = this.search.value.trim();
        this.reload({ announce: true });
      }, SEARCH_DEBOUNCE_MS);
    });
    this.sort.addEventListener("change", () => {
      this.sortBy = this.sort.value;
      this.reload({ announce: true });
    });
    this.list.addEventListener("keydown", (event) => arrowKeys(this.list, event));
    this.list.addEventListener("scroll", () => {
      const l = this.list;
      if (l.scrollHeight - l.scrollTop - l.clientHeight < 300) this.loadMore();
    });
    connection.followInbox((frame) => this.onFrame(frame));
    // A page that could not be loaded (the server was out of reach) is
    // asked for again once the socket is back, not left to another scroll.
    connection.on("state", (state) => {
      if (state === "open" && this.failed) this.retry();
    });
    this.conversation.start();
    this.reload();
  }

  renderFilters() {
    for (const button of document.querySelectorAll("[data-filter]")) {
      button.setAttribute("aria-pressed", String(button.dataset.filter === this.filter));
    }
  }

  stateQuery() {
    return query({
      filter: this.filter === "all" ? "" : this.filter,
      sort: this.sortBy === "newest" ? "" : this.sortBy,
      q: this.q,
    });
  }

  syncUrl() {
    const open = this.conversation.id;
    const path = open ? `/c/${encodeURIComponent(open)}` : "/inbox";
    history.replaceState(history.state, "", path + this.stateQuery());
  }

  // -- loading -----------------------------------------------------------------

  /** The list again from its first page; `announce`: say what it found. */
  async reload({ announce = false } = {}) {
    this.syncUrl();
    this.generation += 1;
    if (announce) {
      this.announcing = true;
      this.status.replace("");
    }
    this.next = null;
    await this.fetchPage(null, this.generation);
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    await this.fetchPage(this.next, this.generation);
  }

  /** Ask again for what failed: the next page, or the whole list. */
  retry() {
    clearTimeout(this.retryTimer);
    this.failed = false;
    if (this.next) this.loadMore();
    else this.reload();
  }

  async fetchPage(cursor, generation) {
    this.loading = true;
    this.sentinel.classList.add("loading");
    this.list.setAttribute("aria-busy", "true");
    try {
      const page = await api.get(`/api/conversations${query({ filter: this.filter, q: this.q, sort: this.sortBy, cursor })}`);
      if (generation !== this.generation) return;
      if (!cursor) {
        this.items.clear();
        this.list.replaceChildren();
      }
      for (const conversation of page.conversations) {
        if (this.items.has(conversation.id)) continue;
        this.list.append(this.row(conversation));
      }
      this.next = page.next;
      this.failed = false;
      this.retryDelay = RETRY_FIRST_MS;
      this.renderEmpty();
      if (!cursor && this.announcing) {
        this.announcing = false;
        this.status.replace(this.found());
      }
    } catch (err) {
      if (generation === this.generation) {
        // A failed page keeps `next` to ask for it again. A failed reload
        // drops the rows: they answer the previous filter or search, not
        // the one the page now shows.
        this.failed = true;
        if (!cursor) {
          this.items.clear();
          this.list.replaceChildren();
        }
        this.renderEmpty(err.message);
        if (!cursor && this.announcing) {
          this.announcing = false;
          this.status.replace(`Couldn't load conversations: ${err.message}`);
        }
        // With the socket down, its coming back asks again (start());
        // with it up, nothing else would.
        if (connection.state === "open") {
          clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => this.retry(), this.retryDelay);
          this.retryDelay = Math.min(RETRY_MAX_MS, this.retryDelay * 2);
        }
      }
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        this.sentinel.classList.remove("loading");
        this.list.removeAttribute("aria-busy");
      }
    }
    const l = this.list;
    if (this.next && !this.failed && l.scrollHeight <= l.clientHeight + 300) this.loadMore();
  }

  /** What the list now holds, in words ("3 conversations match “ana”."). */
  found() {
    const n = this.items.size;
    const one = n === 1 && !this.next;
    const count = `${n}${this.next ? " or more" : ""} ${one ? "conversation" : "conversations"}`;
    if (this.q) return n ? `${count} ${one ? "matches" : "match"} “${this.q}”.` : `Nothing matches “${this.q}”.`;
    return n ? `${count}.` : `${EMPTY[this.filter][0]}.`;
  }

  renderEmpty(error) {
    const none = this.items.size === 0;
    this.empty.hidden = !none;
    if (!none) return;
    const [title, text] = error ? ["Couldn't load conversations", error]
      : this.q ? ["No matches", `Nothing matches “${this.q}”.`] : EMPTY[this.filter];
    this.empty.querySelector('[data-field="empty-title"]').textContent = title;
    this.empty.querySelector('[data-field="empty-text"]').textContent = text;
  }

  // -- rows ----------------------------------------------------------------------

  row(conversation) {
    const { li, link } = newRow(conversation, ({ byKeyboard }) =>
      this.conversation.open(conversation.id, { focus: byKeyboard }),
    );
    const item = { data: conversation, li, link };
    this.items.set(conversation.id, item);
    this.paint(item);
    return li;
  }

  paint(item) {
    const { id } = item.data;
    const href = `/c/${encodeURIComponent(id)}${this.stateQuery()}`;
    const current = this.conversation.id === id;
    paintRow(item.link, item.data, { q: this.q, href, current, draft: current ? null : draftPreview(id) });
  }

  // -- live updates ----------------------------------------------------------------

  /** An `inbox` frame: the conversation's unread count and the viewer's
   * newest visible message (a message deleted for everyone arrives as a
   * placeholder, so its text leaves the row), plus its state and status. */
  onFrame(frame) {
    const item = this.items.get(frame.conversation);
    if (!item) {
      if (frame.last_message && !this.q && this.filter !== "archived") this.scheduleRefresh();
      return;
    }
    const c = item.data;
    const previous = c.last_message ? c.last_message.seq : 0;
    const last = frame.last_message;
    const fresh = Boolean(last) && last.seq > previous;
    if (typeof frame.unread === "number") c.unread = frame.unread;
    if (typeof frame.state === "string") c.state = frame.state;
    if (typeof frame.status === "string") c.status = frame.status;
    // The host may give the application to another candidate.
    if (frame.candidate) c.candidate = frame.candidate;
    if (last && last.seq >= previous) c.last_message = last;
    else if ("state" in frame && last === null) c.last_message = null;
    // A frame without the summary fields (an older server) says only that
    // something changed: read the row again.
    if (!("state" in frame) && !fresh) this.refreshRow(item);
    // A candidate's reply takes a conversation out of the archive.
    if (fresh && this.filter === "archived" && last.sender.kind === "candidate") {
      this.removeRow(frame.conversation);
      return;
    }
    this.paint(item);
    if (fresh) this.move(item);
  }

  /** What the open conversation saw change (a delete, an end, a status). */
  onViewChange(id, change) {
    const item = this.items.get(id);
    if (!item) return;
    const c = item.data;
    if (change.state) c.state = change.state;
    if (change.status) c.status = change.status;
    if (change.candidate) c.candidate = change.candidate;
    if ("message" in change) {
      const newest = change.message;
      // Only a change to what the row shows: a newer message moves it via the feed.
      if (!newest || !c.last_message || newest.seq <= c.last_message.seq) c.last_message = newest;
    }
    this.paint(item);
  }

  /** Re-read a conversation whose state changed (ended, status, deletion). */
  async refreshRow(item) {
    // Only the answer to the latest request counts (answers can overtake).
    item.round = (item.round || 0) + 1;
    const round = item.round;
    try {
      const fresh = await api.get(`/api/conversations/${encodeURIComponent(item.data.id)}`);
      if (round !== item.round) return;
      item.data = { ...item.data, status: fresh.status, state: fresh.state, unread: fresh.unread };
      if (fresh.candidate) item.data.candidate = fresh.candidate;
      if ("last_message" in fresh) item.data.last_message = fresh.last_message;
      this.paint(item);
    } catch {
      // Gone from view (another tenant's id never reaches here); leave the row.
    }
  }

  move(item) {
    const { li } = item;
    if (this.sortBy === "oldest") {
      if (this.next) {
        li.remove();
        this.items.delete(item.data.id);
      } else {
        this.list.append(li);
      }
    } else if (this.sortBy === "unread" && item.data.unread === 0) {
      const firstRead = [...this.list.children].find((row) => row !== li && !row.querySelector(".is-unread"));
      if (firstRead) firstRead.before(li);
      else this.list.append(li);
    } else {
      this.list.prepend(li);
    }
    li.classList.remove("moved");
    void li.offsetWidth;
    li.classList.add("moved");
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refreshTop(), REFRESH_DEBOUNCE_MS);
  }

  /** A conversation not on screen changed: merge the first page in place. */
  async refreshTop() {
    const generation = this.generation;
    try {
      const page = await api.get(`/api/conversations${query({ filter: this.filter, q: this.q, sort: this.sortBy })}`);
      if (generation !== this.generation) return;
      let anchor = null;
      for (const conversation of page.conversations) {
        let item = this.items.get(conversation.id);
        if (item) {
          item.data = conversation;
          this.paint(item);
        } else {
          this.row(conversation);
          item = this.items.get(conversation.id);
        }
        if (anchor) anchor.after(item.li);
        else this.list.prepend(item.li);
        anchor = item.li;
      }
      this.renderEmpty();
    } catch {
      // The next frame tries again.
    }
  }

  // -- what the open conversation did to the list ------------------------------------

  /** Archived (or unarchived, or undone): the row leaves the list it no
   * longer belongs to, or comes back to it. */
  onArchived(id, archived) {
    const belongs = (this.filter === "archived") === archived;
    if (!belongs) this.removeRow(id);
    else if (!this.items.has(id)) this.reload();
  }

  /** Marked as unread: back to the list, where the inbox feed brings the
   * row's count from the server (not guessed here: when the candidate has
   * written nothing the person can see, nothing is unread), and focus
   * goes to the row (`focusList`). */
  markedUnread() {
    this.conversation.back();
  }

  /** Focus on conversation `id`'s row, or on the list when it has none
   * (another filter, archived). */
  focusRow(id) {
    const item = id ? this.items.get(id) : null;
    if (item) item.link.focus();
    else this.list.focus();
  }

  removeRow(id) {
    const item = this.items.get(id);
    if (!item) return;
    item.li.remove();
    this.items.delete(id);
    this.renderEmpty();
  }
}
