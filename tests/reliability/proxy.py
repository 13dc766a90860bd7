"""A TCP proxy that makes the network bad: it drops, delays and cuts connections."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio


@dataclass
class Chaos:
    drop: float = 0.05  # a new connection is closed at once
    cut: float = 0.05  # each chunk may cut the connection part-way through it
    max_delay: float = 0.02  # each chunk waits up to this long (seconds)
    seed: int = 1
    rng: random.Random = field(init=False)
    dropped: int = 0
    cuts: int = 0
    connections: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class ChaosProxy:
    def __init__(self, upstream_host: str, upstream_port: int, chaos: Chaos) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.chaos = chaos
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, client: trio.SocketStream) -> None:
        chaos = self.chaos
        chaos.connections += 1
        async with client:
            if chaos.rng.random() < chaos.drop:
                chaos.dropped += 1
                return
            try:
                upstream = await trio.open_tcp_stream(*self.upstream)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:

                async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                    try:
                        while True:
                            data = await src.receive_some(65536)
                            if not data:
                                break
                            if chaos.max_delay:
                                await trio.sleep(chaos.rng.random() * chaos.max_delay)
                            if chaos.rng.random() < chaos.cut:
                                await dst.send_all(data[: chaos.rng.randrange(len(data))])
                                chaos.cuts += 1
                                nursery.cancel_scope.cancel()
                                return
                            await dst.send_all(data)
                        await dst.send_eof()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        nursery.cancel_scope.cancel()

                nursery.start_soon(pump, client, upstream)
                nursery.start_soon(pump, upstream, client)
