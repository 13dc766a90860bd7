"""Small helpers shared by the worker's tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = stat.rsplit(")", 1)[1].split()[0]
    return state in ("Z", "X")


async def wait_for(condition: Callable[[], bool]) -> None:
    """Wait for a condition only the operating system can tell (a process dying).

    Callers hold a ``trio.fail_after``; this checks every 10 ms.
    """
    while not condition():
        await trio.sleep(0.01)


Handler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]


async def serve_http(handler: Handler, *, task_status: trio.TaskStatus[int]) -> None:
    """A minimal HTTP/1.1 server on 127.0.0.1 (one request per connection).

    ``handler(method, path, body)`` returns (status, JSON body). ``task_status`` gets
    the port. For tests that need a real socket (the CLI runs in a subprocess).
    """
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def connection(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                body += chunk
            status, payload = await handler(method, target.split("?")[0], body)
            await stream.send_all(
                f"HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )

    task_status.started(port)
    await trio.serve_listeners(connection, listeners)
