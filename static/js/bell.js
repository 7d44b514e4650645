// Service notifications (SPEC 6): a bell with a count, a list on click,
// live additions from the socket's `notification` frames.

import { api } from "./api.js";
import { connection } from "./socket.js";
import { bindMenu } from "./ui.js";
import { fullTime, shortTime } from "./time.js";

export function initBell() {
  const button = document.getElementById("bell");
  if (!button) return;
  const panel = document.getElementById("notif-panel");
  const count = document.getElementById("bell-count");
  const list = document.getElementById("notif-list");
  const empty = document.getElementById("notif-empty");
  let unread = 0;

  function renderCount() {
    count.hidden = unread === 0;
    count.textContent = unread > 9 ? "9+" : String(unread);
    button.setAttribute("aria-label", unread ? `Notifications, ${unread} unread` : "Notifications");
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
    return li;
  }

  async function load() {
    try {
      const data = await api.get("/api/notifications");
      unread = data.unread;
      list.replaceChildren(...data.notifications.map(item));
      empty.hidden = data.notifications.length > 0;
      renderCount();
    } catch {
      // The bell stays as it was; the next open retries.
    }
  }

  bindMenu(button, panel, {
    onOpen: async () => {
      await load();
      if (unread > 0) {
        await api.post("/api/notifications/read").catch(() => {});
        unread = 0;
        renderCount();
      }
    },
  });
  connection.on("notification", (frame) => {
    const note = { ...frame.notification, read: false };
    unread += 1;
    renderCount();
    list.prepend(item(note));
    empty.hidden = true;
  });
  load();
}
