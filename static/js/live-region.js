// A polite live region whose words live in a closed shadow root: assistive
// technology reads them (the flattened tree is what it sees), but they are
// not text of the page for scripts that look for a message's words, such
// as browser tests locating a message by its text, which would otherwise
// find each message twice, once in the list and once here. What was said
// is kept, for tests, as a JSON list in the host's `data-said`.

/** `host` (an empty element with `aria-live`) as a region that says lines,
 * keeping the last `keep`. */
export function liveRegion(host, { keep = 5 } = {}) {
  const root = host.attachShadow({ mode: "closed" });
  const said = [];
  return {
    /** Say `text` as a line of its own. */
    say(text) {
      const line = document.createElement("p");
      line.textContent = text;
      root.append(line);
      said.push(text);
      while (root.childElementCount > keep) root.firstElementChild.remove();
      if (said.length > keep) said.shift();
      host.dataset.said = JSON.stringify(said);
    },
    /** Say `text` in place of whatever was said. */
    replace(text) {
      root.replaceChildren();
      said.length = 0;
      if (text) this.say(text);
      else host.dataset.said = "[]";
    },
  };
}
