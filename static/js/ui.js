// Small shared pieces of UI: menus and popovers, avatars, status labels.

const openMenus = new Set();

function close(button, panel, { focus = false } = {}) {
  panel.hidden = true;
  button.setAttribute("aria-expanded", "false");
  openMenus.delete(button);
  if (focus) button.focus();
}

export function closeAllMenus(except) {
  for (const button of [...openMenus]) {
    if (button !== except) close(button, button._panel);
  }
}

/** A button that toggles a menu or popover: Escape and outside clicks close it,
 * arrow keys move between menu items. */
export function bindMenu(button, panel, { onOpen } = {}) {
  button._panel = panel;
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    if (!panel.hidden) return close(button, panel);
    closeAllMenus(button);
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    openMenus.add(button);
    if (onOpen) onOpen();
    const first = panel.querySelector('[role="menuitem"]:not([hidden])');
    if (first && event.detail === 0) first.focus();
  });
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close(button, panel, { focus: true });
      return;
    }
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const items = [...panel.querySelectorAll('[role="menuitem"]')].filter((el) => !el.hidden);
    const at = items.indexOf(document.activeElement);
    const next = event.key === "ArrowDown" ? at + 1 : at - 1;
    items[(next + items.length) % items.length]?.focus();
    event.preventDefault();
  });
  panel.addEventListener("click", (event) => {
    if (event.target.closest('[role="menuitem"]')) close(button, panel);
    event.stopPropagation();
  });
}

document.addEventListener("click", () => closeAllMenus());
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeAllMenus();
});

export function initials(name) {
  const words = (name || "?").trim().split(/\s+/);
  return ((words[0] || "?")[0] + (words.length > 1 ? words[words.length - 1][0] : "")).toUpperCase();
}

/** A stable colour for a person, so the same candidate always looks the same. */
export function hue(id) {
  let h = 0;
  for (const ch of id || "") h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return String(h % 6);
}

export function statusLabel(status) {
  const text = (status || "").replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function clone(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

/** A message's plain-text preview for lists and notifications. */
export function preview(message, myKind, myId) {
  if (!message) return "";
  if (message.deleted) return "Message deleted";
  const mine = message.sender.kind === myKind && message.sender.id === myId;
  let text = message.body.replace(/[*_`#>]+/g, "").replace(/\s+/g, " ").trim();
  if (!text && message.attachments.length) text = `📎 ${message.attachments[0].name}`;
  return mine ? `You: ${text}` : text;
}
