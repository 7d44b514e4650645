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

// Space kept between an opened panel and the edge of what shows it.
const EDGE = 8;

/** The part of the window where `el` can be seen: the window, cut by every
 * ancestor that clips what overflows it (a message's menu lives in the
 * scrolling timeline, which ends at the composer). */
function visibleArea(el) {
  const area = { left: 0, top: 0, right: document.documentElement.clientWidth, bottom: window.innerHeight };
  for (let up = el.parentElement; up; up = up.parentElement) {
    if (getComputedStyle(up).overflow === "visible") continue;
    const box = up.getBoundingClientRect();
    area.left = Math.max(area.left, box.left);
    area.top = Math.max(area.top, box.top);
    area.right = Math.min(area.right, box.right);
    area.bottom = Math.min(area.bottom, box.bottom);
  }
  return area;
}

/** Keeps an opened panel where it can be seen: above its button when it
 * would run past the bottom and there is more room above, and moved
 * sideways by what would spill over a side (a phone is narrower than a
 * menu anchored to a message or the bell). */
function fitInView(panel) {
  panel.classList.remove("above");
  panel.style.translate = "";
  const area = visibleArea(panel);
  let box = panel.getBoundingClientRect();
  if (box.bottom > area.bottom - EDGE) {
    const anchor = panel.parentElement.getBoundingClientRect();
    if (anchor.top - area.top > area.bottom - anchor.bottom) {
      panel.classList.add("above");
      box = panel.getBoundingClientRect();
    }
  }
  let shift = 0;
  if (box.right > area.right - EDGE) shift = area.right - EDGE - box.right;
  if (box.left + shift < area.left + EDGE) shift = area.left + EDGE - box.left;
  if (shift) panel.style.translate = `${Math.round(shift)}px 0`;
}

/** A button that toggles a menu or popover: Escape, outside clicks and focus
 * leaving it (Tab out of the panel and its button) close it, arrow keys move
 * between menu items. */
export function bindMenu(button, panel, { onOpen } = {}) {
  button._panel = panel;
  // Focus moving to anything but the panel or its button closes it. Without
  // a new target (a click on the panel's padding, the window losing focus)
  // it stays: an outside click closes it anyway.
  const onFocusOut = (event) => {
    const to = event.relatedTarget;
    if (panel.hidden || !to || to === button || panel.contains(to)) return;
    close(button, panel);
  };
  button.addEventListener("focusout", onFocusOut);
  panel.addEventListener("focusout", onFocusOut);
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    if (!panel.hidden) return close(button, panel);
    closeAllMenus(button);
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    openMenus.add(button);
    if (onOpen) onOpen();
    fitInView(panel);
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

/** An avatar's letters: the first letter or digit, a whole character of any
 * script, of the first and the last word that has one ("花子 山田" is "花山",
 * "英語教師 (Englischlehrer:in)" is "英E"; "🙂" has none). */
export function initials(name) {
  const firsts = (name || "")
    .split(/\s+/)
    .map((word) => word.match(/[\p{L}\p{N}]/u)?.[0])
    .filter(Boolean);
  if (firsts.length === 0) return "?";
  return (firsts[0] + (firsts.length > 1 ? firsts[firsts.length - 1] : "")).toUpperCase();
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

/** A message's plain-text preview for lists and notifications. In a shared
 * inbox, our side's messages say who sent them ("You:", "Bob:"). A message
 * deleted for everyone shows as deleted: its text is gone everywhere. */
export function preview(message, myKind, myId) {
  if (!message) return "";
  const who = previewSender(message, myKind, myId);
  if (message.deleted) return `${who}Message deleted`;
  return `${who}${previewText(message.body, message.attachments)}`;
}

/** Who wrote a previewed message, as its preview starts: "You: ", a
 * colleague's first name, or nothing for the other side. */
export function previewSender(message, myKind, myId) {
  const mine = message.sender.kind === myKind && message.sender.id === myId;
  const colleague = !mine && myKind === "staff" && message.sender.kind === "staff";
  return mine ? "You: " : colleague ? `${firstName(message.sender.name)}: ` : "";
}

/** A body (and its files) as one line of a preview: Markdown's marks
 * dropped, whitespace collapsed, the first file's name if it has no text. */
export function previewText(body, files) {
  const text = body.replace(/[*_`#>]+/g, "").replace(/\s+/g, " ").trim();
  return !text && files.length ? `📎 ${files[0].name}` : text;
}

function firstName(name) {
  return (name || "").trim().split(/\s+/)[0] || "Someone";
}

// -- search: folding and highlighting ------------------------------------------

// What the server's fold (chatserver/store/folding.py) does beyond NFKD,
// dropping marks and lower case: Unicode case folding's extra letters ("ß"
// is "ss", a final sigma is a sigma) and the letters whose stroke or
// ligature is not a mark. Keep the two in step: tests/browser/test_inbox_live.py
// compares them character by character.
const FOLDED_LETTERS = {
  ß: "ss",
  ς: "σ",
  æ: "ae",
  œ: "oe",
  ø: "o",
  ł: "l",
  đ: "d",
  ð: "d",
  þ: "th",
  ħ: "h",
  ŧ: "t",
  ı: "i",
};
// The iota subscript is a mark that case folding turns into a letter.
const IOTA_SUBSCRIPT = /\u0345/g;

/** Case and accents folded away, as the server's search does ("Chloé" and
 * "CHLOE" both become "chloe", "Straße" becomes "strasse"); `starts`/`ends`
 * map each folded character back to the original text, so a match can be
 * marked there. */
export function fold(text) {
  let folded = "";
  const starts = [];
  const ends = [];
  let at = 0;
  for (const ch of text) {
    const bare = ch.normalize("NFKD").replace(IOTA_SUBSCRIPT, "ι").replace(/\p{M}/gu, "").toLowerCase();
    let f = "";
    for (const c of bare) f += FOLDED_LETTERS[c] ?? c;
    for (let i = 0; i < f.length; i += 1) {
      starts.push(at);
      ends.push(at + ch.length);
    }
    folded += f;
    at += ch.length;
  }
  return { folded, starts, ends };
}

/** `text` from shortly before the first place the search `query` is found
 * in it (cut at a word, with "…"), so that a match deep in a long message
 * shows in a one-line preview; the whole text when it is found early. */
export function nearMatch(text, query, lead = 24) {
  const term = fold((query || "").trim()).folded;
  if (!term) return text;
  const { folded, starts } = fold(text);
  const at = folded.indexOf(term);
  const start = at === -1 ? 0 : starts[at];
  if (start <= lead) return text;
  const space = text.indexOf(" ", start - lead);
  const cut = space !== -1 && space < start ? space + 1 : start - lead;
  return `…${text.slice(cut)}`;
}

/** Fills `el` with `text`, each search term marked (<mark>), folding case
 * and accents like the server. Text only: nothing is parsed as HTML. */
export function highlight(el, text, query) {
  el.replaceChildren();
  const terms = (query || "").split(/\s+/).map((t) => fold(t).folded).filter(Boolean);
  if (!terms.length) {
    el.textContent = text;
    return;
  }
  const { folded, starts, ends } = fold(text);
  const ranges = [];
  for (const term of terms) {
    let from = 0;
    for (let at = folded.indexOf(term, from); at !== -1; at = folded.indexOf(term, from)) {
      ranges.push([starts[at], ends[at + term.length - 1]]);
      from = at + term.length;
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  let cursor = 0;
  for (const [start, end] of ranges) {
    if (end <= cursor) continue;
    const from = Math.max(start, cursor);
    if (from > cursor) el.append(text.slice(cursor, from));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(from, end);
    el.append(mark);
    cursor = end;
  }
  if (cursor < text.length) el.append(text.slice(cursor));
}
