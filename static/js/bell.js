// Service notifications (SPEC 6): a bell with a count, a list on click,
// live additions from the socket's `notification` frames. One entry per
// conversation (the server groups them too, GET /api/notifications), never
// one about the conversation open and visible in this page, cleared when
// the conversation is opened; each entry can be marked read on its own.

import { api } from "./api.js";
import { connection } from "./socket.js";
import { onOtherTab, tellOtherTabs } from "./tabs.js";
import { bindMenu } from "./ui.js";
import { fullTime, shortTime } from "./time.js";

/** The conversation this page shows, if any (/c/<id>, or the one pane). */
function openConversation() {
  const match = location.pathname.match(/^\/c\/([^/]+)/);
  if (match) return decodeURIComponent(match[1]);
  const pane = document.getElementById("conversation-pane");
  if (pane && pane.dataset.summary) {
    try {
      return JSON.parse(pane.dataset.summary).id || null;
    } catch {
      return null;
    }
  }
  return null;
}

export function initBell() {
  const button = document.getElementById("bell");
  if (!button) return;
  const panel = document.getElementById("notif-panel");
  const count = document.getElementById("bell-count");
  const list = document.getElementById("notif-list");
  const empty = document.getElementById("notif-empty");
  const more = document.getElementById("notif-more");
  const readAll = document.getElementById("notif-read-all");
  // conversation id -> entry ({conversation, text, count, created_at, read}), newest first.
  let entries = new Map();
  // Unread conversations the listing left out (it holds the newest 50):
  // counted in the badge, and said below the list.
  let unlisted = 0;
  // Counts what this page changed in the entries: a listing asked for
  // before a change may answer after it, and must not undo it.
  let changes = 0;
  // Listings asked again at most this often when changes keep coming.
  const LOAD_ATTEMPTS = 3;
  // Feed frames that call for a listing are gathered this long into one.
  const FOLLOW_DELAY_MS = 300;

  function listedUnread() {
    let n = 0;
    for (const entry of entries.values()) if (!entry.read) n += 1;
    return n;
  }

  function unread() {
    return listedUnread() + unlisted;
  }

  function renderMore() {
    more.hidden = unlisted === 0;
    if (!unlisted) return;
    const those = unlisted === 1 ? "1 more unread conversation is" : `${unlisted} more unread conversations are`;
    more.textContent = `${those} not listed here. `;
    if (document.body.dataset.kind === "staff") {
      const link = document.createElement("a");
      link.href = "/inbox?filter=unread";
      link.textContent = "See them in Unread";
      more.append(link);
    }
  }

  function renderCount() {
    const n = unread();
    count.hidden = n === 0;
    count.textContent = n > 9 ? "9+" : String(n);
    button.setAttribute("aria-label", n ? `Notifications, ${n} unread` : "Notifications");
    readAll.hidden = n === 0;
  }

  function item(note) {
    const li = document.createElement("li");
    li.classList.toggle("unread", !note.read);
    const link = document.createElement("a");
    link.href = note.conversation ? `/c/${encodeURIComponent(note.conversation)}` : "#";
    link.textContent = note.text;
    const time = document.createElement("time");
    const at = new Date(note.created_at);
    time.dateTime = note.created_at;
    time.textContent = shortTime(at);
    time.title = fullTime(at);
    link.append(time);
    li.append(link);
    if (!note.read && note.conversation) {
      const mark = document.createElement("button");
      mark.type = "button";
      mark.className = "link-button notif-mark";
      mark.textContent = "Mark read";
      mark.setAttribute("aria-label", `Mark read: ${note.text}`);
      mark.addEventListener("click", async (event) => {
        event.stopPropagation();
        await api.post(`/api/notifications/${encodeURIComponent(note.conversation)}/read`).catch(() => {});
        settle(note.conversation);
        tellOtherTabs("bell", {});
      });
      li.append(mark);
    }
    return li;
  }

  function renderList() {
    changes += 1;
    list.replaceChildren(...[...entries.values()].map(item));
    empty.hidden = entries.size > 0;
    renderMore();
    renderCount();
  }

  /** The entry of this conversation is read (opened, or marked). */
  function settle(conversation) {
    const entry = entries.get(conversation);
    if (!entry || entry.read) return;
    entry.read = true;
    entry.count = 0;
    renderList();
  }

  async function load(attempts = LOAD_ATTEMPTS) {
    try {
      const before = changes;
      const data = await api.get("/api/notifications");
      // Something changed while the listing was on its way (an entry marked
      // read, a new notification): the answer may predate it; ask again.
      if (changes !== before && attempts > 1) return load(attempts - 1);
      entries = new Map(data.notifications.map((note) => [note.conversation, note]));
      unlisted = Math.max(0, data.unread - listedUnread());
      // The conversation on screen is being read: its entry is no news.
      const open = openConversation();
      if (open && document.visibilityState === "visible" && entries.has(open)) {
        entries.get(open).read = true;
      }
      renderList();
    } catch {
      // The bell stays as it was; the next open retries.
    }
  }

  // Opening the panel only shows the entries: an entry is read when its
  // conversation is read, or when it (or all) is marked read here.
  bindMenu(button, panel, { onOpen: load });
  readAll.addEventListener("click", async () => {
    await api.post("/api/notifications/read").catch(() => {});
    unlisted = 0;
    for (const entry of entries.values()) {
      entry.read = true;
      entry.count = 0;
    }
    renderList();
    tellOtherTabs("bell", {});
  });
  // Marked read in another tab (no frame says so): the server's listing does.
  onOtherTab("bell", () => load());
  // A conversation closed beside the inbox (marked as unread, say) may have
  // news the bell held back while it was on screen: the listing says.
  document.addEventListener("conversation-closed", () => follow());
  connection.on("notification", (frame) => {
    const note = frame.notification;
    // The person is looking at it: no need to tell them.
    if (note.conversation === openConversation() && document.visibilityState === "visible") return;
    // Not listed while some unread are not: it may be one of those, already
    // counted; the server says.
    if (followUnlisted(note.conversation)) return;
    const before = entries.get(note.conversation);
    const grouped = before && !before.read ? before.count + 1 : 1;
    const text = grouped > 1 ? note.text.replace(/^New message/, `${grouped} new messages`) : note.text;
    entries.delete(note.conversation);
    entries = new Map([[note.conversation, { ...note, text, count: grouped, read: false }], ...entries]);
    renderList();
  });
  // Reading a conversation (here or in another tab: the server echoes our
  // own `read` frames) clears its entry, as it does on the server.
  connection.on("read", (frame) => {
    const me = document.body.dataset;
    if (!frame.reader || frame.reader.kind !== me.kind || frame.reader.id !== me.me) return;
    if (!followUnlisted(frame.conversation)) settle(frame.conversation);
  });
  // The inbox feed (staff, on the inbox page) brings each conversation's
  // unread count as it changes, whoever changed it: read in another tab,
  // or marked as unread. The bell follows: read, its entry is; unread with
  // no unread entry here, the server's listing says what the entry is.
  let reloadTimer = null;
  function follow() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => load(), FOLLOW_DELAY_MS);
  }
  // A conversation with no entry here, while the server counts unread ones
  // it did not list: whether it is one of those is the server's to say, so
  // the listing is asked again (true) rather than the count guessed.
  function followUnlisted(conversation) {
    if (unlisted === 0 || entries.has(conversation)) return false;
    follow();
    return true;
  }
  connection.on("inbox", (frame) => {
    const entry = entries.get(frame.conversation);
    if (followUnlisted(frame.conversation)) return;
    if (frame.unread === 0) {
      settle(frame.conversation);
    } else if (!entry || entry.read) {
      follow();
    }
  });
  // Archiving quiets the conversation's entry until the candidate writes
  // again (and unarchiving brings its count back): the server says how.
  // Also when the archive was done in another tab (tabs.js).
  document.addEventListener("conversation-archive", () => load());
  onOtherTab("archived", () => load());
  // Opening a conversation reads it, which clears its entry on the server.
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('a[href^="/c/"]');
    if (!link) return;
    const match = link.getAttribute("href").match(/^\/c\/([^/?#]+)/);
    if (match) settle(decodeURIComponent(match[1]));
  }, true);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") load();
  });
  load();
}
