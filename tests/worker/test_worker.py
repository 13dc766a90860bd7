"""The worker loop against a fake server (httpx.MockTransport), with fake ciel/pushpkg
and a real git packages tree. Real subprocesses: the real clock, short intervals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from buildit.worker import (
    ServerUnreachable,
    WorkerConfig,
    WorkerHandle,
    WorkerUnauthorized,
    WorkspaceError,
    run_worker,
)

from .conftest import Abbs, Fakes, git, spec
from .fakeserver import FakeServer
from .helpers import process_gone, wait_for

LIMIT = 60


@asynccontextmanager
async def running_worker(
    config: WorkerConfig, server: FakeServer
) -> AsyncIterator[WorkerHandle]:
    async with trio.open_nursery() as nursery:
        handle: WorkerHandle = await nursery.start(
            partial(run_worker, config, transport=server.transport())
        )
        yield handle
        handle.request_shutdown(immediate=True)
        await handle.wait_stopped()


def only_result(server: FakeServer, job_id: int) -> dict[str, Any]:
    results = server.results.get(job_id, [])
    assert len(results) == 1, results
    result: dict[str, Any] = results[0]
    return result


async def test_a_successful_build(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs, workspace: Path
) -> None:
    sha = abbs.commit({"app-shells/bash/spec": spec("5.2.21", "1")})
    release = workspace.parent / "release-build"
    fakes.control(build="wait", release_file=str(release))
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash,zlib", git_sha=sha)
            # heartbeats go on, naming the job, while the build runs
            await server.wait_until(lambda: len(server.job_heartbeats(job.job_id)) >= 3)
            release.touch()
            await server.wait_until(lambda: job.job_id in server.results)
            await server.wait_until(lambda: len(server.polls) >= 2)
    ok = only_result(server, job.job_id)["Ok"]
    assert ok["build_success"] is True and ok["pushpkg_success"] is True
    assert ok["successful_packages"] == ["bash", "zlib"]
    assert ok["failed_package"] is None and ok["skipped_packages"] == []
    assert ok["package_versions"] == {"bash": "5.2.21-1", "zlib": "1.3-1"}
    assert all(h["attempt_token"] == job.attempt_token for h in server.job_heartbeats(job.job_id))
    update = server.updates[-1]
    assert update["attempt_token"] == job.attempt_token and update["hostname"] == "test-worker"

    # the tree was at the job's commit when ciel built, on a branch named like the job's
    tree = workspace / "TREE"
    assert git(tree, "rev-parse", "HEAD") == sha
    assert git(tree, "rev-parse", "--abbrev-ref", "HEAD") == "stable"
    ciel = fakes.records("ciel")
    assert [c["argv"] for c in ciel] == [["update-os"], ["build", "-i", "main", "bash", "zlib"]]
    assert ciel[1]["tree_head"] == sha and ciel[1]["cwd"] == str(workspace)
    (push,) = fakes.records("pushpkg")
    assert push["argv"] == ["--host", "repo.aosc.io", "-i", "/nonexistent/ssh-key",
                            "maintainers", "stable"]
    assert push["cwd"] == str(workspace / "OUTPUT-stable")
    assert push["debs"] == ["bash_5.2.21-1_amd64.deb", "zlib_1.3-1_amd64.deb"]

    log = bytes(job.log).decode()
    assert f"git fetch {abbs.remote} stable" in log
    assert f"git checkout --force -B stable {sha}" in log
    assert "ciel build -i main bash zlib" in log
    assert "ACBS Build Successful" in log
    assert "pushpkg --host repo.aosc.io" in log
    assert "result: build succeeded" in log


async def test_a_failed_package(worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs) -> None:
    fakes.control(build="fail", fail_package="zlib")
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("readline,zlib,bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
    ok = only_result(server, job.job_id)["Ok"]
    assert ok["build_success"] is False and ok["pushpkg_success"] is False
    assert ok["successful_packages"] == ["readline"]
    assert ok["failed_package"] == "zlib"
    assert ok["skipped_packages"] == ["bash"]
    assert ok["package_versions"] == {"readline": "8.2.13-0", "zlib": "1.3-1", "bash": "5.2.15-0"}
    assert fakes.records("pushpkg") == []


async def test_a_push_failure(worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs) -> None:
    fakes.control(pushpkg_exit=1)
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"),
                                 git_branch="stable")
            await server.wait_until(lambda: job.job_id in server.results)
    ok = only_result(server, job.job_id)["Ok"]
    assert ok["build_success"] is True and ok["pushpkg_success"] is False
    assert len(fakes.records("pushpkg")) == worker_config.retry_attempts
    assert "pushpkg failed (exit status 1)" in bytes(job.log).decode()


async def test_no_ssh_key_means_no_upload(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config.replace(ssh_key=None), server):
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
    ok = only_result(server, job.job_id)["Ok"]
    assert ok["build_success"] is True and ok["pushpkg_success"] is False
    assert fakes.records("pushpkg") == []
    assert "BUILDIT_SSH_KEY is not set" in bytes(job.log).decode()


async def test_topic_builds(worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs) -> None:
    sha = abbs.commit({"app-shells/bash/spec": spec("5.3")}, branch="bash-5.3")
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_sha=sha, git_branch="bash-5.3",
                                 options="with-topics")
            await server.wait_until(lambda: job.job_id in server.results)
    ok = only_result(server, job.job_id)["Ok"]
    assert ok["package_versions"] == {"bash": "5.3-0"}
    assert fakes.records("ciel")[-1]["argv"] == [
        "build", "-i", "main", "bash", "--with-topics", "bash-5.3",
    ]
    (push,) = fakes.records("pushpkg")
    assert push["argv"][0] == "--force-push-noarch-package"
    assert push["argv"][-1] == "bash-5.3"


async def test_update_os_failure_is_a_failed_build(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    fakes.control(update_os_exit=100)
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
    ok = only_result(server, job.job_id)["Ok"]
    assert ok["build_success"] is False and ok["successful_packages"] == []
    assert [c["argv"] for c in fakes.records("ciel")] == [["update-os"]] * 5


async def test_a_missing_program_is_an_error_result(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PATH with git but without ciel
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    import shutil

    (bare / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(bare))
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
    error = only_result(server, job.job_id)["Error"]
    assert error.startswith("could not start `ciel`:")
    assert "No such file or directory" in error


async def test_fetch_failure_after_retries_is_an_error_result(
    worker_config: WorkerConfig, fakes: Fakes
) -> None:
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_branch="no-such-branch")
            await server.wait_until(lambda: job.job_id in server.results)
    error = only_result(server, job.job_id)["Error"]
    assert error.startswith("could not fetch branch no-such-branch from ")
    assert "failed 5 times (last: exit status 128)" in error
    log = bytes(job.log).decode()
    assert log.count("running `git fetch") == 5
    assert log.count("trying again in") == 4
    assert fakes.records("ciel") == []


async def test_a_commit_missing_from_the_branch_is_an_error_result(
    worker_config: WorkerConfig, fakes: Fakes
) -> None:
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_sha="f" * 40)
            await server.wait_until(lambda: job.job_id in server.results)
    error = only_result(server, job.job_id)["Error"]
    assert f"could not check out commit {'f' * 40} as stable" in error


async def test_a_job_that_must_not_reach_a_command_line(
    worker_config: WorkerConfig, fakes: Fakes, workspace: Path
) -> None:
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_branch="--upload-pack=touch pwned")
            await server.wait_until(lambda: job.job_id in server.results)
    assert "invalid git branch name" in only_result(server, job.job_id)["Error"]
    assert not (workspace / "TREE" / "pwned").exists()


async def test_the_result_is_retried_until_acknowledged_and_recorded_once(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    server.fail["job_update"] = ["503", "connect", "500", "timeout", "connect"]
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config.replace(retry_max_delay=0.2), server) as handle:
            await server.wait_until(lambda: len(server.polls) == 1)
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
            await server.wait_until(lambda: len(server.polls) == 2)  # back to polling
            stats = handle.statistics()
    assert only_result(server, job.job_id)["Ok"]["build_success"] is True
    assert server.fail["job_update"] == []  # all five failures happened...
    assert len(server.updates) == 1  # ...and after the acknowledgement nothing was resent
    assert stats.results_delivered == 1


async def test_a_409_on_the_result_stops_retrying(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    server.fail["job_update"] = ["409"]
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server) as handle:
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: len(server.polls) >= 2)
            stats = handle.statistics()
    assert server.results == {} and server.updates == []  # the injected 409 was the only try
    assert stats.results_dropped == 1 and stats.results_delivered == 0
    assert job.state == "running"


async def _hung_build(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs, server: FakeServer,
    **control: Any,
) -> tuple[Any, list[int]]:
    pid_file = worker_config.ciel_path.parent / "ciel.pids"
    fakes.control(build="hang", pid_file=str(pid_file), **control)
    job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
    await server.wait_until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    pids = [int(p) for p in pid_file.read_text().split()]
    for pid in pids:
        assert not process_gone(pid)
    return job, pids


async def test_a_cancelled_job_kills_the_build_and_the_worker_polls_again(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server) as handle:
            job, pids = await _hung_build(worker_config, fakes, abbs, server)
            polls = len(server.polls)
            job.state = "cancelled"  # the next heartbeat hears about it
            for pid in pids:
                await wait_for(partial(process_gone, pid))
            await server.wait_until(lambda: len(server.polls) > polls)
            stats = handle.statistics()
    assert server.updates == []  # nothing reported for a cancelled job
    assert stats.jobs_stopped == 1
    # the same worker takes the next job
    assert stats.state in ("polling", "idle")


async def test_a_job_lost_on_log_upload_kills_the_build(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    # heartbeats too rare to notice: the log upload is what learns it
    config = worker_config.replace(heartbeat_interval=3600)
    with trio.fail_after(LIMIT):
        async with running_worker(config, server) as handle:
            job, pids = await _hung_build(config, fakes, abbs, server, ignore_term=True,
                                          tick=True)
            job.state = "lost"
            for pid in pids:
                await wait_for(partial(process_gone, pid))
            await server.wait_until(lambda: handle.statistics().jobs_stopped == 1)
    assert server.updates == []


async def test_a_huge_log_is_capped_and_the_job_still_reported(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    fakes.control(build="spam", spam_bytes=3_000_000)
    server = FakeServer()
    config = worker_config.replace(log_max_bytes=256 * 1024)
    with trio.fail_after(LIMIT):
        async with running_worker(config, server):
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
    assert only_result(server, job.job_id)["Ok"]["build_success"] is True
    log = bytes(job.log)
    assert len(log) <= 256 * 1024
    text = log.decode()
    assert "---- log truncated" in text
    assert "bytes of build output were dropped" in text.splitlines()[-1]


async def test_the_log_is_resent_when_the_server_lost_part_of_it(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    server.forget_log_once_at = 200
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
    offsets = [offset for _, offset, _ in server.log_requests]
    assert 0 in offsets[1:]  # resent from the start after the 409
    log = bytes(job.log).decode()
    assert log.startswith("[buildit ")
    assert log.count("running `git fetch") == 1  # nothing twice
    assert "result: build succeeded" in log


async def test_graceful_shutdown_finishes_the_build(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs, workspace: Path
) -> None:
    release = workspace.parent / "release-build"
    fakes.control(build="wait", release_file=str(release))
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(
                partial(run_worker, worker_config, transport=server.transport())
            )
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: len(server.job_heartbeats(job.job_id)) >= 1)
            handle.request_shutdown()
            polls = len(server.polls)
            release.touch()
            await handle.wait_stopped()
    assert only_result(server, job.job_id)["Ok"]["build_success"] is True
    assert len(server.polls) == polls  # no new job taken
    assert server.releases == []


async def test_shutdown_past_the_grace_hands_the_job_back(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    config = worker_config.replace(shutdown_grace=0.5)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(
                partial(run_worker, config, transport=server.transport())
            )
            job, pids = await _hung_build(config, fakes, abbs, server)
            start = trio.current_time()
            handle.request_shutdown()
            await handle.wait_stopped()
            assert trio.current_time() - start >= 0.5
            for pid in pids:
                await wait_for(partial(process_gone, pid))
    assert server.updates == []
    assert [r["job_id"] for r in server.releases] == [job.job_id]
    assert server.releases[0]["attempt_token"] == job.attempt_token
    assert job.state == "created"  # back in the queue
    assert "the worker is shutting down: build stopped" in bytes(job.log).decode()


async def test_immediate_shutdown_without_release_support(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    server.release_supported = False
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(
                partial(run_worker, worker_config, transport=server.transport())
            )
            job, pids = await _hung_build(worker_config, fakes, abbs, server)
            handle.request_shutdown(immediate=True)
            await handle.wait_stopped()
            for pid in pids:
                await wait_for(partial(process_gone, pid))
    # no Error result: the server requeues the job when the heartbeats stop
    assert server.updates == []
    assert job.state == "running"


async def test_startup_fails_on_a_wrong_secret(worker_config: WorkerConfig) -> None:
    server = FakeServer(secret="another-secret")
    expected = pytest.RaisesExc(WorkerUnauthorized, match="BUILDIT_WORKER_SECRET")
    with trio.fail_after(LIMIT), pytest.RaisesGroup(expected):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_worker, worker_config, transport=server.transport()))


async def test_startup_fails_when_the_server_is_unreachable(
    worker_config: WorkerConfig,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    expected = pytest.RaisesExc(ServerUnreachable, match="cannot reach the BuildIt server")
    with trio.fail_after(LIMIT), pytest.RaisesGroup(expected):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(run_worker, worker_config, transport=httpx.MockTransport(refuse))
            )


@pytest.mark.parametrize(
    ("broken", "words"),
    [(".ciel", "no .ciel directory"), ("TREE", "no TREE git checkout"), ("", "does not exist")],
)
async def test_startup_fails_on_something_that_is_not_a_ciel_workspace(
    worker_config: WorkerConfig, workspace: Path, broken: str, words: str
) -> None:
    import shutil

    shutil.rmtree(workspace / broken if broken else workspace)
    server = FakeServer()
    with pytest.RaisesGroup(pytest.RaisesExc(WorkspaceError, match=words)):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_worker, worker_config, transport=server.transport()))
    assert server.heartbeats == []


async def test_a_401_on_a_later_poll_ends_the_worker(worker_config: WorkerConfig) -> None:
    server = FakeServer()
    config = worker_config.replace(poll_wait=0.1)
    with trio.fail_after(LIMIT):
        with pytest.RaisesGroup(WorkerUnauthorized):
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(run_worker, config, transport=server.transport()))
                server.secret = "rotated"
                await trio.sleep_forever()
    assert len(server.heartbeats) >= 1  # it started with the old secret


async def test_the_server_going_away_between_jobs_is_waited_out(
    worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    server = FakeServer()
    server.fail["poll"] = ["connect"] * 3 + ["503"] * 2
    with trio.fail_after(LIMIT):
        async with running_worker(worker_config, server):
            server.fail["heartbeat"] = ["connect"] * 3
            await server.wait_until(lambda: not server.fail["poll"])
            job = server.add_job("bash", git_sha=git(abbs.work, "rev-parse", "HEAD"))
            await server.wait_until(lambda: job.job_id in server.results)
    assert only_result(server, job.job_id)["Ok"]["build_success"] is True


async def test_a_job_arriving_while_shutting_down_is_handed_back(
    worker_config: WorkerConfig, fakes: Fakes
) -> None:
    server = FakeServer()
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(
                partial(run_worker, worker_config, transport=server.transport())
            )
            await server.wait_until(lambda: len(server.polls) == 1)  # a long poll is held
            handle.request_shutdown()
            job = server.add_job("bash")  # ...and answered with a job after all
            await handle.wait_stopped()
    assert [r["job_id"] for r in server.releases] == [job.job_id]
    assert job.state == "created"
    assert fakes.records() == [] and server.updates == []
