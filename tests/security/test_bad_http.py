"""HTTP that is wrong below the JSON: raw sockets, huge headers, answers given before
the body arrived. Always a 4xx (or a closed connection), never a hang, and the server
stays healthy. (tests/test_bad_input.py covers bodies: UTF-8, nesting, size, types.)"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from tests.conftest import WORKER_SECRET

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
EOF = b"<EOF>"


def _port(server: Any) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


class Raw:
    """One TCP connection to the server, spoken to byte by byte."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = b""
        self.closed = False

    @classmethod
    async def open(cls, server: Any) -> Raw:
        return cls(await trio.open_tcp_stream("127.0.0.1", _port(server)))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    def statuses(self) -> list[int]:
        return [int(m.group(1)) for m in _STATUS.finditer(self.received)]

    async def wait_responses(self, count: int) -> list[int]:
        """Read until ``count`` complete responses arrived or the server closed."""
        while not self.closed:
            statuses = self.statuses()
            if len(statuses) >= count and self._complete(count):
                break
            data = await self.stream.receive_some(65536)
            if not data:
                self.closed = True
            self.received += data
        return self.statuses()

    def _complete(self, count: int) -> bool:
        """Are the first ``count`` responses whole (headers and Content-Length body)?"""
        rest = self.received
        for _ in range(count):
            head, sep, body = rest.partition(b"\r\n\r\n")
            if not sep:
                return False
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(body) < length:
                return False
            rest = body[length:]
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


def request(method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes = b"") -> tuple[bytes, bytes]:
    """The head and the body of a request, as bytes."""
    lines = [f"{method} {path} HTTP/1.1", "Host: buildit.test"]
    all_headers = dict(headers or {})
    if body:
        all_headers.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


PING = b"GET /api/ping HTTP/1.1\r\nHost: buildit.test\r\n\r\n"


async def assert_healthy(server: Any) -> None:
    r = await server.client.get("/api/health")
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------ huge headers


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000
                     + b"\r\n\r\n", id="one-20KiB-header"),
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"X-H%d: v\r\n" % i for i in range(3000)) + b"\r\n",
                     id="3000-headers"),
        pytest.param(b"GET /api/ping?" + b"q=1&" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     id="20KiB-URL"),
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nCookie: " + b"c=" + b"z" * 17_000
                     + b"\r\n\r\n", id="17KiB-cookie"),
    ],
)
async def test_headers_over_16kib_are_431(server: Any, head: bytes) -> None:
    """However the bytes arrive: hypercorn refuses an unfinished head over 16 KiB, the app
    refuses a finished one (which hypercorn lets through when it came in one read)."""
    with trio.fail_after(15):
        for pieces in ([head], [head[:1000], head[1000:]]):
            raw = await Raw.open(server)
            for piece in pieces:
                await raw.send(piece)
            statuses = await raw.wait_responses(1)
            assert statuses[:1] == [431], raw.received[:500]
            await raw.aclose()
        await assert_healthy(server)


async def test_unfinished_headers_over_16kib_are_431_and_closed(server: Any) -> None:
    with trio.fail_after(15):
        raw = await Raw.open(server)
        await raw.send(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
        statuses = await raw.wait_responses(2)  # returns at EOF
        assert statuses == [431] and raw.closed, raw.received[:300]
        await assert_healthy(server)


async def test_headers_under_the_limit_are_fine(server: Any) -> None:
    with trio.fail_after(15):
        r = await server.client.get("/api/ping", headers={"X-Big": "a" * 12_000})
        assert r.status_code == 200, r.text
        r = await server.client.get("/api/ping", headers={"X-Big": "a" * 17_000})
        assert r.status_code == 431
        assert r.json() == {"error": "the request headers are too large"}


# ------------------------------------------------------------------ malformed HTTP


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="not-http"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
                     id="tls-hello"),
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                     id="bad-content-length"),
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                     b"Content-Length: 2\r\n\r\nab", id="two-content-lengths"),
        pytest.param(b"POST /api/worker/poll HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                     b"\r\nContent-Type: application/json\r\n\r\nzz\r\n", id="bad-chunk"),
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
                     id="space-in-header-name"),
        pytest.param(b"GET /api/ping HTTP/1.1\r\n\r\n", id="no-host"),
        pytest.param(b"GET /\x00api HTTP/1.1\r\nHost: x\r\n\r\n", id="nul-in-target"),
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
                     id="nul-in-header"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 30, id="h2-preface"),
    ],
)
async def test_malformed_http_is_4xx_and_closed(server: Any, data: bytes) -> None:
    with trio.fail_after(15):
        raw = await Raw.open(server)
        await raw.send(data)
        with trio.move_on_after(5):
            await raw.wait_responses(2)  # until the server closes
        statuses = raw.statuses()
        # a 4xx then the end of the connection; or (h2 preface, TLS) just the end
        assert raw.closed, raw.received[:300]
        assert all(400 <= s < 500 for s in statuses), raw.received[:300]
        await raw.aclose()
        await assert_healthy(server)


async def test_unknown_transfer_coding_is_501_and_closed(server: Any) -> None:
    """RFC 9112 6.1: a transfer coding the server does not know is 501 (from h11)."""
    with trio.fail_after(15):
        raw = await Raw.open(server)
        await raw.send(b"POST /api/worker/poll HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: gzip\r\n\r\n")
        assert await raw.wait_responses(2) == [501] and raw.closed
        await raw.aclose()
        await assert_healthy(server)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
                     id="folded-header"),
        pytest.param(b"GET /api/ping HTTP/1.1\nHost: x\n\n", id="bare-newlines"),
    ],
)
async def test_tolerated_oddities_are_answered(server: Any, data: bytes) -> None:
    """What HTTP/1.1 allows a server to accept (h11 does): answered normally."""
    with trio.fail_after(15):
        raw = await Raw.open(server)
        await raw.send(data + PING)
        assert await raw.wait_responses(2) == [200, 200]
        await raw.aclose()


# ------------------------------------------------------------------ early answers


EARLY = [
    pytest.param("PATCH", "/api/worker/release", {"Content-Type": "application/json"},
                 405, id="405-method"),
    pytest.param("GET", "/api/job/info", {"Content-Type": "application/json"}, 400,
                 id="400-get-with-body"),
    pytest.param("POST", "/api/nope", {"Content-Type": "application/json"}, 404,
                 id="404-no-route"),
    pytest.param("POST", "/api/pipeline/new", {"Content-Type": "application/json"}, 401,
                 id="401-no-token"),
    pytest.param("POST", "/api/worker/log?job_id=1&offset=0",
                 {"X-Worker-Secret": "wrong", "Content-Type": "application/octet-stream"}, 401,
                 id="401-log-wrong-secret"),
    pytest.param("POST", "/api/worker/poll", {"Content-Type": "multipart/form-data"}, 415,
                 id="415-not-json"),
    pytest.param("GET", "/api/ping", {"Content-Type": "application/json"}, 200,
                 id="200-get-with-body"),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), EARLY)
async def test_an_answer_before_the_body_does_not_hang_the_connection(
    server: Any, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    """The answer needs only the head; the body comes a moment later, the next request on
    the same keep-alive connection must be answered (or the connection closed). It used
    to hang forever when the answer went out before the body came: hypercorn's close of
    such a connection ran in the handler's cancelled nursery. Now the app reads the rest
    of the body before answering (buildit/http/app.py, ``_finish_body``)."""
    with trio.fail_after(60):
        for _ in range(3):  # the hang was a race: more tries, more chances to see it
            await _early_then_ping(server, method, path, headers, status)
        await assert_healthy(server)


async def _early_then_ping(server: Any, method: str, path: str, headers: dict[str, str],
                           status: int) -> None:
    with trio.fail_after(20):
        body = b'{"hostname": "w1", "arch": "amd64", "worker_secret": "x"}'
        head, body = request(method, path, headers=headers, body=body)
        raw = await Raw.open(server)
        await raw.send(head)
        with trio.move_on_after(0.3):  # an answer from the head alone: the old behaviour
            await raw.wait_responses(1)
        # A slow client: the body a moment after the answer, the next request a moment
        # after the body (the hang needed both gaps: the server done with the request
        # before the body came, and the body alone in its segment).
        await trio.sleep(0.1)
        await raw.send(body)
        statuses = await raw.wait_responses(1)
        await trio.sleep(0.1)
        assert statuses[:1] == [status], raw.received[:400]
        if not raw.closed:
            await raw.send(PING)
            with trio.move_on_after(10) as hung:
                statuses = await raw.wait_responses(2)
            assert not hung.cancelled_caught, (
                f"the connection hung after {status}: {raw.received[-400:]!r}")
            assert raw.closed or statuses[1:2] == [200], raw.received[-400:]
        await raw.aclose()


async def test_many_early_answers_leak_no_connection(server: Any) -> None:
    """Clients that send the body late after early answers do not pile up connections."""
    with trio.fail_after(60):
        for _ in range(20):
            head, body = request("POST", "/api/worker/log?job_id=1&offset=0",
                                 headers={"X-Worker-Secret": WORKER_SECRET + "x"},
                                 body=b"x" * 1000)
            raw = await Raw.open(server)
            await raw.send(head)
            with trio.move_on_after(0.2):
                await raw.wait_responses(1)
            await trio.sleep(0.05)  # as above: a slow client
            await raw.send(body)
            await trio.sleep(0.05)
            await raw.send(PING)
            await raw.wait_responses(2)
            assert raw.statuses()[:2] == [401, 200] or raw.closed
            await raw.aclose()
        await assert_healthy(server)


async def test_a_body_that_never_comes_is_answered_and_closed(server: Any) -> None:
    """The app waits a few seconds for the rest of the body (``BODY_DRAIN_SECS``), then
    answers and asks the client to close."""
    from buildit.http.app import BODY_DRAIN_SECS

    with trio.fail_after(BODY_DRAIN_SECS + 10):
        head, _ = request("POST", "/api/worker/log?job_id=1&offset=0",
                          headers={"X-Worker-Secret": "wrong", "Content-Length": "1000"})
        raw = await Raw.open(server)
        await raw.send(head + b"x" * 10)
        statuses = await raw.wait_responses(1)
        assert statuses[:1] == [401], raw.received[:300]
        assert b"connection: close" in raw.received.lower()
        await raw.aclose()
        await assert_healthy(server)
