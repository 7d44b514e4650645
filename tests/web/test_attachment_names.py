"""Attachment names: people's real file names survive an upload (quotes,
apostrophes, commas, "&", "%", "#", emoji, any script), and only what could
hurt is removed: directories, control characters, bidi overrides and
isolates, leading dots, and length past 200 characters (the extension is
kept). A browser's `%22`, `%0A` and `%0D` in a multipart file name are
decoded, nothing else. The download's Content-Disposition carries any
stored name exactly (`filename*`, UTF-8) with an ASCII `filename` beside it,
and no name can break the header.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chatserver.chat.uploads import (
    EXTENSIONS,
    JPEG,
    NAME_MAX,
    PDF,
    PNG,
    TEXT,
    UNSENT_WINDOW,
    clean_name,
    form_file_name,
)
from chatserver.web.attachments import content_disposition
from tests.chat.sends import chat_of
from tests.conftest import Scene
from tests.web.test_attachments import jpeg, pdf, png, raw_upload

BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
# Characters that make names hard: separators, quotes, the header's own
# punctuation, controls, bidi controls, combining marks, emoji, other scripts.
AWKWARD = list("/\\.\"'%;=,&#:*?<>| \t\r\n\x00\x1b\x7f\x85\u00a0\u0301\u200d\ufeff")
AWKWARD += sorted(BIDI_CONTROLS) + list("éß履歴書Ωאב🎓👩🏽‍💻\uff0e\uff0f\uff1a\uff3c")
EXAMPLES = 40

# What the person's computer calls the file → what the server keeps, for a
# name as Chromium sends it.
REAL_NAMES = {
    'CV "final" 100% v2.pdf': 'CV "final" 100% v2.pdf',
    "O'Brien, CV & cover (final).pdf": "O'Brien, CV & cover (final).pdf",
    "Lebenslauf_Müller_履歴書_🎓.jpg": "Lebenslauf_Müller_履歴書_🎓.jpg",
    "#1 offer; 50% = 100%.pdf": "#1 offer; 50% = 100%.pdf",
    "a%41b %2F c.pdf": "a%41b %2F c.pdf",  # no other percent-decoding
    "cv\u202efdp.exe.pdf": "cvfdp.exe.pdf",
    "x\u2066y\u2069\u202a.pdf": "xy.pdf",
    "../../etc/passwd.pdf": "passwd.pdf",
    "C:\\Users\\me\\cv.pdf": "cv.pdf",
    ".hidden.pdf": "hidden.pdf",
    "...": "attachment.pdf",
    "evil\r\nSet-Cookie: x=1.pdf": "evilSet-Cookie: x=1.pdf",
    "tab\tand\x01\x7f\x9bcontrols.pdf": "tabandcontrols.pdf",
    "photo.png": "photo.png.pdf",  # the extension follows the type
    "REPORT.PDF": "REPORT.PDF",
    "e\u0301te\u0301.pdf": "été.pdf",  # NFC
    "x" * 300 + ".pdf": "x" * 196 + ".pdf",
    "é" * 250 + ".pdf": "é" * 196 + ".pdf",
}


def browser_form_name(name: str) -> bytes:
    """The file name as a browser writes it into a multipart body."""
    escaped = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.encode()


def names(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.text(st.one_of(st.sampled_from(AWKWARD), alphabet), max_size=260)


def collect(strategy: st.SearchStrategy[str], count: int) -> list[str]:
    drawn: list[str] = []

    @hypothesis_settings(max_examples=count, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(name: str) -> None:
        drawn.append(name)

    draw()
    return drawn


def assert_safe(name: str, content_type: str) -> None:
    assert 0 < len(name) <= NAME_MAX, name
    assert not set(name) & {"/", "\\"}, name
    assert not name.startswith("."), name
    assert name == name.strip(), name
    assert unicodedata.is_normalized("NFC", name), name
    for c in name:
        assert unicodedata.category(c) not in {"Cc", "Cs"}, name
        assert c not in BIDI_CONTROLS, name
    assert name.lower().endswith(EXTENSIONS[content_type]), name


def disposition_shape(header: str) -> tuple[str, str, str]:
    """(disposition, ASCII filename, exact name) from a header, checked
    against the RFC 6266 grammar the server promises."""
    assert re.fullmatch(r"[ -~]*", header), header  # ASCII, no CR or LF
    shape = re.fullmatch(
        r"(attachment|inline); filename=\"([^\"\\%]*)\""
        r"(?:; filename\*=UTF-8''([A-Za-z0-9!#$&+\-.^_`|~%]*))?",
        header,
    )
    assert shape is not None, header
    disposition, ascii_name, encoded = shape.groups()
    exact = ascii_name if encoded is None else unquote(encoded, errors="strict")
    # A client that saves under the ASCII name gets no path, drive or
    # hidden file from it.
    assert not set(ascii_name) & set("/\\:;"), header
    assert not ascii_name.startswith("."), header
    return disposition, ascii_name, exact


def parsed_disposition(header: str) -> tuple[str, str, str]:
    """`disposition_shape`, and the exact name is what Python's email parser
    reads from `filename*` (which browsers prefer to `filename`)."""
    disposition, ascii_name, exact = disposition_shape(header)
    if "filename*=" in header:
        header = re.sub(r'; filename="[^"]*"', "", header)
    message = email.message_from_string(
        f"Content-Disposition: {header}\n\n", policy=email.policy.default
    )
    assert message["content-disposition"].params["filename"] == exact, header
    return disposition, ascii_name, exact


def test_full_width_dots_and_slashes_make_no_path_of_the_ascii_name() -> None:
    """NFKD turns them into ASCII dots and slashes: the stand-in for
    clients that read `filename` only must not be `../../.bashrc.txt`."""
    for sent, ascii_name in (
        # Full-width: dot U+FF0E, slash U+FF0F, colon U+FF1A.
        (
            "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc\uff0fcron.d\uff0fevil.txt",
            "___.._etc_cron.d_evil.txt",
        ),
        ("\uff0e\uff0e\uff0f\uff0e\uff0e\uff0f\uff0ebashrc.txt", "___.._.bashrc.txt"),
        ("a\uff1ab.txt", "a_b.txt"),
    ):
        kept = clean_name(sent, TEXT)
        assert kept == unicodedata.normalize("NFC", sent)
        assert disposition_shape(content_disposition("attachment", kept)) == (
            "attachment",
            ascii_name,
            kept,
        )


def test_real_names_survive_and_only_what_hurts_is_removed() -> None:
    for sent, kept in REAL_NAMES.items():
        content_type = JPEG if sent.endswith(".jpg") else PDF
        assert clean_name(sent, content_type) == kept, sent
        assert clean_name(form_file_name(browser_form_name(sent).decode()), content_type) == kept


def test_only_the_browser_escapes_are_decoded() -> None:
    assert form_file_name("CV %22final%22 100% v2.pdf") == 'CV "final" 100% v2.pdf'
    assert form_file_name("a%0D%0Ab%0d%0a.txt") == "a\r\nb\r\n.txt"
    assert form_file_name("100%.pdf %41 %2F %25 %2522") == "100%.pdf %41 %2F %25 %2522"


@hypothesis_settings(max_examples=500, deadline=None)
@given(
    names(st.characters()),
    st.sampled_from(sorted(EXTENSIONS)),
)
def test_any_name_in_gives_a_safe_name_out(name: str, content_type: str) -> None:
    cleaned = clean_name(name, content_type)
    assert_safe(cleaned, content_type)
    assert clean_name(cleaned, content_type) == cleaned
    # What is left of a plain name is the name.
    plain = "".join(c for c in name if c.isalnum() or c in " ,'&%#()")[:100].strip()
    if plain and content_type == TEXT:
        assert clean_name(plain + ".txt", TEXT) == unicodedata.normalize("NFC", plain) + ".txt"


@hypothesis_settings(max_examples=500, deadline=None)
@given(names(st.characters(exclude_categories=["Cs"])), st.sampled_from([PDF, PNG, TEXT]))
def test_the_download_header_carries_any_name_exactly(name: str, content_type: str) -> None:
    cleaned = clean_name(name, content_type)
    for disposition in ("attachment", "inline"):
        header = content_disposition(disposition, cleaned)
        got, ascii_name, exact = parsed_disposition(header)
        assert (got, exact) == (disposition, cleaned)
        assert ascii_name.endswith(EXTENSIONS[content_type]), header
    # Even a name that was never cleaned cannot break the header.
    assert disposition_shape(content_disposition("attachment", name))[::2] == ("attachment", name)


async def test_uploaded_names_are_kept_and_download_under_their_name(
    scene: Scene, app: Any
) -> None:
    chat = chat_of(app)
    start = chat.clock
    sent = list(REAL_NAMES)
    sent += collect(names(st.characters(codec="utf-8", exclude_characters="\\")), EXAMPLES)
    try:
        for n, name in enumerate(sent):
            # A day apart, so that the bound on files not sent stays away.
            def later(shift: timedelta = n * (UNSENT_WINDOW + timedelta(minutes=1))) -> datetime:
                return start() + shift

            chat.clock = later
            content_type, data = (JPEG, jpeg()) if name.endswith(".jpg") else (PDF, pdf())
            response = await raw_upload(scene.cara, browser_form_name(name), data)
            assert response.status_code == 201, (name, response.text)
            stored = response.json()["name"]
            assert stored == clean_name(name, content_type), name
            assert REAL_NAMES.get(name, stored) == stored
            download = await scene.cara.client.get(f"/api/attachments/{response.json()['id']}")
            assert download.status_code == 200
            raw_header = download.headers.get_list("content-disposition")
            assert len(raw_header) == 1, raw_header
            assert parsed_disposition(raw_header[0])[::2] == ("attachment", stored)
            assert "set-cookie" not in {k.lower() for k in download.headers}
    finally:
        chat.clock = start


async def test_an_image_and_its_thumbnail_download_under_its_name(scene: Scene) -> None:
    name = 'Ünïcode "pic" 🎓.png'
    response = await raw_upload(scene.cara, browser_form_name(name), png())
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
    url = f"/api/attachments/{response.json()['id']}"
    download = await scene.cara.client.get(url)
    assert parsed_disposition(download.headers["content-disposition"]) == (
        "attachment",
        "Unicode _pic_ _.png",
        name,
    )
    thumbnail = await scene.cara.client.get(f"{url}/thumbnail")
    assert thumbnail.status_code == 200
    assert parsed_disposition(thumbnail.headers["content-disposition"]) == (
        "inline",
        "Unicode _pic_ _-thumbnail.png",
        'Ünïcode "pic" 🎓-thumbnail.png',
    )
