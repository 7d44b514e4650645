// What a screen reader hears of a conversation: each message that arrives
// live from someone else, once, as "Name: words". The message list itself
// cannot be the live region: its day separators, grouping and "Seen" are
// laid out again as messages come, history arrives a page at a time, and
// one's own send turns from a pending bubble into the stored message, so a
// live list re-read all of that (docs/pages.md, "Accessibility").

// Lines kept in the region: enough for a burst, never a growing list.
const KEEP = 5;
// A long message is cut: the list holds the whole of it.
const MAX_CHARS = 300;

/** The words said for MESSAGE, shown as `el`. */
export function spoken(message, el) {
  if (message.sender.kind === "system") return message.body;
  const words = (el.querySelector(".msg-body")?.textContent || "").replace(/\s+/g, " ").trim();
  const cut = words.length > MAX_CHARS ? `${words.slice(0, MAX_CHARS)}…` : words;
  const files = message.deleted ? 0 : (message.attachments || []).length;
  const attached = files ? `${files === 1 ? "a file" : `${files} files`}` : "";
  const said = cut && attached ? `${cut} (with ${attached})` : cut || `sent ${attached}`;
  return `${message.sender.name}: ${said}`;
}

/** A function that says each message it is given in `region` (polite). */
export function announcer(region) {
  return (message, el) => {
    const line = document.createElement("p");
    line.textContent = spoken(message, el);
    region.append(line);
    while (region.childElementCount > KEEP) region.firstElementChild.remove();
  };
}
