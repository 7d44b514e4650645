"""SPEC 2: a Markdown subset, rendered server-side, sanitised with an allowlist.

Safety is checked by parsing the output the way a browser tokenises it and
asserting that every tag and attribute is on the allowlist and every link is
http, https or mailto with `target` and `rel` set. The allowlist is written
out here again on purpose rather than imported from the module under test.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from chatserver.chat import formatting
from chatserver.chat.formatting import (
    PREVIEW_LINK_CHARS,
    plain_text,
    preview,
    render,
    render_markdown,
    searchable,
)

TAGS = {"p", "br", "strong", "em", "ul", "ol", "li", "a"}
SAFE_SCHEMES = ("http://", "https://", "mailto:")
REL = "noopener noreferrer nofollow"


class _Audit(HTMLParser):
    """Collects every tag and attribute; anything outside the allowlist fails."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._check(tag, dict(attrs), len(attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in TAGS:
            self.problems.append(f"end tag {tag}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.problems.append(f"unknown declaration {data!r}")

    def _check(self, tag: str, attrs: dict[str, str | None], count: int) -> None:
        if tag not in TAGS:
            self.problems.append(f"tag {tag}")
        if count != len(attrs):
            self.problems.append(f"duplicate attribute on {tag}")
        if tag == "a":
            self._check_link(attrs)
        elif tag == "ol":
            if set(attrs) - {"start"} or not (attrs.get("start") or "1").isdigit():
                self.problems.append(f"ol attributes {attrs}")
        elif attrs:
            self.problems.append(f"attributes on {tag}: {attrs}")

    def _check_link(self, attrs: dict[str, str | None]) -> None:
        if set(attrs) != {"href", "target", "rel"}:
            self.problems.append(f"link attributes {attrs}")
        href = attrs.get("href") or ""
        if not href.lower().startswith(SAFE_SCHEMES) or any(ord(c) < 33 for c in href):
            self.problems.append(f"href {href!r}")
        if attrs.get("target") != "_blank" or attrs.get("rel") != REL:
            self.problems.append(f"link target/rel {attrs}")


def audit(output: str) -> _Audit:
    parser = _Audit()
    parser.feed(output)
    parser.close()
    assert parser.problems == [], output
    return parser


class _LinkTexts(HTMLParser):
    """Each link's href with the words a reader sees on it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._open: list[str] | None = None
        self._href = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._href = [], dict(attrs).get("href") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.found.append((self._href, "".join(self._open)))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)


def link_texts(output: str) -> list[tuple[str, str]]:
    parser = _LinkTexts()
    parser.feed(output)
    parser.close()
    return parser.found


def links(output: str) -> list[str]:
    return [attrs["href"] or "" for tag, attrs in audit(output).tags if tag == "a"]


def tags(output: str) -> list[str]:
    return [tag for tag, _ in audit(output).tags]


# ---- what users can write ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("plain words", "<p>plain words</p>"),
        ("**bold** and __bold__", "<p><strong>bold</strong> and <strong>bold</strong></p>"),
        ("*italic* and _italic_", "<p><em>italic</em> and <em>italic</em></p>"),
        ("***both***", "<p><em><strong>both</strong></em></p>"),
        (
            "**bold with *italic* inside**",
            "<p><strong>bold with <em>italic</em> inside</strong></p>",
        ),
        ("line one\nline two", "<p>line one<br>\nline two</p>"),
        ("para one\n\npara two", "<p>para one</p>\n<p>para two</p>"),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
        ("* one\n+ two", "<ul>\n<li>one</li>\n</ul>\n<ul>\n<li>two</li>\n</ul>"),
        ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>"),
        ("3) three\n4) four", '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>'),
        ("\\*not italic\\*", "<p>*not italic*</p>"),
        ("fish &amp; chips & peas", "<p>fish &amp; chips &amp; peas</p>"),
        ("", ""),
        ("   \n\n  ", ""),
    ],
)
def test_supported_constructs(body: str, expected: str) -> None:
    assert render(body) == expected
    audit(render(body))


def test_markdown_link_opens_in_a_new_tab_without_referrer() -> None:
    out = render("See [the job](https://example.com/jobs/1?a=1&b=2).")
    assert out == (
        '<p>See <a href="https://example.com/jobs/1?a=1&amp;b=2" target="_blank" '
        f'rel="{REL}">the job</a>.</p>'
    )


@pytest.mark.parametrize(
    ("body", "href"),
    [
        ("<https://example.com/x>", "https://example.com/x"),
        ("<http://example.com>", "http://example.com"),
        ("<jo@example.com>", "mailto:jo@example.com"),
        ("[mail me](mailto:jo@example.com)", "mailto:jo@example.com"),
        ("[caps](HTTPS://EXAMPLE.COM)", "HTTPS://EXAMPLE.COM"),
    ],
)
def test_allowed_links(body: str, href: str) -> None:
    assert links(render(body)) == [href]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "See https://example.org/school-info",
            [("https://example.org/school-info", "https://example.org/school-info")],
        ),
        ("Parking: www.example.org/map.", [("http://www.example.org/map", "www.example.org/map")]),
        ("Mail jo@example.com, please", [("mailto:jo@example.com", "jo@example.com")]),
        ("(https://example.org/a)", [("https://example.org/a", "https://example.org/a")]),
        ("**https://example.org**", [("https://example.org", "https://example.org")]),
        ("- https://example.org/one", [("https://example.org/one", "https://example.org/one")]),
        (
            "https://example.org/q?a=1&b=2#top!",
            [("https://example.org/q?a=1&b=2#top", "https://example.org/q?a=1&b=2#top")],
        ),
        (
            "[the map](https://example.org/map) or https://example.org/alt",
            [
                ("https://example.org/map", "the map"),
                ("https://example.org/alt", "https://example.org/alt"),
            ],
        ),
        # Shown as typed, never decoded to look-alike letters.
        ("xn--80ak6aa92e.com", [("http://xn--80ak6aa92e.com", "xn--80ak6aa92e.com")]),
        ("https://example.org/%41", [("https://example.org/%41", "https://example.org/%41")]),
    ],
)
def test_bare_urls_and_email_addresses_become_links(
    body: str, expected: list[tuple[str, str]]
) -> None:
    out = render(body)
    audit(out)
    assert link_texts(out) == expected


@pytest.mark.parametrize(
    "body",
    [
        "ftp://example.org/file",
        "javascript://example.org/%0aalert(1)",
        "//example.org/x",
        "file:///etc/passwd",
        "cv.pdf and notes.txt",
        "192.168.0.1",
        "https://exa%3Cmple.com/",
        "https://a%zz.example/",
        "prefixhttps://example.org",
        "user%jo@example.com",
        "\\https://example.org",
    ],
)
def test_what_is_not_a_safe_whole_url_is_not_linked(body: str) -> None:
    assert links(render(body)) == []


def test_a_linked_url_keeps_the_same_rel_target_and_sanitising() -> None:
    out = render("https://example.org/x")
    assert out == (
        '<p><a href="https://example.org/x" target="_blank" '
        f'rel="{REL}">https://example.org/x</a></p>'
    )


def test_bulleted_list_with_formatting_and_link_inside() -> None:
    out = render("Bring:\n\n- **ID**\n- your *CV*\n- [directions](https://example.com/map)")
    assert tags(out) == ["p", "ul", "li", "strong", "li", "em", "li", "a"]


def test_features_outside_the_subset_stay_text() -> None:
    out = render("# heading\n> quote\n`code`\n![img](https://example.com/a.png)\n---")
    assert tags(out) == ["p", "br", "br", "br", "a", "br"]
    assert "# heading" in out
    assert "&gt; quote" in out
    assert "`code`" in out


# ---- what attackers can write -----------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<svg onload="alert(1)"><circle r="1"/></svg>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<p style="background:url(javascript:alert(1))">styled</p>',
    '<a href="javascript:alert(1)">raw link</a>',
    '<a href="https://ok.example" onclick="alert(1)">raw ok link</a>',
    "<!-- comment --><b>bold</b>",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<?xml version='1.0'?>",
    "<!DOCTYPE html>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1)  )",
    "[click](<javascript:alert(1)>)",
    "[click](javascript&#58;alert(1))",
    "[click](javascript&colon;alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](java%0ascript:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox(1))",
    "[click](file:///etc/passwd)",
    "[click](//evil.example/x)",
    "[click](/logout)",
    '[click](https://ok.example "title" onmouseover="alert(1)")',
    '[click](https://ok.example" onmouseover="alert(1))',
    "[click](https://ok.example'><script>alert(1)</script>)",
    "[click](https://exa%3Cmple.com/)",
    "[click](<https://exa mple.com>)",
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "<vbscript:msgbox(1)>",
    "[![img](https://x.example/a.png)](javascript:alert(1))",
    "[a][ref]\n\n[ref]: javascript:alert(1)",
    "**unclosed *emphasis [link](https://ok.example",
    "</p></li></ul><script>alert(1)</script>",
    "<p <script>alert(1)</script>",
    "***a**b*c**d***e*" * 20,
    "*" * 500 + "nested" + "_" * 500,
    "- " * 200 + "deep",
    "".join("  " * i + "- level\n" for i in range(100)),
    "\x00<script>\x00alert(1)</script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "\u2028<script>\u2029",
    'https://ok.example/"onmouseover="alert(1)',
    "https://ok.example/'onmouseover='alert(1)",
    "https://ok.example/<script>alert(1)</script>",
    "www.ok.example/<img src=x onerror=alert(1)>",
    "jo@ok.example<script>alert(1)</script>",
    "mailto:jo@ok.example?subject=<script>alert(1)</script>",
    "javascript:alert(1)//https://ok.example",
    "https://ok.example@evil.example/",
    "https://ok.example/&#x6a;avascript:alert(1)",
    "https://ok.example/\u202eexe.pdf",
    "**https://ok.example/***",
    "[https://ok.example](javascript:alert(1))",
    "<https://ok.example/x> https://ok.example/y www.ok.example",
    "data:text/html,https://ok.example",
    "https://" * 2000,
    "a@b." * 3000,
    # Once crashed markdown-it-py's inline linkify rule (a URL of no length).
    "ple.com.[http://p://",
    "[http://p://",
    "x.y.[https://a://b](https://ok.example)",
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_input_renders_without_script_capable_output(body: str) -> None:
    out = render(body)
    audit(out)
    lowered = out.lower()
    # Attributes are policed by `audit`; words like "onerror" may remain as visible text.
    for needle in ("<script", "<img", "<svg", "<iframe", "<style", "<math", "<!--", "<!["):
        assert needle not in lowered


_NORMALIZE = MarkdownIt().normalizeLink


def goes_where_it_says(href: str, text: str) -> bool:
    """A link made from a bare URL or address (linkify, `<autolink>`): its
    target is its words, as markdown-it normalises an address."""
    return unquote(href) in {
        unquote(_NORMALIZE(words)) for words in (text, f"http://{text}", f"mailto:{text}")
    }


@pytest.mark.parametrize(
    "body",
    [b for b in HOSTILE if "(" in b or ":" in b],
)
def test_no_hostile_link_survives(body: str) -> None:
    # A bare URL in a hostile body is linked like any other, harmlessly: the
    # link goes exactly where its visible words say.
    for href, text in link_texts(render(body)):
        assert href.startswith(("https://ok.example", "https://x.example")) or goes_where_it_says(
            href, text
        ), (href, text)


def test_raw_html_is_shown_as_text() -> None:
    body = '<b onclick="x()">hi</b> <script>alert(1)</script>'
    out = render(body)
    assert tags(out) == ["p"]
    assert "".join(audit(out).text) == body


def test_a_disallowed_link_keeps_its_words_visible() -> None:
    assert render("[click](javascript:alert(1))") == "<p>[click](javascript:alert(1))</p>"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[words]()", "<p>words</p>"),
        ("[**bold** words]( )", "<p><strong>bold</strong> words</p>"),
        ("[]()", "<p></p>"),
        (
            "[](https://example.org/x)",
            '<p><a href="https://example.org/x" target="_blank" '
            f'rel="{REL}">https://example.org/x</a></p>',
        ),
        (
            "[a [b]()](https://example.org)",
            f'<p>[a b](<a href="https://example.org" target="_blank" rel="{REL}">'
            "https://example.org</a>)</p>",
        ),
    ],
)
def test_every_link_has_an_address_and_words(body: str, expected: str) -> None:
    assert render(body) == expected
    audit(render(body))


def test_a_link_with_an_unparseable_host_stays_text_rather_than_an_empty_anchor() -> None:
    assert render("[click](https://a%zz.example/)") == "<p>[click](https://a%zz.example/)</p>"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 20_000,
        "*a" * 10_000,
        "<" * 20_000,
        "_a_b" * 5_000,
        "[](" * 7_000,
        "&#" * 10_000,
        "x" * 200_000,
        "word\n" * 20_000,
    ],
    ids=["brackets", "stars", "angles", "underscores", "empty-links", "entities", "long", "lines"],
)
def test_huge_inputs_render_safely_and_quickly(body: str) -> None:
    started = time.perf_counter()
    out = render(body)
    elapsed = time.perf_counter() - started
    audit(out)
    assert elapsed < 5, f"{elapsed:.2f}s for {len(body)} characters"


ANY_TEXT = st.text(max_size=400)
# Markdown and HTML fragments glued together at random, to reach odd parser states.
MARKDOWNISH = st.lists(
    st.sampled_from(
        [
            *"*_[]()<>!&#;:/\\-+.1 \n\t\"'=%x",
            "javascript:",
            "http://",
            "https://",
            "mailto:",
            "<a href=",
            "onerror=",
            "<script>",
            "&#58;",
            "data:",
            "](",
            "**",
            "- ",
            "1. ",
            "\n\n",
            "www.",
            ".com",
            ".org/",
            "@",
            "jo@example.com",
            "xn--",
            "?a=1&b=2",
            "#",
        ]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, MARKDOWNISH))
def test_any_text_renders_to_allowlisted_html_only(body: str) -> None:
    audit(render(body))


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, MARKDOWNISH))
def test_plain_text_is_exactly_the_words_a_reader_sees(body: str) -> None:
    visible = "".join(audit(render(body)).text)
    assert " ".join(visible.split()) == plain_text(body)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, MARKDOWNISH).filter(lambda b: "[" not in b and "]" not in b))
def test_every_automatic_link_goes_where_its_words_say(body: str) -> None:
    """With no `[text](url)` in the body, every link is a bare URL, e-mail
    address or `<autolink>`, and its visible words are its address."""
    for href, text in link_texts(render(body)):
        assert goes_where_it_says(href, text), (href, text)


# ---- plain text and previews -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("**Hello** *there*", "Hello there"),
        ("line one\nline two\n\npara", "line one line two para"),
        ("- one\n- two\n\n1. three", "one two three"),
        (
            "See [the job](https://example.com/j) or <https://example.com>",
            "See the job or https://example.com",
        ),
        ("fish &amp; chips \\*not\\*", "fish & chips *not*"),
        ("<b>kept as typed</b>", "<b>kept as typed</b>"),
        ("  spaced\t\tout  \n ", "spaced out"),
        ("", ""),
    ],
)
def test_plain_text(body: str, expected: str) -> None:
    assert plain_text(body) == expected


@pytest.mark.parametrize(
    ("body", "limit", "expected"),
    [
        ("short message", 140, "short message"),
        ("exactly ten", 11, "exactly ten"),
        ("one two three four", 12, "one two…"),
        ("one two three four", 8, "one two…"),
        ("one two three four", 9, "one two…"),
        ("abcdefghijklmnop", 6, "abcde…"),
        ("**bold** words here", 12, "bold words…"),
        ("anything", 1, "…"),
    ],
)
def test_preview(body: str, limit: int, expected: str) -> None:
    assert preview(body, limit) == expected


def test_preview_default_limit_is_140_characters() -> None:
    out = preview("word " * 100)
    assert len(out) <= 140
    assert out.endswith("word…")


def test_preview_rejects_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        preview("x", 0)


@settings(max_examples=200, deadline=None)
@given(MARKDOWNISH | ANY_TEXT, st.integers(min_value=1, max_value=200))
def test_preview_is_a_bounded_prefix_of_the_plain_text(body: str, limit: int) -> None:
    text = plain_text(body)
    out = preview(body, limit)
    assert "\n" not in text
    assert "  " not in text
    if out != text:
        assert out.endswith("…")
        assert text.startswith(out.removesuffix("…"))
    if len(out) > limit:
        # Only by keeping a link whole (tests/notify/test_previews.py):
        # what it keeps ends where a word of the text ends.
        kept = out.removesuffix(" …")
        assert kept == text or text.startswith(kept + " ")
        assert len(kept.rpartition(" ")[2]) <= PREVIEW_LINK_CHARS


@pytest.mark.parametrize(("body", "expected"), [("[]()", "<p></p>"), ("[cv]()", "<p>cv</p>")])
def test_an_empty_link_destination_keeps_only_its_text(body: str, expected: str) -> None:
    """Found by the property test above: no `<a>` that goes nowhere."""
    assert render(body) == expected
    audit(render(body))


# The plain-body fast path of `render` (issue 10): an alphabet rich in what
# it must tell apart (letters of several scripts, digits, the punctuation it
# takes and the Markdown and linkify characters it must leave to the
# renderer), and any text at all.
NEAR_PLAIN = st.text(
    alphabet=st.sampled_from(
        list("abcXYZéßøЖж中あ0123456789 ,;!?'().:") + list('\t\n\r\u00a0\u2028*_-+#[]<>&@/\\`~|"=')
    ),
    max_size=40,
)


@settings(max_examples=3000)
@given(NEAR_PLAIN)
def test_the_plain_fast_path_renders_exactly_as_the_renderer(body: str) -> None:
    assert render(body) == render_markdown(body)


@settings(max_examples=1000)
@given(st.text(max_size=60))
def test_any_body_renders_as_the_renderer(body: str) -> None:
    assert render(body) == render_markdown(body)


@pytest.mark.parametrize(
    "body",
    ["Thanks, see you at 10: ok.", "Is it (really) ok?", "Ünïcödé text", "Hello. World"],
)
def test_common_chat_lines_take_the_fast_path(body: str) -> None:
    assert render(body) == f"<p>{body}</p>" == render_markdown(body)


# The widened fast path: times, numbers, `ts:123|…`, hyphens, slashes,
# `e.g.`, `@name`, `snake_case`, `R&D`, `<3`, non-ASCII punctuation and
# emoji. Fragments, not single characters, so that the shapes the fast path
# must refuse (a bare link needs `.` and a top-level domain; an e-mail
# address a name right before `@`; an entity `&…;`; a list item a marker at
# the start) come up often, next to every character it takes.
CHARACTERS = [
    # every ASCII character, printable or not
    *(chr(code) for code in range(128)),
    # non-ASCII: letters, digits, marks, punctuation, symbols, spaces, formats
    *"éßЖрф中あ٣²½\u0301\ufe0f“”—…«»¡¿·•°€。😀👍🏽❤",
    # (quotes, dash and look-alikes of `.`, `@`, `|`, `<`, `>`, `&`, `_`, `x`)
    *"\u2019\u2018\u2013\u00d7\uff0e\uff20\uff5c\uff1c\uff1e\uff06\uff3f",
    *"\u00a0\u2009\u3000\u2028\u200b\u200d\u00ad\ufeff\x85\ufffd",
]
WORDS = ["x", "ts", "e", "g", "co", "com", "org", "Co", "COM", "рф", "xn--p1ai", "www", "localhost"]
NUMBERS = ["1", "10", "30", "1733112000000", "192.168.0.1", "1.2.3.4"]
TRIGGERS = [
    *[" ", ".", ":", "@", "/", "_", "&", "<", ">", "-", "+", "*", "(", ")", ";", "#"],
    *["e.g.", ".com", ".co ", "a@b.co", "@a", "x@", "mailto:", "http://", "https:", "ftp:", "//"],
    *["&amp;", "&#65;", "&#x41;", "&copy;", "&x", "<a", "<https:", "<a@b.co>", "<3", "->"],
    *["1. ", "1) ", "12. ", "- ", "+ ", "* ", "  ", "\n", "\n\n", "\t", "_", "__", "\\", "[", "]"],
]
FAST_PATH_BODIES = st.lists(
    st.one_of(*(st.sampled_from(each) for each in (CHARACTERS, WORDS, NUMBERS, TRIGGERS))),
    max_size=12,
).map("".join)


@settings(max_examples=3000, deadline=None)
@given(FAST_PATH_BODIES)
def test_the_widened_fast_path_renders_exactly_as_the_renderer(body: str) -> None:
    assert render(body) == render_markdown(body)


def _shape(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


# Lines people type, each shape inside words and punctuation that may make a
# link, an address, an entity or a list of it.
CHAT_SHAPES = st.one_of(
    _shape(r"ts:[0-9]{1,13}\|x{0,40}"),
    _shape(r"[0-9]{1,2}:[0-9]{2}( ?[ap]\.?m\.?)?"),
    _shape(r"[a-z0-9]{1,4}(-[a-z0-9]{1,4}){1,3}"),
    _shape(r"[0-9]{1,10}[.)]( [a-z]{0,3})?"),
    _shape(r"[-+*]( [a-z]{0,3})?"),
    _shape(r"[a-z]{1,3}(\.[a-z0-9]{1,4}){0,2}\.(com|co|de|Io|рф|xn--p1ai|g|e|[a-z]{2})\.?"),
    _shape(
        r"(mailto:)?([a-z0-9.]{1,3}|\(|)@([a-z]{1,3}(\.[a-z]{1,3})?|[0-9]{1,3}(\.[0-9]{1,3}){3})"
    ),
    _shape(r"[a-z]{1,3}_[a-z]{0,3}_?"),
    _shape(r"[a-z0-9]{1,3}/[a-z0-9/]{0,4}"),
    _shape(r"&#?[a-z0-9]{0,5};?"),
    _shape(r"<(https?:|mailto:|ts:)?[a-z0-9@:/.]{0,6}>?"),
    _shape(r"[a-z]{1,6}:/{0,2}[a-z.]{0,6}"),
)
AROUND = st.sampled_from(
    ["", " ", "x", "1", ".", ":", "@", "(", ")", "_", "-", "/", "&", "<", "a b ", " c"]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(AROUND, CHAT_SHAPES, AROUND), min_size=1, max_size=3))
def test_chat_shapes_render_exactly_as_the_renderer(parts: list[tuple[str, str, str]]) -> None:
    body = " ".join("".join(part) for part in parts)
    assert render(body) == render_markdown(body)


@pytest.mark.parametrize(
    "body",
    [
        "ts:1733112000000|" + "x" * 40,
        "See you at 10:30, ok?",
        "Moved to 2024-12-03 14:00 - room 4/B (e.g. the big one).",
        "@alice I'm ~5 min late, 50% done; v2.1 works = +1 #team",
        "I\u2019m on it 👍 — back in 5…",
        "snake_case_name is R&D's x<3 y -> z",
        'She said "yes" (again)!',
    ],
)
def test_chat_lines_with_times_numbers_and_punctuation_skip_the_renderer(
    body: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = render_markdown(body)

    def not_called(text: str) -> str:
        raise AssertionError(f"{text!r} went through the full renderer")

    monkeypatch.setattr(formatting, "render_markdown", not_called)
    assert render(body) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, MARKDOWNISH))
def test_search_finds_a_body_by_the_words_shown_and_as_written(body: str) -> None:
    """`searchable` holds every word a reader sees (`plain_text`) and the
    body as written, unless that differs only in spacing; the two never
    run into each other."""
    searched = searchable(body)
    shown = plain_text(body)
    assert set(shown.split()) <= set(searched.split())
    assert searched in (body, shown, f"{shown}\n{body}")
    assert " ".join(searched.split()) == " ".join(body.split()) or searched.endswith(body)
