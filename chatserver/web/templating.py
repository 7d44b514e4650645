"""Jinja2 pages from `templates/`, with the settings every page needs.

`static/` and `templates/` live at the top of the repository and are linked
into the package (`chatserver/static`, `chatserver/templates` are symlinks),
so the wheel carries them as package data and they are found through the
installed package, in a checkout and in site-packages alike.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

# The installed package's folder: it holds `static/` and `templates/`.
ROOT = Path(str(files("chatserver")))
STATIC_DIR = ROOT / "static"
TEMPLATES_DIR = ROOT / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def render_page(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code)
