"""The installed wheel, built once per run for the packaging test and the
production walk-through."""

from __future__ import annotations

import pytest

from tests.ops.wheel import Installed, build_and_install


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return build_and_install(tmp_path_factory.mktemp("wheel"))
