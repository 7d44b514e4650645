// One row of the staff inbox, cloned from #inbox-item-template: the
// candidate, the job with its status pill, the newest message's preview (in
// a search result, the message found) and time, the unread badge; search
// matches marked. No state: inbox.js keeps the rows and repaints one when
// its conversation changes.

import {
  clone,
  highlight,
  hue,
  initials,
  nearMatch,
  preview,
  previewSender,
  previewText,
  statusLabel,
} from "./ui.js";
import { fullTime, shortTime } from "./time.js";

const me = document.body.dataset;

/** A new row for `conversation`; a plain click runs `onOpen({ byKeyboard })`
 * instead of following the link (a click with a modifier opens a tab as
 * usual). `byKeyboard`: the row was opened with Enter (a click of no
 * pointer), so focus should follow into the conversation. */
export function newRow(conversation, onOpen) {
  const li = clone("inbox-item-template");
  const link = li.querySelector("a");
  link.dataset.conversation = conversation.id;
  link.addEventListener("click", (event) => {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    onOpen({ byKeyboard: event.detail === 0 });
  });
  return { li, link };
}

/** Show conversation `c` in the row's link. `q` is the search (marked),
 * `href` where the link goes, `current` whether it is the open one, `draft`
 * the preview of what the person has written there and not sent (if any,
 * it takes the newest message's place, as in a mail client). */
export function paintRow(link, c, { q, href, current, draft }) {
  link.href = href;
  const avatar = link.querySelector(".avatar");
  avatar.textContent = initials(c.candidate.name);
  avatar.dataset.hue = hue(c.candidate.id);
  highlight(link.querySelector(".item-name"), c.candidate.name, q);
  // The title gives way to the status: a long one is cut, never the pill.
  const title = document.createElement("span");
  title.className = "item-job-title";
  highlight(title, c.job.title, q);
  const pill = document.createElement("span");
  pill.className = "pill";
  pill.dataset.status = c.status;
  pill.dataset.state = c.state;
  pill.textContent = c.state === "ended" ? "Ended" : statusLabel(c.status);
  link.querySelector(".item-job").replaceChildren(title, pill);
  const last = c.last_message;
  const time = link.querySelector(".item-time");
  if (last) {
    const at = new Date(last.created_at);
    time.dateTime = last.created_at;
    time.textContent = shortTime(at);
    time.title = fullTime(at);
  } else {
    time.textContent = "";
  }
  const shown = link.querySelector(".item-preview");
  if (draft) {
    highlight(shown, draft, q);
    const label = document.createElement("span");
    label.className = "draft-label";
    label.textContent = "Draft: ";
    shown.prepend(label);
  } else if (q && c.match) {
    // A search result shows the message it was found in, from near the match.
    const text = nearMatch(previewText(c.match.body, c.match.attachments), q);
    highlight(shown, `${previewSender(c.match, me.kind, me.me)}${text}`, q);
  } else {
    highlight(shown, last ? preview(last, me.kind, me.me) : "No messages yet", q);
  }
  link.classList.toggle("is-ended", c.state === "ended");
  const bubble = link.querySelector(".history-bubble");
  bubble.classList.toggle("filled", Boolean(last));
  bubble.setAttribute("aria-label", last ? "Has messages" : "No messages yet");
  let badge = link.querySelector('[data-testid="unread-badge"]');
  if (c.unread > 0) {
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "unread-badge";
      badge.dataset.testid = "unread-badge";
      link.querySelector(".item-bottom").append(badge);
    }
    badge.textContent = c.unread > 99 ? "99+" : String(c.unread);
    badge.setAttribute("aria-label", `${c.unread} unread`);
  } else if (badge) {
    badge.remove();
  }
  link.classList.toggle("is-unread", c.unread > 0);
  if (current) link.setAttribute("aria-current", "page");
  else link.removeAttribute("aria-current");
}

/** Arrow keys move between the rows of `list`. */
export function arrowKeys(list, event) {
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  const links = [...list.querySelectorAll(".inbox-item")];
  if (document.activeElement === list && links.length) {
    // The list itself has focus (its row went): into its first or last row.
    (event.key === "ArrowDown" ? links[0] : links[links.length - 1]).focus();
    event.preventDefault();
    return;
  }
  const at = links.indexOf(document.activeElement);
  if (at === -1) return;
  const next = links[at + (event.key === "ArrowDown" ? 1 : -1)];
  if (next) {
    next.focus();
    event.preventDefault();
  }
}
