"""A minimal HTTP/1.1 client for load generation: keep-alive, no pipelining.

httpx costs far more per request than the server's own work on a small endpoint,
so the load generator would measure itself. This client sends pre-encoded requests
over plain trio sockets and parses only what the bench needs (status, body), with
``Content-Length`` or chunked bodies. One ``Connection`` carries one request at a
time; concurrency comes from many connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import trio


class HttpError(Exception):
    """The server closed the connection or answered something unparseable."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def encode_request(
    method: str,
    path: str,
    *,
    host: str,
    body: bytes | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of one request, to be sent as often as needed."""
    if json is not None:
        body = orjson.dumps(json)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body is not None:
        if json is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


class Connection:
    """One keep-alive connection. ``request`` = ``send`` then ``receive``."""

    def __init__(self, stream: trio.SocketStream, host: str, port: int) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._address = (host, port)
        # The server said ``Connection: close`` (hypercorn does after 1,000 requests on
        # one connection): the next request goes over a new one, as browsers do.
        self._closing = False
        self.reconnects = 0

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(await trio.open_tcp_stream(host, port), host, port)

    async def request(self, raw: bytes) -> Reply:
        await self.send(raw)
        return await self.receive()

    async def send(self, raw: bytes) -> None:
        if self._closing:
            await self._stream.aclose()
            self._stream = await trio.open_tcp_stream(*self._address)
            self._buf.clear()
            self._closing = False
            self.reconnects += 1
        await self._stream.send_all(raw)

    async def _fill(self) -> None:
        data = await self._stream.receive_some(65536)
        if not data:
            raise HttpError("the server closed the connection")
        self._buf += data

    async def receive(self) -> Reply:
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 4]
        status_line, _, header_text = head.partition("\r\n")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise HttpError(f"bad status line {status_line!r}") from None
        length: int | None = None
        chunked = False
        for line in header_text.split("\r\n"):
            name, _, value = line.partition(":")
            lname = name.strip().lower()
            if lname == "content-length":
                length = int(value)
            elif lname == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif lname == "connection" and value.strip().lower() == "close":
                self._closing = True
        if chunked:
            return Reply(status, await self._read_chunked())
        if length is None:
            length = 0
        while len(buf) < length:
            await self._fill()
        body = bytes(buf[:length])
        del buf[:length]
        return Reply(status, body)

    async def _read_chunked(self) -> bytes:
        buf = self._buf
        out = bytearray()
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                await self._fill()
            size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
            del buf[: eol + 2]
            while len(buf) < size + 2:
                await self._fill()
            out += buf[:size]
            del buf[: size + 2]
            if size == 0:
                # trailers (none expected) end with an empty line, consumed above
                return bytes(out)

    async def aclose(self) -> None:
        await self._stream.aclose()
