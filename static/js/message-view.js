// One message's element, cloned from #message-template: filled from a
// MESSAGE (SPEC 5), or drawn as the bubble of a send not acknowledged yet
// (pending-sends.js holds it); its attachments and the full-image dialog.
//
// Nothing here keeps state: the list (message-list.js) decides which
// element shows which message, pending-sends.js holds the sends.

import { bindMenu, clone, fileSize } from "./ui.js";
import { clock, fullTime } from "./time.js";

const me = document.body.dataset;

const FILE_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V9h5.5z"/></svg>';

export function isMine(person) {
  return person.kind === me.kind && person.id === me.me;
}

/** "Our side" of the conversation: for staff, every staff member (a shared
 * inbox); for a candidate, only themselves. Shown on the right. */
export function isOurs(person) {
  return me.kind === "staff" ? person.kind === "staff" : isMine(person);
}

/** An empty message element, to fill. */
export function newMessage() {
  return clone("message-template");
}

/** Show MESSAGE in `el` (new or reused). `onDelete(el, scope, button)` is
 * what the message's menu runs; it is bound once per element. */
export function fillMessage(el, message, onDelete) {
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
    for (const a of message.attachments) files.append(fileItem(a));
  }
  el.querySelector(".msg-status").replaceChildren();
  bindMessageMenu(el, message, onDelete);
}

function bindMessageMenu(el, message, onDelete) {
  const button = el.querySelector('[data-testid="message-menu"]');
  const menu = button.nextElementSibling;
  const forEveryone = menu.querySelector('[data-action="delete-everyone"]');
  forEveryone.hidden = !isMine(message.sender) || message.deleted;
  if (el.dataset.bound) return;
  el.dataset.bound = "1";
  bindMenu(button, menu);
  menu.querySelector('[data-action="delete-me"]').addEventListener("click", () => onDelete(el, "me"));
  forEveryone.addEventListener("click", () => onDelete(el, "everyone", button));
}

/** The bubble of one of pending-sends.js's sends ({clientId, body, files}),
 * shown as typed until its ack turns it into the stored message. */
export function pendingMessage(send) {
  const el = newMessage();
  el.classList.add("mine", "ours", "pending");
  el.dataset.sender = `${me.kind}:${me.me}`;
  // When it was written: a send kept from a closed page is older than this page.
  const written = new Date(send.createdAt || Date.now());
  el.dataset.at = written.toISOString();
  el.dataset.clientId = send.clientId;
  el.querySelector(".msg-sender").textContent = "You";
  el.querySelector(".msg-time").textContent = clock(written);
  const text = el.querySelector(".msg-body");
  text.classList.add("plain");
  text.textContent = send.body;
  for (const f of send.files) text.append(fileItem({ ...f, url: "#" }));
  el.querySelector(".msg-actions").hidden = true;
  el.querySelector(".msg-status").textContent = "Sending…";
  return el;
}

/** A pending bubble (again) on its way: after a retry. */
export function showSending(el) {
  el.classList.replace("failed", "pending");
  el.querySelector(".msg-status").textContent = "Sending…";
}

/** A pending bubble whose send was refused, with Retry, Edit (its text
 * back in the composer, to change it or attach a file again) and Discard. */
export function showFailed(el, text, { onRetry, onEdit, onDiscard }) {
  el.classList.add("failed");
  el.classList.remove("pending");
  const status = el.querySelector(".msg-status");
  status.textContent = `Not sent: ${text} `;
  status.append(linkButton("Retry", onRetry), linkButton("Edit", onEdit), linkButton("Discard", onDiscard));
}

function linkButton(label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link-button";
  button.textContent = label;
  button.addEventListener("click", onClick);
  return button;
}

function fileItem(a) {
  if (a.thumbnail_url) return imageItem(a);
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
function imageItem(a) {
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
