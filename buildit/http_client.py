"""The one place outbound HTTP clients are built (GitHub, Telegram, the worker).

Each takes an optional ``httpx`` transport so tests can pass
``httpx.MockTransport(handler)``; otherwise clients talk real HTTP (in tests, to fake
servers on 127.0.0.1).
"""

from __future__ import annotations

import httpx

from buildit import __version__

USER_AGENT = f"BuildIt/{__version__} (+https://github.com/AOSC-Dev/buildit)"


def make_client(
    *,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=10.0),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        follow_redirects=False,
    )
