"""Search folding: the one function that makes "chloe" find "Chloé".

Search compares folded text with folded text. The folded forms of candidate
names, job titles and message bodies are stored next to the originals
(`candidates.search_name`, `jobs.search_title`, `messages.search_body`),
written by the same Python function that folds the query. So SQLite and
PostgreSQL give the same answer by construction (neither database's own
`lower()` or `unaccent` rules are involved), and the query is a plain
`LIKE` on a column: no function call per row while an organisation's
thousands of conversations are searched (docs/api.md, "Search").

Folding is: compatibility decomposition (NFKD, so "ﬁ" is "fi" and a
precomposed "é" is "e" plus an accent), Unicode case folding (so "Straße"
and "STRASSE" meet), dropping the combining marks, and mapping the few
Latin letters whose stroke or ligature is not a combining mark ("ł", "ø",
"æ", …) to their base letters.
"""

from __future__ import annotations

import unicodedata

# Letters that NFKD leaves alone but that people type without the stroke.
_BASE_LETTERS = str.maketrans(
    {
        "æ": "ae",
        "œ": "oe",
        "ø": "o",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ħ": "h",
        "ŧ": "t",
        "\u0131": "i",  # dotless i
    }
)


def fold(text: str) -> str:
    """`text` without case or accents, for substring search."""
    if text.isascii():
        # Nearly every body is ASCII: this is the send path's whole cost.
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    # Case folding can produce new combining marks ("İ" → "i" + dot above).
    folded = unicodedata.normalize("NFKD", decomposed.casefold())
    bare = "".join(c for c in folded if not unicodedata.combining(c))
    return bare.translate(_BASE_LETTERS)


def contains_pattern(folded_query: str) -> str:
    """A LIKE pattern (escape character backslash) matching text that
    contains `folded_query` literally: `%` and `_` in it are not wildcards."""
    escaped = folded_query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
