"""The README, the Procfile and the settings agree on the defaults an
operator reads in more than one place."""

from __future__ import annotations

import re

from chatserver.settings import Settings
from tests.e2e.servers import REPO


def _readme_default(variable: str) -> str:
    readme = (REPO / "README.md").read_text()
    row = re.search(rf"^\| `{variable}` \| ([^|]+) \|", readme, re.M)
    assert row, f"README's configuration table has no row for {variable}"
    return row.group(1).strip().strip("`")


def test_procfile_readme_and_settings_agree_on_the_number_of_web_workers() -> None:
    procfile = (REPO / "Procfile").read_text()
    default = re.search(r"\$\{WEB_CONCURRENCY:-(\d+)\}", procfile)
    assert default, procfile
    assert default.group(1) == _readme_default("WEB_CONCURRENCY")
    assert int(default.group(1)) == Settings.from_env({}).workers


def test_the_procfile_has_the_four_processes() -> None:
    lines = dict(
        line.split(":", 1) for line in (REPO / "Procfile").read_text().splitlines() if line
    )
    assert lines["release"].strip() == "chatserver migrate"
    assert lines["web"].strip().startswith("chatserver serve ")
    assert lines["notifier"].strip() == "chatserver notifier"
    # Its port is CHAT_MAIL_IN_PORT, read like every other setting.
    assert lines["mail"].strip() == "chatserver mail-in --host 0.0.0.0"
    assert len(lines) == 4


def test_every_setting_has_a_readme_row() -> None:
    from chatserver.settings import ENV_NAMES

    readme = (REPO / "README.md").read_text()
    for variable in ENV_NAMES.values():
        if variable.startswith("--"):
            continue
        assert f"`{variable}`" in readme, f"README does not document {variable}"
