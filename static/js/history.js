// A conversation's history (SPEC 5a `GET …/messages`): the latest page on
// opening, older pages as the top of the timeline scrolls into view, kept
// in place so the reader's eye does not jump.

import { api, query } from "./api.js";

const PAGE = 50;

export class History {
  /**
   * @param {string} conversation its id
   * @param {import("./message-list.js").MessageList} messages where pages go
   * @param {Element} top the marker above the oldest message (spinner, "start")
   */
  constructor(conversation, messages, top) {
    this.url = `/api/conversations/${encodeURIComponent(conversation)}/messages`;
    this.messages = messages;
    this.top = top;
    this.reachedStart = false;
    this.loading = false;
    this.stopped = false;
    // An older page failed: `retry` asks again.
    this.failed = false;
  }

  /** The latest page; throws what the API said, after marking the top. */
  async loadLatest() {
    this.top.classList.add("loading");
    try {
      const { messages } = await api.get(`${this.url}${query({ limit: PAGE })}`);
      if (this.stopped) return;
      this.reachedStart = messages.length < PAGE;
      for (const m of messages) this.messages.add(m, { quiet: true });
      // The latest page: everything before it is older pages.
      this.messages.caughtUp(Math.max(0, ...messages.map((m) => m.seq)));
      if (!messages.length) this.reachedStart = true;
    } finally {
      this.top.classList.remove("loading");
      this.top.classList.toggle("done", this.reachedStart);
    }
  }

  async loadOlder() {
    const list = this.messages;
    if (this.loading || this.reachedStart || list.minSeq === null) return;
    this.loading = true;
    this.top.classList.add("loading");
    list.list.setAttribute("aria-busy", "true");
    try {
      const { messages } = await api.get(`${this.url}${query({ before: list.minSeq, limit: PAGE })}`);
      if (this.stopped) return;
      const timeline = list.timeline;
      const before = timeline.scrollHeight;
      for (const m of messages) list.add(m, { quiet: true });
      this.reachedStart = messages.length < PAGE;
      list.layout();
      timeline.scrollTop += timeline.scrollHeight - before;
      this.failed = false;
    } catch {
      // Asked again when the socket is back (`retry`), or on scrolling up
      // again: the top, still in view, would not tell the observer twice.
      this.failed = true;
    } finally {
      this.loading = false;
      this.top.classList.remove("loading");
      this.top.classList.toggle("done", this.reachedStart);
      list.list.removeAttribute("aria-busy");
    }
  }

  /** After a failed page, once the server answers again. */
  retry() {
    if (!this.failed || this.stopped) return;
    this.failed = false;
    this.loadOlder();
  }

  /** Load older pages whenever the top comes near the view. */
  follow() {
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) this.loadOlder();
      },
      { root: this.messages.timeline, rootMargin: "200px 0px 0px 0px" },
    );
    this.observer.observe(this.top);
  }

  stop() {
    this.stopped = true;
    this.observer?.disconnect();
  }
}
