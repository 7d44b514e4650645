"""The one name for a JSON object as the wire and the host API carry it.

Kept outside the layers (like `roles.py`) so that every layer can say
`JSON` without importing a layer above it."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
