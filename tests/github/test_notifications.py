"""Durable notifications to GitHub: outages, rate limits and a server restart, with
every comment and check-run change arriving exactly once (counted on the fake)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from buildit.db import queries
from tests.conftest import ok_result
from tests.github.conftest import HEAD_SHA, PR, REPO, GitHubServer
from tests.github.fake import FakeGitHub, notification_call
from tests.github.payloads import check_run_rerequested, issue_comment, pull_request

BODY = "#buildit bash zlib"


def _refused_per_path(fake: FakeGitHub, status: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in fake.calls:
        if call.status == status:
            counts[call.path] = counts.get(call.path, 0) + 1
    return counts


async def _build(gh: GitHubServer, body: str) -> None:
    gh.fake.pulls[PR] = pull_request(PR, repo=REPO, branch="bash-5.2.37", sha=HEAD_SHA,
                                     body=BODY)
    r = await gh.send("issue_comment", issue_comment(repo=REPO, pr=PR, login="alice",
                                                     body=body))
    assert r.status_code == 202, r.text


def _histories(fake: FakeGitHub) -> dict[str, list[tuple[str, str | None]]]:
    return {run.name: [h[:2] for h in run.history] for run in fake.runs.values()}


async def test_outage_and_rate_limits_then_everything_arrives_once(gh: GitHubServer) -> None:
    fake = gh.fake
    with trio.fail_after(30):
        fake.fail(502)  # comments and check runs fail; reading the PR still works
        await _build(gh, "@aosc-buildit-bot build amd64 arm64")
        # every notification (the reply, two check runs) has failed twice
        await gh.wait_for(lambda: sum(1 for c in fake.calls if c.status == 502) >= 6
                          and len(_refused_per_path(fake, 502)) == 2, "failures")
        assert fake.posted_comments(PR) == [] and not fake.runs
        assert len(await gh.pipelines()) == 1

        # GitHub comes back rate limiting: two 429 with Retry-After, one 403 at the limit
        fake.recover()
        fake.fail(429, headers={"Retry-After": "1"}, count=2)
        fake.fail(403, count=1, headers={"x-ratelimit-limit": "5000",
                                         "x-ratelimit-remaining": "0",
                                         "x-ratelimit-reset": str(int(time.time()) + 1)})
        await gh.comments(1)
        await gh.wait_for(lambda: len(fake.runs_on(HEAD_SHA)) == 2, "two check runs")
        limited = [c for c in fake.calls if c.status in (429, 403)]
        assert len(limited) == 3
        delivered = [c for c in fake.calls if notification_call(c.method, c.path)
                     and c.status < 300]
        # nothing went through before the rate limits said it could
        assert min(c.at for c in delivered) - min(c.at for c in limited) >= 0.9

        # another outage while a worker builds amd64
        fake.fail(502, count=3)
        job = await gh.worker_takes("kp920", "amd64")
        await gh.worker_reports("kp920", "amd64", job["job_id"], ok_result("bash", "zlib"))
        runs = {r.name: r for r in fake.runs_on(HEAD_SHA)}
        await gh.wait_for(lambda: runs["buildit amd64"].status == "completed", "completed")
        await gh.settled()

    assert _histories(fake) == {
        "buildit amd64": [("queued", None), ("in_progress", None), ("completed", "success")],
        "buildit arm64": [("queued", None)],
    }
    assert len(fake.posted_comments(PR)) == 1
    assert len(fake.succeeded("POST", r"/issues/\d+/comments$")) == 1
    assert len(fake.succeeded("POST", r"/check-runs$")) == 2
    assert len(fake.succeeded("PATCH", r"/check-runs/\d+$")) == 2
    rows = await gh.server.db.read(queries.outbox_rows)
    assert all(r["delivered_at"] is not None and r["failed_at"] is None for r in rows)
    assert max(r["attempts"] for r in rows) >= 3


async def test_restart_with_undelivered_notifications_loses_nothing(
    make_github_server: Callable[..., Awaitable[GitHubServer]], fake_github: FakeGitHub
) -> None:
    fake = fake_github
    with trio.fail_after(30):
        first = await make_github_server()
        fake.fail(502)
        await _build(first, "@aosc-buildit-bot build amd64 arm64")
        await first.wait_for(lambda: len(_refused_per_path(fake, 502)) == 2, "failures")
        job = await first.worker_takes("kp920", "amd64")  # queues an in_progress update
        backlog = await first.server.db.read(queries.outbox_backlog)
        assert backlog == 4  # the reply, two check runs, the amd64 update

        # stop the server while GitHub is down; wait until its actors have all ended
        supervisor = first.server.running.supervisor
        first.server.running.stop.set()
        await first.wait_for(lambda: not supervisor.statistics().running, "stopped")
        fake.recover()
        assert fake.posted_comments(PR) == [] and not fake.runs

        # a new server on the same database delivers everything, once
        second = await make_github_server()
        await second.comments(1)
        await second.wait_for(
            lambda: [r.status for r in fake.runs_on(HEAD_SHA)].count("in_progress") == 1,
            "the amd64 run in progress")
        await second.worker_reports("kp920", "amd64", job["job_id"], ok_result("bash"))
        await second.settled()
        await trio.sleep(0.3)  # a duplicate would have had time to arrive

    assert _histories(fake) == {
        "buildit amd64": [("queued", None), ("in_progress", None), ("completed", "success")],
        "buildit arm64": [("queued", None)],
    }
    assert len(fake.posted_comments(PR)) == 1
    assert len(fake.succeeded("POST", r"/issues/\d+/comments$")) == 1
    assert len(fake.succeeded("POST", r"/check-runs$")) == 2


async def test_a_retry_after_a_lost_answer_does_not_post_twice(gh: GitHubServer) -> None:
    """GitHub stored the comment and check run but the answers never arrived."""
    fake = gh.fake
    original = fake._answer
    lost: list[str] = []

    async def lose_first_answers(method: str, path: str, data: Any) -> Any:
        response = await original(method, path, data)
        if notification_call(method, path) and method == "POST" and path not in lost:
            lost.append(path)
            return type(response)(b"upstream timed out", status=504)
        return response

    fake._answer = lose_first_answers  # type: ignore[method-assign]
    with trio.fail_after(30):
        await _build(gh, "@aosc-buildit-bot build amd64")
        await gh.wait_for(lambda: len(lost) == 2, "both first answers lost")
        await gh.settled()
    assert len(lost) == 2  # the comment and the check run were each answered 504 once
    assert len(fake.posted_comments(PR)) == 1
    assert len(fake.runs) == 1
    # the retries found what the first attempts had created
    assert fake.succeeded("GET", r"/issues/\d+/comments$")
    assert fake.succeeded("GET", r"/commits/[0-9a-f]{40}/check-runs$")
    rows = await gh.server.db.read(queries.outbox_rows)
    assert [(r["kind"], r["attempts"], r["result"]["found"]) for r in rows] == [
        ("github_check_run", 2, True), ("github_comment", 2, True)]


async def test_requeue_and_restart_put_the_check_run_back_in_the_queue(
    make_github_server: Callable[..., Awaitable[GitHubServer]]
) -> None:
    gh = await make_github_server()
    fake = gh.fake
    with trio.fail_after(30):
        token = await gh.server.add_user("alice")
        await _build(gh, "@aosc-buildit-bot build amd64")
        await gh.wait_for(lambda: len(fake.runs) == 1, "a check run")
        # the worker polls again while holding the job: it is requeued
        await gh.worker_takes("kp920", "amd64")
        await gh.wait_for(lambda: [r.status for r in fake.runs.values()] == ["in_progress"],
                          "in progress")
        job = await gh.worker_takes("kp920", "amd64")
        await gh.worker_reports("kp920", "amd64", job["job_id"], {"Error": "ciel exploded"})
        await gh.settled()
        first, second = fake.runs.values()
        assert [h[:2] for h in first.history] == [
            ("queued", None), ("in_progress", None), ("completed", "neutral")]
        assert [h[:2] for h in second.history] == [
            ("queued", None), ("in_progress", None), ("completed", "failure")]
        assert second.output["title"] == "Error" and "ciel exploded" in second.output["summary"]
        # a restart of the errored job gets a new queued run; a cancel ends it as cancelled
        r = await gh.client.post("/api/job/restart", json={"job_id": job["job_id"]},
                                 headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        await gh.wait_for(lambda: len(fake.runs) == 3, "a new run")
        r = await gh.client.post("/api/pipeline/cancel",
                                 json={"pipeline_id": (await gh.pipelines())[0]["id"]},
                                 headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        await gh.settled()
    third = list(fake.runs.values())[2]
    assert [h[:2] for h in third.history] == [("queued", None), ("completed", "cancelled")]
    assert {r.name for r in fake.runs.values()} == {"buildit amd64"}
    assert not [c for c in fake.calls if c.status == 422]


async def test_rerun_on_github_restarts_a_failed_job(gh: GitHubServer) -> None:
    fake = gh.fake

    async def rerun(run_id: int, login: str) -> None:
        r = await gh.send("check_run", check_run_rerequested(
            repo=REPO, check_run_id=run_id, login=login, head_sha=HEAD_SHA))
        assert r.status_code == 202, r.text
        github = gh.server.running.services.github
        await gh.wait_for(lambda: github.statistics().handled == github.received,
                          "the command handled")
        await gh.settled()

    async def status(job_id: int) -> Any:
        r = await gh.client.get("/api/job/info", params={"job_id": job_id})
        return r.json()["status"]

    with trio.fail_after(30):
        await _build(gh, "@aosc-buildit-bot build amd64")
        await gh.wait_for(lambda: len(fake.runs) == 1, "a check run")
        job = await gh.worker_takes("kp920", "amd64")
        await gh.worker_reports("kp920", "amd64", job["job_id"],
                                ok_result("bash", build_success=False, failed="zlib"))
        await gh.settled()
        [failed] = fake.runs.values()
        assert failed.history[-1][:2] == ("completed", "failure")
        comments = len(fake.posted_comments(PR))

        # Someone outside the organization: told so on the PR; nothing restarts.
        await rerun(failed.id, "mallory")
        assert [c.split("\n\n<!--")[0] for c in fake.posted_comments(PR)[comments:]] == [
            "@mallory only members of the AOSC-Dev organization may re-run builds, and "
            "GitHub says you are not one."]
        assert await status(job["job_id"]) == "failed" and len(fake.runs) == 1

        # A member: a new attempt of the job, with a new queued check run.
        await rerun(failed.id, "alice")
        await gh.wait_for(lambda: len(fake.runs) == 2, "a new check run")
        assert await status(job["job_id"]) == "created"
        again = await gh.worker_takes("kp920", "amd64")
        assert again["job_id"] == job["job_id"] and again["attempt"] == 2
        await gh.worker_reports("kp920", "amd64", job["job_id"], ok_result("bash", "zlib"))
        await gh.settled()

        # The old run is not the job's latest, and a run we never made is not ours:
        # both are ignored. A re-run of a job that succeeded says why nothing happens.
        await rerun(failed.id, "alice")
        await rerun(987654321, "alice")
        assert len(fake.runs) == 2 and len(fake.posted_comments(PR)) == comments + 1
        latest = list(fake.runs.values())[1]
        await rerun(latest.id, "alice")
        assert fake.posted_comments(PR)[-1].split("\n\n<!--")[0] == (
            f"@alice job #{job['job_id']} was not re-run: job {job['job_id']} is success; "
            "only failed or error jobs restart.")
        assert await status(job["job_id"]) == "success" and len(fake.runs) == 2
