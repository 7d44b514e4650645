"""Reading settings from environment variables: one reader per kind of value.

Each setting names its variable and its reader next to its default
(`setting()` in chatserver/settings.py), so a variable's name, its default
and how it is read are written once. A value that cannot be read raises
`SettingsError` naming the variable, never a bare ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field, field, fields
from pathlib import Path
from typing import Any

# How a setting's value is read: from the environment, the variable's name and
# the default used when it is unset (or blank, for numbers and choices).
Reader = Callable[[Mapping[str, str], str, Any], Any]

# The keys of a setting's dataclass field metadata.
ENV = "env"
READ = "read"


class SettingsError(Exception):
    """Configuration that the service must refuse to start with.

    The message is one line that names the setting and says how to fix it:
    the CLI prints it as is and exits non-zero.
    """


def setting(name: str, default: Any, read: Reader | None = None) -> Any:
    """A settings field read from variable `name` by `read`; without a reader
    `name` only labels it in `chatserver check` (a command-line flag)."""
    return field(default=default, metadata={ENV: name, READ: read})


def env_names(owner: Any) -> dict[str, str]:
    """The variable (or flag) of each setting that has one, by field name."""
    return {item.name: item.metadata[ENV] for item in fields(owner) if ENV in item.metadata}


def read_fields(
    owner: Any, env: Mapping[str, str], defaults: Mapping[str, object]
) -> dict[str, Any]:
    """Every setting of `owner` that has a reader, read from `env`; `defaults`
    replaces the field's default where it depends on another value."""
    values = {}
    for item in fields(owner):
        read = item.metadata.get(READ)
        if read is not None:
            values[item.name] = read(env, item.metadata[ENV], _default(item, defaults))
    return values


def _default(item: Field[Any], defaults: Mapping[str, object]) -> object:
    return defaults.get(item.name, item.default)


def text(env: Mapping[str, str], name: str, default: str) -> str:
    """A string with surrounding blanks dropped (a URL, a domain)."""
    return env.get(name, default).strip()


def verbatim(env: Mapping[str, str], name: str, default: str) -> str:
    """A string taken as written: a prefix or a From header may end in a blank."""
    return env.get(name, default)


def lower(env: Mapping[str, str], name: str, default: str) -> str:
    """A domain name, which is not case-sensitive."""
    return text(env, name, default).lower()


def base_url(env: Mapping[str, str], name: str, default: str) -> str:
    """A URL to which paths are appended, without its trailing slash; empty
    when unset, so the caller can follow the listen address instead."""
    return env.get(name, "").strip().rstrip("/")


def directory(env: Mapping[str, str], name: str, default: Path) -> Path:
    return Path(env.get(name, str(default)))


def split_list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; unset is the default, set but blank is empty."""
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def keys(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of keys, the default when none is set. A `;` is
    refused: it is the usual slip for a comma, and taking "a;b" as one key
    would silently accept neither."""
    found = split_list(env, name, ())
    if any(";" in key for key in found):
        raise SettingsError(
            f"{name} contains ';': separate keys with commas ({name}=first-key,second-key)."
        )
    return found or default


def number(env: Mapping[str, str], name: str, default: int | float) -> Any:
    """A whole number or a number, as the default is; blank is the default."""
    kind = type(default)
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    # Only the blanks a shell or an env file leaves: str.strip() would also
    # drop control characters ("0\x1f" read as 0) that int() and float() refuse.
    raw = env.get(name, "").strip(" \t\r\n")
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(
            f"{name} must be {what}, not {raw!r}: set {name}={shown} or leave it unset."
        ) from None


def choice(choices: tuple[str, ...]) -> Reader:
    """A reader of one of `choices`, in any case; blank is the default."""

    def read(env: Mapping[str, str], name: str, default: str) -> str:
        raw = env.get(name, default).strip().lower() or default
        if raw not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {raw!r}.")
        return raw

    return read
