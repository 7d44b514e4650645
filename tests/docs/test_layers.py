"""Dependencies point down (docs/architecture.md): transport (web over
realtime) on the domain (notify over chat) on operations' instruments, on
storage and broker. No module of a layer imports one of a layer above it.
The package's top-level modules (settings, errors, roles, clock, logs) are
foundations everyone may import; app, cli, demo, asgi and mail_in compose
the layers and are outside this rule."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.e2e.servers import REPO

PACKAGE = REPO / "chatserver"
LAYERS = {"store": 0, "broker": 0, "ops": 1, "chat": 2, "notify": 3, "realtime": 4, "web": 5}


def upward_imports(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if len(parts) < 2 or parts[0] not in LAYERS:
            continue
        level = LAYERS[parts[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chatserver."):
                target = (node.module or "").split(".")[1]
                if LAYERS.get(target, -1) > level:
                    found.append(f"{path.relative_to(package)} imports {node.module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    named = alias.name.split(".")
                    target = named[1] if named[0] == "chatserver" and len(named) > 1 else ""
                    if LAYERS.get(target, -1) > level:
                        found.append(f"{path.relative_to(package)} imports {alias.name}")
    return found


def test_no_module_imports_a_layer_above_it() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: a store module importing the web layer is found,
    one importing the broker (same layer) is not."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "rows.py").write_text(
        "from chatserver.broker import base\nimport chatserver.web.ws\n"
    )
    assert upward_imports(tmp_path) == ["store/rows.py imports chatserver.web.ws"]
