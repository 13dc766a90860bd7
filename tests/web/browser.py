"""Playwright (asyncio) driven from trio tests, through a helper thread.

Why a thread and not ``trio_asyncio.aio_as_trio``: Playwright starts its node driver
as an asyncio subprocess and runs fire-and-forget asyncio tasks; on the trio-asyncio
loop that also carries the server's asyncpg pool, an unhandled error in one of them
would tear the whole loop down (see DESIGN.md), and subprocess support of that loop is
not something to rely on. So Chromium is driven from its own asyncio loop on a
daemon thread; a trio test hands it coroutines with ``await browser(coro)``, which
waits in a worker thread and cancels the coroutine when the test's deadline passes.

Playwright objects are only *used* on that loop; creating a coroutine (calling an
async method) or a locator on the trio side does no I/O.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def find_chromium() -> str:
    """The system Chromium; installed with scripts/install-browser when root, else skip."""
    found = shutil.which("chromium") or ("/usr/bin/chromium"
                                         if os.path.exists("/usr/bin/chromium") else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium is not installed and this is not root with apt-get: "
                    "run scripts/install-browser as root to enable the browser tests")
    result = subprocess.run([str(ROOT / "scripts" / "install-browser")], capture_output=True,
                            text=True, timeout=900, check=False)
    found = shutil.which("chromium")
    if result.returncode != 0 or not found:
        pytest.skip(f"scripts/install-browser could not install Chromium: {result.stderr[-500:]}")
    return found


class Browser:
    """A Chromium on an asyncio loop of its own thread."""

    def __init__(self, executable: str) -> None:
        ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop
        self.thread = threading.Thread(target=self._run_loop, args=(ready,), name="playwright",
                                       daemon=True)
        self.thread.start()
        if not ready.wait(30):
            raise RuntimeError("the browser's event loop did not start")

        async def boot() -> tuple[Any, Any]:
            # on the loop's thread: Playwright binds its connection to the thread (greenlet)
            # that creates it
            from playwright.async_api import async_playwright

            playwright = await async_playwright().start()
            chromium = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000)
            return playwright, chromium

        self.playwright, self.chromium = self._sync(boot(), timeout=90)
        self.contexts: list[Any] = []

    def _run_loop(self, ready: threading.Event) -> None:
        # trio_asyncio installs a policy whose loops belong to trio; a policy set in a
        # thread stays that thread's (trio_asyncio makes it thread-local), so this
        # thread gets a plain asyncio loop and child watcher for Playwright's driver.
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def _sync(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the browser's loop; cancelled with the calling trio task."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        finally:
            future.cancel()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run a synchronous Playwright call (``page.on``...) on the browser's loop."""

        async def wrapper() -> T:
            return fn()

        return await self(wrapper())

    async def new_page(self, *, mobile: bool = False) -> Any:
        viewport = {"width": 390, "height": 844} if mobile else {"width": 1280, "height": 900}

        async def open_page() -> Any:
            context = await self.chromium.new_context(
                viewport=viewport, device_scale_factor=1, locale="en-US",
                is_mobile=mobile, has_touch=mobile)
            context.set_default_timeout(15_000)
            self.contexts.append(context)
            return await context.new_page()

        return await self(open_page())

    async def close_contexts(self) -> None:
        """Close every page of the test (their event streams with them)."""

        async def close_all() -> None:
            while self.contexts:
                await self.contexts.pop().close()

        with trio.move_on_after(10, shield=True):
            await self(close_all())

    def close(self) -> None:
        try:
            self._sync(self.chromium.close(), timeout=30)
            self._sync(self.playwright.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="session")
def chromium_session() -> Iterator[Browser]:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    chromium = Browser(find_chromium())
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
async def browser(chromium_session: Browser) -> AsyncIterator[Browser]:
    """The session's Chromium; the pages a test opened are closed after it."""
    try:
        yield chromium_session
    finally:
        await chromium_session.close_contexts()
