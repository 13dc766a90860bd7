"""Fixtures of the security tests: a server with every front end on (see fixtures.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.fixtures import Full, full_server


@pytest.fixture
async def full(start_server: Any, tmp_path: Path) -> AsyncIterator[Full]:
    async with full_server(start_server, tmp_path) as handle:
        yield handle
