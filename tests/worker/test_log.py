"""The job log: the size cap and its marker; the uploader's offsets, resends and retries.

No subprocess here: these run on the virtual clock (``autojump_clock``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from buildit.worker.client import MAX_LOG_CHUNK, ServerApi, make_client
from buildit.worker.config import WorkerConfig
from buildit.worker.log import JobLog, LogUploader
from buildit.worker.protocol import Job
from buildit.worker.retry import Backoff

from .fakeserver import SECRET, FakeJob, FakeServer


def _config() -> WorkerConfig:
    return WorkerConfig(server="http://fake.test", worker_secret=SECRET, arch="amd64",
                        ciel_path=Path("/nonexistent"), hostname="w1")


def _job(fake: FakeJob) -> Job:
    return Job.from_json(fake.wire())


async def _upload(
    server: FakeServer, fake: FakeJob, log: JobLog, gone: list[str] | None = None
) -> LogUploader:
    config = _config()
    async with make_client(config, transport=server.transport()) as client:
        uploader = LogUploader(
            ServerApi(client, config), _job(fake), log,
            on_job_gone=(gone if gone is not None else []).append,
            backoff=Backoff(initial=1.0, maximum=30.0), flush_interval=0.5,
        )
        await uploader.run()
    return uploader


def _running_job(server: FakeServer) -> FakeJob:
    fake = server.add_job()
    server.queue.clear()
    fake.state = "running"
    return fake


def test_the_cap_cuts_output_with_a_marker_and_keeps_the_closing_lines() -> None:
    log = JobLog(max_bytes=64 * 1024)
    log.note("running `ciel build`")
    for _ in range(2000):
        log.write(b"y" * 99 + b"\n")
    log.note("`ciel build` finished with exit status 0")
    log.close()
    data = log.getvalue()
    assert len(data) <= 64 * 1024
    assert log.truncated and log.dropped_bytes > 100_000
    text = data.decode()
    assert "---- log truncated: the log reached the worker's limit of 65536 bytes" in text
    assert text.index("log truncated") < text.index("finished with exit status 0")
    assert text.rstrip().endswith(f"{log.dropped_bytes} bytes of build output were dropped "
                                  "(limit 65536 bytes)")
    log.write(b"after close")
    assert log.getvalue() == data


def test_a_log_under_the_cap_is_untouched() -> None:
    log = JobLog(max_bytes=64 * 1024)
    log.write(b"hello\n")
    log.close()
    assert log.getvalue() == b"hello\n" and not log.truncated


async def test_everything_is_uploaded_in_chunks_at_the_right_offsets(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = FakeServer()
    fake = _running_job(server)
    log = JobLog(max_bytes=8 * 1024 * 1024)

    async def produce() -> None:
        for i in range(25):
            log.write(f"line {i} ".encode() + b"z" * 100_000 + b"\n")
            await trio.sleep(0.3)
        log.close()

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            uploader = await _upload(server, fake, log)
    assert bytes(fake.log) == log.getvalue()
    offsets = [offset for _, offset, _ in server.log_requests]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert max(size for _, _, size in server.log_requests) <= MAX_LOG_CHUNK
    assert uploader.statistics().acknowledged == log.size
    # batched: far fewer requests than writes
    assert len(server.log_requests) < 25


async def test_offset_mismatch_resends_from_the_servers_size(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = FakeServer()
    fake = _running_job(server)
    server.forget_log_once_at = 0  # the server loses what it had after the first append
    log = JobLog(max_bytes=1024 * 1024)

    async def produce() -> None:
        log.write(b"first part\n")
        await trio.sleep(2)
        log.write(b"second part\n")
        log.close()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            uploader = await _upload(server, fake, log)
    assert bytes(fake.log) == b"first part\nsecond part\n"
    assert uploader.statistics().resends == 1
    assert [offset for _, offset, _ in server.log_requests] == [0, 11, 0]


async def test_transient_failures_are_retried_with_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = FakeServer()
    fake = _running_job(server)
    server.fail["log"] = ["503", "connect", "500", "timeout"]
    log = JobLog(max_bytes=1024 * 1024)
    log.write(b"data\n")
    log.close()
    start = trio.current_time()
    with trio.fail_after(120):
        uploader = await _upload(server, fake, log)
    assert bytes(fake.log) == b"data\n"
    assert uploader.statistics().failures == 4
    # backoff 1, 2, 4, 8 s with jitter down to half, and Retry-After: 1 on the 503
    assert trio.current_time() - start >= 0.5 + 1 + 2 + 4


async def test_job_gone_stops_the_upload_and_tells_the_worker(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = FakeServer()
    fake = _running_job(server)
    fake.state = "cancelled"
    log = JobLog(max_bytes=1024 * 1024)
    log.write(b"data\n")
    gone: list[str] = []
    with trio.fail_after(60):
        uploader = await _upload(server, fake, log, gone)
    assert gone == ["cancelled"]
    assert uploader.statistics().stopped == "job cancelled"


async def test_a_refused_log_stops_uploading_without_failing(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = FakeServer()
    fake = _running_job(server)
    server.log_max_bytes = 10
    log = JobLog(max_bytes=1024 * 1024)
    log.write(b"more than ten bytes\n")
    with trio.fail_after(60):
        uploader = await _upload(server, fake, log)
    stats: Any = uploader.statistics()
    assert stats.stopped.startswith("refused with 413")
    assert fake.log == bytearray()
