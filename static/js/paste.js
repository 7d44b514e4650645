// Pasted rich text (from a web page, Word, Google Docs, an email) becomes the
// Markdown subset of SPEC 2: bold, italics, bulleted and numbered lists,
// links (http, https, mailto), paragraphs and line breaks. Everything else
// keeps its words and loses its form: headings become bold lines, quotes and
// code plain paragraphs, images their alt text, tables one line per row.
//
// Turndown (static/vendor/turndown) does the conversion, escaping Markdown
// characters in the text so that pasted words stay words. The HTML is parsed
// by DOMParser into an inert document: nothing in it runs or loads.

import TurndownService from "../vendor/turndown/turndown.js";

const LINK_SCHEMES = /^(https?:|mailto:)/i;
const BOLD_STYLE = /font-weight\s*:\s*(bold|bolder|[6-9]00)\b/i;
const NORMAL_WEIGHT = /font-weight\s*:\s*(normal|lighter|[1-4]00)\b/i;
const ITALIC_STYLE = /font-style\s*:\s*(italic|oblique)\b/i;
const DROPPED = ["script", "style", "title", "head", "meta", "link", "template", "noscript", "iframe", "object", "embed", "svg", "canvas", "button", "input", "select", "textarea", "video", "audio"];

const service = new TurndownService({
  headingStyle: "atx",
  bulletListMarker: "-",
  emDelimiter: "*",
  strongDelimiter: "**",
  // A line break is a newline: the renderer turns it into <br>.
  br: "",
});

service.remove(DROPPED);

service.addRule("heading", {
  filter: ["h1", "h2", "h3", "h4", "h5", "h6"],
  replacement: (content) => (content.trim() ? `\n\n**${content.trim()}**\n\n` : ""),
});

service.addRule("plainBlock", {
  filter: ["blockquote", "pre", "figure", "figcaption", "address", "details", "summary"],
  replacement: (content) => `\n\n${content.trim()}\n\n`,
});

// Code is shown as its characters; Turndown leaves code text unescaped.
service.addRule("plainCode", {
  filter: ["code", "kbd", "samp", "tt"],
  replacement: (content) => service.escape(content),
});

service.addRule("plainInline", {
  filter: ["del", "s", "strike", "u", "ins", "mark", "sub", "sup", "small", "big", "cite", "q", "abbr"],
  replacement: (content) => content,
});

service.addRule("image", {
  filter: "img",
  replacement: (content, node) => service.escape((node.getAttribute("alt") || "").trim()),
});

service.addRule("rule", { filter: "hr", replacement: () => "\n\n" });

service.addRule("tableRow", {
  filter: "tr",
  replacement: (content) => `\n\n${content.replace(/\s*·\s*$/, "").trim()}\n\n`,
});

service.addRule("tableCell", {
  filter: ["td", "th"],
  replacement: (content) => (content.trim() ? `${content.trim().replace(/\s*\n+\s*/g, " ")} · ` : ""),
});

service.addRule("link", {
  filter: "a",
  replacement: (content, node) => {
    const href = (node.getAttribute("href") || "").trim();
    const words = content.trim();
    if (!words || !LINK_SCHEMES.test(href)) return content;
    const target = href.replace(/[()<> ]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
    return `[${words.replace(/\n+/g, " ")}](${target})`;
  },
});

// Google Docs wraps a whole paste in <b style="font-weight:normal">.
service.addRule("normalWeight", {
  filter: (node) => (node.nodeName === "B" || node.nodeName === "STRONG") && NORMAL_WEIGHT.test(node.getAttribute("style") || ""),
  replacement: (content) => content,
});

service.addRule("listItem", {
  filter: "li",
  replacement: (content, node) => {
    const parent = node.parentNode;
    let prefix = "- ";
    if (parent.nodeName === "OL") {
      const start = Number(parent.getAttribute("start")) || 1;
      prefix = `${start + Array.prototype.indexOf.call(parent.children, node)}. `;
    }
    const body = content.replace(/^\n+/, "").replace(/\n+$/, "\n").replace(/\n(?!$)/g, `\n${" ".repeat(prefix.length)}`);
    return prefix + body + (node.nextSibling && !/\n$/.test(body) ? "\n" : "");
  },
});

/** Styled spans (Word, Google Docs) become <strong> / <em>, and runs of the
 * same format next to each other merge, so "**a****b**" never happens. */
function normalise(root) {
  const doc = root.ownerDocument;
  for (const span of [...root.querySelectorAll("span[style], font[style]")]) {
    const style = span.getAttribute("style") || "";
    const bold = BOLD_STYLE.test(style);
    const italic = ITALIC_STYLE.test(style);
    if (!bold && !italic) continue;
    let outer = null;
    let inner = null;
    if (bold) outer = inner = doc.createElement("strong");
    if (italic) {
      const em = doc.createElement("em");
      if (outer) outer.append(em);
      else outer = em;
      inner = em;
    }
    inner.append(...span.childNodes);
    span.replaceWith(outer);
  }
  for (const el of [...root.querySelectorAll("b, strong, i, em")]) {
    if (!el.isConnected || NORMAL_WEIGHT.test(el.getAttribute("style") || "")) continue;
    const kind = el.nodeName === "B" || el.nodeName === "STRONG" ? "bold" : "italic";
    let next = el.nextSibling;
    while (next && next.nodeType === Node.ELEMENT_NODE) {
      const nextKind = { B: "bold", STRONG: "bold", I: "italic", EM: "italic" }[next.nodeName];
      if (nextKind !== kind || NORMAL_WEIGHT.test(next.getAttribute("style") || "")) break;
      el.append(...next.childNodes);
      const gone = next;
      next = next.nextSibling;
      gone.remove();
    }
  }
}

/** The Markdown of pasted HTML; empty when it holds no words. */
export function htmlToMarkdown(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  normalise(doc.body);
  const markdown = service.turndown(doc.body);
  return markdown.replace(/[ \t]+\n/g, "\n").replace(/\n{3,}/g, "\n\n").trim();
}
