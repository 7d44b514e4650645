"""Message bodies: the Markdown subset of SPEC 2 rendered to HTML that is safe to embed.

Two independent layers, so that a bug in either one alone cannot put script
in front of a reader:

1. markdown-it-py with the "zero" preset and only the rules the spec names
   (emphasis, lists, links, autolinks, line breaks, escapes, entities), plus
   linkify (linkify-it-py), so that a pasted `https://…`, `www.…` or e-mail
   address becomes a link as people expect. Raw HTML is off, so `<script>`
   typed by a user comes out as escaped text, and links whose scheme is not
   http, https or mailto stay plain text (linkified ones pass the same check).
2. nh3 (ammonia) over the result, with an allowlist of exactly the tags and
   attributes the renderer can produce, the same scheme list, relative URLs
   denied, and `target`/`rel` forced onto every link.

Both objects are built once at import: rendering is on the send path.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any, Final

import nh3
from linkify_it import LinkifyIt  # type: ignore[import-untyped]
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.rules_inline.linkify import linkify as _inline_linkify
from markdown_it.token import Token

ALLOWED_TAGS: Final = frozenset({"p", "br", "strong", "em", "ul", "ol", "li", "a"})
# `ol[start]` keeps "3. third" numbered as written; it is an integer, never a URL.
ALLOWED_ATTRIBUTES: Final = {"a": frozenset({"href"}), "ol": frozenset({"start"})}
LINK_SCHEMES: Final = frozenset({"http", "https", "mailto"})
LINK_REL: Final = "noopener noreferrer nofollow"
LINK_TARGET: Final = "_blank"
ELLIPSIS: Final = "…"
# The longest link a preview keeps whole when its limit falls inside it
# (see `preview`): the de facto longest URL that works everywhere (old
# browsers, sitemaps, many servers stop at about 2,000 characters). Meeting
# and tracking links run to a few hundred; a longer one is left out.
PREVIEW_LINK_CHARS: Final = 2048

# Everything the spec's subset needs, nothing more: no headings, quotes,
# code, images, tables or HTML.
_BLOCK_RULES = ["list", "paragraph"]
_INLINE_RULES = ["emphasis", "link", "autolink", "newline", "escape", "entity"]
_CORE_RULES = ["linkify"]


# What may stand right before and right after a bare URL for it to be
# linked: the typed word starts and ends there.
_URL_STARTS_AFTER: Final = frozenset("([{<'\"*_~")
_URL_ENDS_BEFORE: Final = frozenset(".,;:!?)]}>'\"*_~")


def _is_boundary(char: str, punctuation: frozenset[str]) -> bool:
    return (
        char.isspace()
        or char in punctuation
        or (not char.isascii() and unicodedata.category(char).startswith("P"))
    )


def _whole_word(text: str, start: int, end: int) -> bool:
    return (start == 0 or _is_boundary(text[start - 1], _URL_STARTS_AFTER)) and (
        end >= len(text) or _is_boundary(text[end], _URL_ENDS_BEFORE)
    )


class _WholeWordLinkify(LinkifyIt):  # type: ignore[misc]
    """linkify-it, linking a bare URL only where the typed word ends too.

    Without this, `https://exa%3Cmple.com/` links `https://exa` and leaves
    the rest as text: a link that goes somewhere other than what the reader
    sees. Such text stays plain; trailing punctuation still ends a URL.
    """

    def match(self, text: str) -> list[Any] | None:
        found = [m for m in super().match(text) or () if _whole_word(text, m.index, m.last_index)]
        return found or None

    def match_at_start(self, text: str) -> Any:
        found = super().match_at_start(text)
        return found if found is not None and _whole_word(text, 0, found.last_index) else None


class _ChatMarkdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        """Refuse a link up front, so it stays readable text, when the sanitiser would.

        markdown-it hands over the destination already entity-decoded and
        percent-encoded, so `javascript&#58;` and `JaVaScRiPt:` arrive here as
        the plain scheme, and relative links (no scheme) are refused too.
        Asking the sanitiser itself about the rest (it drops hrefs whose host
        it cannot parse, e.g. `https://a%zz.com`) keeps the two layers in
        agreement, instead of leaving an `<a>` that goes nowhere.
        """
        scheme, colon, _ = url.partition(":")
        if not colon or scheme.lower() not in LINK_SCHEMES:
            return False
        probe = f'<a href="{html.escape(url)}"></a>'
        return _cleaner.clean(probe).startswith("<a href=")

    def normalizeLinkText(self, link: str) -> str:
        """A link's words are shown as typed.

        markdown-it would decode punycode and percent-escapes for display,
        which turns `xn--80ak6aa92e.com` into Cyrillic letters that read
        "apple.com": what the reader sees must be where the link goes.
        """
        return link


def _links_go_somewhere_visibly(state: StateCore) -> None:
    """Every link has an address and words to click.

    markdown-it accepts `[words]()`, an anchor that goes nowhere: it
    becomes its words. `[](https://…)` would be a link nobody can see: it
    shows its address.
    """
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        kept: list[Token] = []
        unwrapped: list[bool] = []
        for token in block.children:
            if token.type == "link_open":
                empty = not token.attrGet("href")
                unwrapped.append(empty)
                if not empty:
                    kept.append(token)
                continue
            if token.type == "link_close" and unwrapped:
                if unwrapped.pop():
                    continue
                opened = next(t for t in reversed(kept) if t.type == "link_open")
                if kept[-1] is opened:
                    words = Token("text", "", 0)
                    words.content = str(opened.attrGet("href"))
                    kept.append(words)
            kept.append(token)
        block.children = kept


def _linkify_that_moves_on(state: StateInline, silent: bool) -> bool:
    """markdown-it-py's inline linkify rule, refusing where it would not move.

    Scanning a link label (`silent`), the rule reads the scheme from text
    pending before the label, so `ple.com.[http://p://` "matches" a URL of
    no length, and the parser raises instead of rendering (a message that
    could never be sent). No match of no length counts.
    """
    start = state.pos
    if _inline_linkify(state, silent) and state.pos > start:
        return True
    state.pos = start
    return False


def _build_markdown() -> MarkdownIt:
    md = _ChatMarkdown("zero", {"breaks": True, "html": False, "linkify": True})
    md.enable(_BLOCK_RULES + _INLINE_RULES + _CORE_RULES)
    md.linkify = _WholeWordLinkify()
    md.inline.ruler.at("linkify", _linkify_that_moves_on)
    md.core.ruler.after("inline", "links_go_somewhere_visibly", _links_go_somewhere_visibly)
    return md


_markdown: Final = _build_markdown()
# What a mail client may link in a preview: linkify-it as it comes, fuzzy.
_mail_linkify: Final = LinkifyIt()
_cleaner: Final = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
    url_schemes=set(LINK_SCHEMES),
    url_relative="deny",
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": LINK_TARGET}},
    strip_comments=True,
)


# A one-line body the renderer would only escape (`&`, `<`, `>`): `render`
# writes its paragraph itself (most chat lines; both layers cost most of
# the send path's CPU, issue 10). It is printable (no line breaks, tabs,
# controls, or spaces other than ' ', which the renderer strips or writes
# as entities), neither starts nor ends with a space, does not start as a
# list item (`- `, `+ `, `1. `, `2)`) and holds no `*`, `\`, `[` or `]`.
# The characters something else acts on come only in inert forms: `_`
# inside a word (never emphasis); `&` that starts no entity; `<` before a
# non-letter (no autolink); `/` not doubled and `:` not before `/` (no
# `//` or `http://`); `@` at the start or after a space or `(` (no name
# before it, so no e-mail address or `mailto:`); `.` not before two letters
# (a bare link's host always ends in `.` and a top-level domain of two
# letters or more). Everything else, non-ASCII included, Markdown and
# linkify leave as text. tests/chat/test_formatting.py proves with
# hypothesis that this gives exactly what the renderer gives.
_PLAIN: Final = re.compile(
    r"(?! |[-+](?: |\Z)|\d+[.)](?: |\Z))"
    r"(?:[^*\\\[\]_&<./:@]++"
    r"|\.(?![^\W\d_]{2})"
    r"|:(?!/)"
    r"|/(?!/)"
    r"|(?<=[^\W_])_(?=[^\W_])"
    r"|(?<![^ (])@"
    r"|&(?![#\w]*;)"
    r"|<(?![^\W\d_])"
    r")++(?<! )"
)


def shown_as_written(body: str) -> bool:
    """Whether the body is one line that Markdown and linkify leave as it
    is (`_PLAIN`): `render`'s fast path, and its own search text."""
    return body.isprintable() and _PLAIN.fullmatch(body) is not None


def render(body: str) -> str:
    """The HTML of a message body; safe to insert into a page as is."""
    if shown_as_written(body):
        escaped = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"<p>{escaped}</p>"
    return render_markdown(body)


def render_markdown(body: str) -> str:
    """`render` through both layers, whatever the body (the fast path's reference)."""
    cleaned: str = _cleaner.clean(_markdown.render(body))
    return cleaned.rstrip("\n")


def searchable(body: str) -> str:
    """What search looks in: the words as shown (`plain_text`: no Markdown
    marks, escapes as their characters, lines joined), so "uniform policy"
    finds "is there a **uniform** policy"; and, on a line of its own when
    it differs, the body as written, so a pasted `**` or a link's address
    still finds it. A body with no Markdown is shown as written (`render`'s
    fast path) and is its own text, and one that differs from its words
    only in spacing or line breaks is stored once."""
    if shown_as_written(body):
        return body
    shown = plain_text(body)
    return shown if shown == " ".join(body.split()) else f"{shown}\n{body}"


def plain_text(body: str, *, for_email: bool = False) -> str:
    """The words of a body without formatting, on one line: for previews, emails and search.

    Walks the parse tree rather than stripping tags from `render`'s output,
    so escapes and entities come out as the characters they stand for and
    the result is text, not HTML (templates escape it like any other text).

    `for_email`: in an email a link's words alone take nobody anywhere, so
    a link whose words are not its address is followed by the address in
    brackets ("book a slot (https://cal.example/x)"), which mail clients
    link; a link that shows its address (a bare URL, `<…>`, words that are
    the address) is left as it is. And a list's items, which on one line
    would run together ("passport certificates two references"), keep
    their marks: "Bring: • passport • two references", "1. call 2. visit".
    """
    parts: list[str] = []
    for token in _markdown.parse(body):
        if for_email and token.type == "list_item_open":
            bullet = token.markup in ("-", "*", "+")
            parts.append(" \N{BULLET} " if bullet else f" {token.info}{token.markup} ")
            continue
        if token.type != "inline":
            parts.append(" ")
            continue
        href: str | None = None
        words: list[str] = []
        for child in token.children or ():
            if child.type == "text":
                parts.append(child.content)
                words.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append(" ")
                words.append(" ")
            elif for_email and child.type == "link_open" and child.info != "auto":
                # Written as `[words](address)`; a bare URL or `<…>` that
                # markdown-it linked ("auto") shows its address already.
                href, words = str(child.attrGet("href") or ""), []
            elif child.type == "link_close" and href is not None:
                parts.append(_address_after(" ".join("".join(words).split()), href))
                href = None
    return " ".join("".join(parts).split())


def _address_after(shown: str, href: str) -> str:
    """What follows a link's words in an email: its address, unless the
    words already are that address."""
    address = href.removeprefix("mailto:")
    bare = address.split("://", 1)[-1]
    if address and shown not in (href, address, bare, bare.rstrip("/")):
        return f" ({address})"
    return ""


def preview(body: str, limit: int = 140, *, for_email: bool = False) -> str:
    """`plain_text` of about `limit` characters, cut between words and marked with "…".
    `for_email` is `plain_text`'s (an email's previews: links written with
    words show where they go, list items keep their marks).

    A cut never falls inside a link: a mail client would still make the
    cut words a link, one that goes somewhere else. A link the limit falls
    in is kept whole, so the preview runs over by the rest of it, unless
    it is longer than PREVIEW_LINK_CHARS: then it is left out. A kept link
    is followed by " …", not "…", which linkifiers take as part of it.
    Only a word that looks like no link is ever cut inside (one word longer
    than the whole preview).
    """
    if limit < 1:
        raise ValueError("preview limit must be at least one character")
    text = plain_text(body, for_email=for_email)
    if len(text) <= limit:
        return text
    cut = limit - len(ELLIPSIS)
    # plain_text separates words with exactly one " ".
    start = text.rfind(" ", 0, cut + 1) + 1
    end = text.find(" ", cut)
    end = len(text) if end < 0 else end
    if start > cut:  # the limit falls on a space: no word is cut
        kept = text[:cut]
    elif _looks_like_link(text[start:end]):
        if end - start > PREVIEW_LINK_CHARS:
            kept = text[:start]
        elif end == len(text):
            return text
        else:
            kept = text[:end]
    elif start > 0 or _looks_like_link(text[:cut]):
        kept = text[:start]
    else:
        kept = text[:cut]
    kept = kept.rstrip()
    last_word = kept.rpartition(" ")[2]
    return kept + (f" {ELLIPSIS}" if last_word and _looks_like_link(last_word) else ELLIPSIS)


def _looks_like_link(word: str) -> bool:
    """Whether a mail client may make (part of) a word a link: a URL with a
    scheme, `www.…`, a bare domain or an e-mail address, as linkify-it
    finds them with its fuzzy matching on (more than the chat links)."""
    return "://" in word or bool(_mail_linkify.test(word))
