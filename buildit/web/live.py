"""Live updates: a server-sent event stream of job events and HTML fragments to refresh.

``GET /events[?pipeline=N]`` streams ``event: job`` with ``{"job_id", "pipeline_id",
"status"}`` for every committed job change (from ``Aggregator.subscribe``, so from
every server process), a keep-alive comment every 15 s, and ends when the server
stops (checked every second) or after ``STREAM_LIFETIME`` (the browser reconnects).
The pipeline and job pages refresh their status parts from ``.../fragment``, which
is rendered by the same templates as the page (escaped by Jinja).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import trio
from quart import Response, make_response, render_template

from buildit.actors.aggregator import Aggregator
from buildit.web.blueprint import bp
from buildit.web.pages import arg_int, job_context, pipeline_context
from buildit.web.state import WebState, services, web_state

KEEPALIVE = 15.0
TICK = 1.0
STREAM_LIFETIME = 600.0
MAX_STREAMS = 1000  # per process; more are told to come back later (503)


async def event_stream(state: WebState, aggregator: Aggregator, pipeline_id: int | None
                       ) -> AsyncIterator[bytes]:
    state.open_streams += 1
    try:
        yield b"retry: 3000\n\n"
        async with aggregator.subscribe(pipeline_id) as events:
            started = last_sent = trio.current_time()
            while not state.stop.is_set() and trio.current_time() - started < STREAM_LIFETIME:
                # No cancel scope may span a yield of this generator: the scope only
                # wraps the wait.
                event = None
                with trio.move_on_after(TICK):
                    event = await events.receive()
                if event is not None:
                    data = orjson.dumps({"job_id": event.job_id,
                                         "pipeline_id": event.pipeline_id,
                                         "status": event.status})
                    yield b"event: job\ndata: " + data + b"\n\n"
                    last_sent = trio.current_time()
                elif trio.current_time() - last_sent >= KEEPALIVE:
                    yield b": keep-alive\n\n"
                    last_sent = trio.current_time()
    finally:
        state.open_streams -= 1


@bp.get("/events")
async def events() -> Response:
    pipeline_id = arg_int("pipeline", 0, maximum=2**62) or None
    state = web_state()
    if state.open_streams >= MAX_STREAMS:
        return Response(b"too many live streams; retry later", status=503,
                        headers={"Retry-After": "30"}, content_type="text/plain")
    response = await make_response(
        event_stream(state, services().aggregator, pipeline_id),
        200,
        {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    assert isinstance(response, Response)
    response.timeout = None  # streams outlive Quart's RESPONSE_TIMEOUT
    return response


@bp.get("/pipelines/<int:pipeline_id>/fragment")
async def pipeline_fragment(pipeline_id: int) -> Response:
    context = await pipeline_context(pipeline_id)
    body = await render_template("web/_pipeline_live.html", **context)
    return Response(body, content_type="text/html; charset=utf-8")


@bp.get("/jobs/<int:job_id>/fragment")
async def job_fragment(job_id: int) -> Response:
    context = await job_context(job_id)
    body = await render_template("web/_job_live.html", **context)
    return Response(body, content_type="text/html; charset=utf-8")
