// Edits of a Markdown source that always leave valid Markdown of the SPEC 2
// subset: bold and italic on selections (or the current line), bulleted and
// numbered lists on lines, links, and list continuation on Enter.
//
// Each function takes the text and a selection and returns the edit to make:
// { from, to, text, selStart, selEnd } replaces value[from, to) by `text`
// and then selects [selStart, selEnd) of the new value. The composer applies
// it with the browser's own insertText, so Undo works as usual. Nothing here
// touches the page, so the rules can be tested on their own.

const LIST_ITEM = /^([ \t]*)(?:([-*+])|(\d{1,9})([.)]))[ \t]+/;
// CommonMark's punctuation: ASCII punctuation and Unicode P and S categories.
const PUNCTUATION = /[\p{P}\p{S}]/u;
const SPACE = /\s/u;
const PLACEHOLDER = { bold: "bold text", italic: "italic text" };
const MARKER = { bold: "**", italic: "*" };

function lineAt(value, index) {
  const start = value.lastIndexOf("\n", index - 1) + 1;
  let end = value.indexOf("\n", index);
  if (end === -1) end = value.length;
  return { start, end };
}

/** The list marker of a line: its indent, kind and width, or null. */
export function listItem(line) {
  const m = LIST_ITEM.exec(line);
  if (!m) return null;
  return {
    indent: m[1],
    ordered: Boolean(m[3]),
    bullet: m[2] || null,
    number: m[3] ? Number(m[3]) : null,
    delimiter: m[4] || null,
    width: m[0].length,
  };
}

/** Where a line's own words start: after its list marker, if any. */
function contentStart(value, line) {
  const item = listItem(value.slice(line.start, line.end));
  return line.start + (item ? item.width : 0);
}

function isSpace(ch) {
  return ch === undefined || ch === "" || SPACE.test(ch);
}

function isPunct(ch) {
  return ch !== undefined && ch !== "" && PUNCTUATION.test(ch);
}

function starsBefore(value, index, floor) {
  let n = 0;
  while (index - n - 1 >= floor && value[index - n - 1] === "*") n += 1;
  return n;
}

function starsAfter(value, index, ceiling) {
  let n = 0;
  while (index + n < ceiling && value[index + n] === "*") n += 1;
  return n;
}

/** Widen [s, e) within [floor, ceiling) until the markers can open before
 * it and close after it: CommonMark does not let a delimiter run next to
 * punctuation open or close inside a word ("x**(y)**z"), so then the whole
 * word is taken. */
function flank(value, s, e, floor, ceiling) {
  const opens = !isPunct(value[s]) || s === floor || isSpace(value[s - 1]) || isPunct(value[s - 1]);
  if (!opens) while (s > floor && !isSpace(value[s - 1])) s -= 1;
  const closes = !isPunct(value[e - 1]) || e === ceiling || isSpace(value[e]) || isPunct(value[e]);
  if (!closes) while (e < ceiling && !isSpace(value[e])) e += 1;
  return [s, e];
}

/** The parts of [start, end) to format, one per line, without the
 * whitespace at their edges or the lines' list markers. */
function segments(value, start, end) {
  const parts = [];
  end = Math.min(end, value.length);
  let at = Math.min(start, end);
  for (;;) {
    const line = lineAt(value, at);
    const floor = contentStart(value, line);
    let s = Math.max(at, floor);
    let e = Math.min(end, line.end);
    while (s < e && isSpace(value[s])) s += 1;
    while (e > s && isSpace(value[e - 1])) e -= 1;
    if (s < e) parts.push({ s, e, floor, ceiling: line.end });
    if (line.end >= end) break;
    at = line.end + 1;
  }
  return parts;
}

/** A segment's words without markers the selection took along, and how
 * they are already emphasised: the stars right around them (at most 3:
 * one for italic, two for bold, three for both). */
function emphasis(value, part) {
  const s = part.s + starsAfter(value, part.s, part.e);
  const e = Math.max(s, part.e - starsBefore(value, part.e, s));
  if (s === e) return { s: part.s, e: part.e, stars: 0 };
  const stars = Math.min(starsBefore(value, s, part.floor), starsAfter(value, e, part.ceiling), 3);
  return { s, e, stars };
}

function has(kind, stars) {
  return kind === "bold" ? stars >= 2 : stars % 2 === 1;
}

/** Bold or italic on the selection; with no selection, on the current line's
 * words; on an empty line, a selected placeholder to type over. */
export function toggleEmphasis(value, selStart, selEnd, kind) {
  const marker = MARKER[kind];
  const m = marker.length;
  if (selStart === selEnd) {
    const line = lineAt(value, selStart);
    const floor = contentStart(value, line);
    const words = segments(value, floor, line.end);
    if (!words.length) {
      const at = Math.max(selStart, floor);
      const placeholder = PLACEHOLDER[kind];
      return { from: at, to: at, text: `${marker}${placeholder}${marker}`, selStart: at + m, selEnd: at + m + placeholder.length };
    }
    const edit = toggleEmphasis(value, words[0].s, words[0].e, kind);
    if (selStart < words[0].e) return edit;
    // The caret was after the words: it stays after them, past the marker.
    const end = edit.from + edit.text.length;
    return { ...edit, selStart: end, selEnd: end };
  }
  const parts = segments(value, selStart, selEnd);
  if (!parts.length) return null;
  const states = parts.map((part) => emphasis(value, part));
  const removing = states.every((state) => has(kind, state.stars));
  // One replacement per segment: [left, right) becomes text, whose words are
  // text[innerStart, innerEnd).
  const pieces = parts.map((part, index) => {
    const { s, e, stars } = states[index];
    const words = value.slice(s, e);
    if (removing) return { left: s - m, right: e + m, text: words, innerStart: 0, innerEnd: words.length };
    if (has(kind, stars)) return { left: s, right: e, text: words, innerStart: 0, innerEnd: words.length };
    const [left, right] = flank(value, s, e, part.floor, part.ceiling);
    const text = `${marker}${value.slice(left, right)}${marker}`;
    return { left, right, text, innerStart: m, innerEnd: text.length - m };
  });
  const from = pieces[0].left;
  const to = pieces[pieces.length - 1].right;
  let out = "";
  let cursor = from;
  let first = null;
  let last = null;
  for (const piece of pieces) {
    out += value.slice(cursor, piece.left);
    if (first === null) first = out.length + piece.innerStart;
    last = out.length + piece.innerEnd;
    out += piece.text;
    cursor = piece.right;
  }
  return { from, to, text: out, selStart: from + first, selEnd: from + last };
}

/** Bulleted or numbered list on the lines of the selection (or the current
 * line): on when any line lacks it, off when all have it. */
export function toggleList(value, selStart, selEnd, ordered) {
  const first = lineAt(value, selStart);
  const last = lineAt(value, Math.max(selStart, selEnd - (selEnd > selStart && value[selEnd - 1] === "\n" ? 1 : 0)));
  const from = first.start;
  const to = last.end;
  const lines = value.slice(from, to).split("\n");
  const items = lines.map(listItem);
  const filled = lines.map((line, i) => line.slice(items[i] ? items[i].width : 0).trim() !== "");
  const considered = lines.map((_, i) => i).filter((i) => filled[i] || lines.length === 1);
  const already = considered.length > 0 && considered.every((i) => items[i] && items[i].ordered === ordered);
  // A numbered list continues the one right above it, if any.
  const above = from > 0 ? listItem(value.slice(lineAt(value, from - 1).start, from - 1)) : null;
  let number = above && above.ordered && ordered ? above.number + 1 : 1;
  const changed = lines.map((line, i) => {
    const item = items[i];
    const words = item ? line.slice(item.width) : line.replace(/^[ \t]+/, "");
    if (already) return words;
    if (!filled[i] && lines.length > 1) return line;
    const indent = item ? item.indent : "";
    const marker = ordered ? `${number++}. ` : "- ";
    return `${indent}${marker}${words}`;
  });
  const text = changed.join("\n");
  if (lines.length === 1) {
    // Keep the caret among the same words.
    const oldStart = items[0] ? items[0].width : line0Indent(lines[0]);
    const newItem = listItem(text);
    const newStart = newItem ? newItem.width : 0;
    const shift = newStart - oldStart;
    const clamp = (x) => Math.max(from + newStart, Math.min(from + text.length, x + shift));
    return { from, to, text, selStart: clamp(selStart), selEnd: clamp(selEnd) };
  }
  return { from, to, text, selStart: from, selEnd: from + text.length };
}

function line0Indent(line) {
  return line.length - line.replace(/^[ \t]+/, "").length;
}

/** Enter in a list item: the next item (numbered on), or, on an empty item,
 * the end of the list. Null when the caret is not in a list item. */
export function continueList(value, caret) {
  const line = lineAt(value, caret);
  const item = listItem(value.slice(line.start, line.end));
  if (!item || caret < line.start + item.width) return null;
  if (value.slice(line.start + item.width, line.end).trim() === "") {
    // An empty item ends the list: the marker goes, leaving a blank line.
    return { from: line.start, to: line.end, text: "", selStart: line.start, selEnd: line.start };
  }
  const marker = item.ordered ? `${item.number + 1}${item.delimiter} ` : `${item.bullet} `;
  const text = `\n${item.indent}${marker}`;
  return { from: caret, to: caret, text, selStart: caret + text.length, selEnd: caret + text.length };
}

/** `[words](address)` for the link dialog; null when the address is not a
 * web or mail address. A bare domain gets https://, a bare e-mail mailto:. */
export function linkMarkdown(words, address) {
  let href = address.trim();
  if (!href) return null;
  if (/^[^\s@/:]+@[^\s@/]+\.[^\s@/]+$/.test(href)) href = `mailto:${href}`;
  else if (!/^[a-z][a-z0-9+.-]*:/i.test(href)) href = `https://${href}`;
  let url;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  if (!["http:", "https:", "mailto:"].includes(url.protocol)) return null;
  if (url.protocol !== "mailto:" && !url.hostname.includes(".") && url.hostname !== "localhost") return null;
  const target = url.href.replace(/[()<> ]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
  const label = (words.trim() || address.trim()).replace(/\s+/g, " ").replace(/([\\[\]*_`<>])/g, "\\$1");
  return `[${label}](${target})`;
}
