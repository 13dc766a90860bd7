"""PR comment commands end to end: a signed webhook delivery over real HTTP, a real
server and PostgreSQL, a fake GitHub, and a simulated worker polling and reporting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from buildit.db import queries
from buildit.github.webhook import sign
from tests.abbs_tree import commit, init_tree, package, switch
from tests.conftest import ok_result
from tests.github.conftest import HEAD_SHA, MERGE_SHA, PR, REPO, SECRET, GitHubServer
from tests.github.payloads import issue_comment, ping, pull_request

BODY = "Update bash and zlib.\r\n\r\n#buildit bash, zlib\r\n"


def open_pr(gh: GitHubServer, *, number: int = PR, body: str | None = BODY,
            **kwargs: Any) -> None:
    gh.fake.pulls[number] = pull_request(number, repo=REPO, branch="bash-5.2.37",
                                         sha=HEAD_SHA, body=body, **kwargs)


def comment(body: str, *, login: str = "alice", pr: int = PR) -> dict[str, Any]:
    return issue_comment(repo=REPO, pr=pr, login=login, body=body)


async def command(gh: GitHubServer, body: str, **kwargs: Any) -> str:
    """Send a comment; wait for the bot's one reply and return it."""
    before = len(gh.fake.posted_comments(PR))
    r = await gh.send("issue_comment", comment(body, **kwargs))
    assert r.status_code == 202, r.text
    replies = await gh.comments(before + 1)
    return replies[before]


async def test_member_builds_a_pull_request_end_to_end(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        r = await gh.send("issue_comment", comment("@aosc-buildit-bot build amd64 arm64"))
        assert r.status_code == 202 and "accepted" in r.json()

        reply = (await gh.comments(1))[0]
        [pipeline] = await gh.pipelines()
        pid = pipeline["id"]
        info = (await gh.client.get("/api/pipeline/info", params={"pipeline_id": pid})).json()
        assert info["packages"] == "bash,zlib" and info["git_branch"] == "bash-5.2.37"
        assert info["git_sha"] == HEAD_SHA and info["archs"] == "amd64,arm64"
        assert info["source"] == "github" and info["github_pr"] == PR
        assert info["creator_github_login"] == "alice"
        user = await gh.server.db.read(queries.user_by_login, "alice")
        assert user is not None and user.role == "developer"
        jobs = {j["arch"]: j["job_id"] for j in info["jobs"]}

        assert reply.startswith(
            f"Pipeline [#{pid}](http://buildit.test/pipelines/{pid}) created for @alice: "
            f"`bash`, `zlib` on `bash-5.2.37` at `{HEAD_SHA[:12]}`, for 2 architectures.")
        for arch, job in jobs.items():
            assert f"| {arch} | [#{job}](http://buildit.test/jobs/{job}) |" in reply
        assert "<!-- buildit:outbox:" in reply

        # one queued check run per arch on the PR's head commit
        await gh.wait_for(lambda: len(gh.fake.runs_on(HEAD_SHA)) == 2, "two check runs")
        runs = {r.name: r for r in gh.fake.runs_on(HEAD_SHA)}
        assert set(runs) == {"buildit amd64", "buildit arm64"}
        amd64, arm64 = runs["buildit amd64"], runs["buildit arm64"]
        assert amd64.details_url == f"http://buildit.test/jobs/{jobs['amd64']}"
        assert amd64.status == arm64.status == "queued"

        # a worker takes amd64: in progress, with its hostname; then it succeeds
        job = await gh.worker_takes("kp920", "amd64")
        assert job["job_id"] == jobs["amd64"] and job["git_sha"] == HEAD_SHA
        await gh.wait_for(lambda: amd64.status == "in_progress", "amd64 in progress")
        assert amd64.output["title"] == "Building on kp920"
        await gh.worker_reports("kp920", "amd64", job["job_id"], ok_result("bash", "zlib"))
        await gh.wait_for(lambda: amd64.status == "completed", "amd64 completed")
        assert amd64.conclusion == "success"
        assert amd64.output["title"] == "Built 2 packages in 12 s"
        log_url = f"http://buildit.test/api/job/log?job_id={jobs['amd64']}"
        assert f"[build log]({log_url})" in amd64.output["summary"]

        # arm64 fails on zlib
        job = await gh.worker_takes("ft2000", "arm64")
        await gh.wait_for(lambda: arm64.status == "in_progress", "arm64 in progress")
        await gh.worker_reports("ft2000", "arm64", job["job_id"],
                                ok_result("bash", build_success=False, failed="zlib"))
        await gh.wait_for(lambda: arm64.status == "completed", "arm64 completed")
        assert arm64.conclusion == "failure" and arm64.output["title"] == "zlib failed to build"
        await gh.settled()

    assert [h[:2] for h in amd64.history] == [
        ("queued", None), ("in_progress", None), ("completed", "success")]
    assert [h[:2] for h in arm64.history] == [
        ("queued", None), ("in_progress", None), ("completed", "failure")]
    assert len(gh.fake.runs) == 2 and len(gh.fake.posted_comments(PR)) == 1
    # authenticated as the App: the installation found once, one token for everything
    assert not gh.fake.refused()
    assert len(gh.fake.succeeded("GET", r"/installation$")) == 1
    assert len(gh.fake.succeeded("POST", r"/access_tokens$")) == 1
    assert len(gh.fake.succeeded("GET", r"/orgs/AOSC-Dev/members/alice$")) == 1


async def test_merged_pull_request_builds_stable_at_the_merge_commit(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh, merged_sha=MERGE_SHA)
        reply = await command(gh, "@aosc-buildit-bot build riscv64")
        [pipeline] = await gh.pipelines()
        assert pipeline["git_branch"] == "stable" and pipeline["git_sha"] == MERGE_SHA
        assert pipeline["archs"] == "riscv64"
        assert "on `stable` at `c4295bd74fb0`" in reply
        await gh.wait_for(lambda: len(gh.fake.runs_on(MERGE_SHA)) == 1, "a check run")


async def test_no_archs_means_every_configured_arch(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        reply = await command(gh, "@aosc-buildit-bot build")
        [pipeline] = await gh.pipelines()
        assert pipeline["archs"] == "amd64,arm64,riscv64"
        assert "for 3 architectures" in reply
        await gh.wait_for(lambda: len(gh.fake.runs_on(HEAD_SHA)) == 3, "three check runs")


async def test_no_archs_means_what_the_packages_tree_allows(
    make_github_server: Callable[..., Awaitable[GitHubServer]], tmp_path: Path
) -> None:
    tree = tmp_path / "abbs"
    no_riscv = 'FAIL_ARCH="riscv64"\n'
    init_tree(tree, {**package("core", "bash"), **package("app-misc", "norv", defines=no_riscv)})
    switch(tree, "norv-1.0", create_from="stable")
    sha = commit(tree, package("app-misc", "norv", defines=no_riscv, spec="VER=1.1\n"),
                 "norv: update")
    switch(tree, "stable")
    gh = await make_github_server(abbs_path=tree)
    with trio.fail_after(30):
        gh.fake.pulls[PR] = pull_request(PR, repo=REPO, branch="norv-1.0", sha=sha,
                                         body="#buildit norv")
        await command(gh, "@aosc-buildit-bot build")
        [pipeline] = await gh.pipelines()
        assert pipeline["archs"] == "amd64,arm64" and pipeline["git_sha"] == sha
        await gh.wait_for(lambda: len(gh.fake.runs_on(sha)) == 2, "two check runs")


async def _nothing_built(gh: GitHubServer) -> None:
    assert await gh.pipelines() == []
    counts = await gh.server.counts()
    assert counts["pipelines"] == counts["jobs"] == 0
    assert not gh.fake.runs


async def test_fork_is_refused_with_the_reason(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh, fork="mallory/aosc-os-abbs")
        reply = await command(gh, "@aosc-buildit-bot build")
        assert reply.startswith(
            f"@alice I cannot build this: #{PR} comes from a fork (mallory/aosc-os-abbs); "
            "pull requests from forks are built only once merged.")
        await _nothing_built(gh)


async def test_non_member_is_told_why_and_nothing_is_built(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        reply = await command(gh, "@aosc-buildit-bot build amd64", login="mallory")
        assert reply.startswith("@mallory only members of the AOSC-Dev organization may start "
                                "builds")
        await _nothing_built(gh)
        assert await gh.server.db.read(queries.user_by_login, "mallory") is None
        assert not gh.fake.succeeded("GET", r"/pulls/")  # the PR was not even read


async def test_pull_request_without_buildit_line(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh, body="Update bash.\n\nbuildit bash")
        reply = await command(gh, "@aosc-buildit-bot build")
        assert f"the description of #{PR} has no `#buildit` line" in reply
        await _nothing_built(gh)


async def test_unknown_arch_and_bad_package_names(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        reply = await command(gh, "@aosc-buildit-bot build amd64 sparc64")
        assert reply.startswith("@alice unknown architecture 'sparc64'; known: amd64, arm64, "
                                "riscv64, noarch, mainline")
        open_pr(gh, body="#buildit bash ../../etc @everyone")
        reply = await command(gh, "@aosc-buildit-bot build")
        assert "invalid package name(s): ../../etc, @\u200beveryone" in reply
        await _nothing_built(gh)


async def test_help_and_unknown_commands(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        reply = await command(gh, "@aosc-buildit-bot help")
        assert reply.startswith("I build the packages a pull request names")
        reply = await command(gh, "@aosc-buildit-bot deploy")
        assert reply.startswith("@alice `deploy` is not a command I know.")
        assert "I build the packages a pull request names" in reply
        await _nothing_built(gh)
        assert not gh.fake.succeeded("GET", r"/members/")


async def test_bad_signatures_and_replays_change_nothing(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        payload = comment("@aosc-buildit-bot build amd64")
        before = await gh.server.counts()
        for signature in ("", "sha256=" + "0" * 64, "sha1=abc"):
            r = await gh.send("issue_comment", payload, signature=signature)
            assert r.status_code == 401, r.text
            assert "X-Hub-Signature-256" in r.json()["error"]
        r = await gh.send("issue_comment", payload, secret="not-the-secret")
        assert r.status_code == 401
        assert await gh.server.counts() == before
        assert gh.fake.calls == []

        r = await gh.send("issue_comment", payload, delivery="delivery-1")
        assert r.status_code == 202
        await gh.comments(1)
        await gh.settled()
        after = await gh.server.counts()
        assert after["pipelines"] == 1 and after["webhook_deliveries"] == 1
        calls = len(gh.fake.calls)
        for path in ("/api/github/webhook", "/api/webhook"):  # today's path too
            r = await gh.send("issue_comment", payload, delivery="delivery-1", path=path)
            assert r.status_code == 200 and r.json() == {"duplicate": "delivery-1"}
        await trio.sleep(0.3)  # what a replay would cause has had time to show
        assert await gh.server.counts() == after
        assert len(gh.fake.calls) == calls and len(gh.fake.posted_comments(PR)) == 1


async def test_the_old_webhook_path_takes_commands_too(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        r = await gh.send("issue_comment", comment("@aosc-buildit-bot help"),
                          path="/api/webhook")
        assert r.status_code == 202
        await gh.comments(1)


async def test_what_is_not_a_command(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        before = await gh.server.counts()
        r = await gh.send("ping", ping())
        assert r.status_code == 200 and r.json()["pong"] is True
        r = await gh.send("pull_request", {"action": "opened", "number": PR,
                                           "pull_request": gh.fake.pulls[PR]})
        assert r.status_code == 200 and "not handled" in r.json()["ignored"]
        r = await gh.send("issue_comment", comment("Looks good to me"))
        assert r.status_code == 200 and "ignored" in r.json()
        on_issue = issue_comment(repo=REPO, pr=PR, login="alice", on_pull_request=False,
                                 body="@aosc-buildit-bot build")
        r = await gh.send("issue_comment", on_issue)
        assert r.json() == {"ignored": "comment on an issue, not a pull request"}
        elsewhere = issue_comment(repo="AOSC-Dev/other", pr=PR, login="alice",
                                  body="@aosc-buildit-bot build")
        r = await gh.send("issue_comment", elsewhere)
        assert r.status_code == 200 and "is not AOSC-Dev/aosc-os-abbs" in r.json()["ignored"]

        # malformed requests: clear 4xx, nothing stored
        r = await gh.send("issue_comment", None, body=b'{"action": "created", ')
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = await gh.send("issue_comment", None, body=b"[1, 2]")
        assert r.status_code == 400 and "JSON object" in r.json()["error"]
        r = await gh.send("issue_comment", None, body=b"payload=%7B%7D",
                          content_type="application/x-www-form-urlencoded")
        assert r.status_code == 415 and "application/json" in r.json()["error"]
        r = await gh.send("", comment("@aosc-buildit-bot help"))
        assert r.status_code == 400 and "X-GitHub-Event" in r.json()["error"]
        r = await gh.send("issue_comment", comment("@aosc-buildit-bot help"), delivery="x" * 200)
        assert r.status_code == 400 and "X-GitHub-Delivery" in r.json()["error"]
        big = b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}'
        # on a connection of its own (see test_bad_input.test_keep_alive_after_413)
        async with httpx.AsyncClient(base_url=gh.server.url, timeout=20,
                                     headers={"Connection": "close"}) as fresh:
            r = await fresh.post("/api/github/webhook", content=big, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
                "X-GitHub-Delivery": "big-1", "X-Hub-Signature-256": sign(SECRET, big)})
        assert r.status_code == 413 and "larger than" in r.json()["error"]
        r = await gh.client.get("/api/github/webhook")
        assert r.status_code == 405
        await trio.sleep(0.2)
        assert await gh.server.counts() == before
        assert gh.fake.posted_comments(PR) == []


async def test_webhook_is_absent_without_github_configuration(server: Any) -> None:
    with trio.fail_after(30):
        r = await server.client.post("/api/github/webhook", json={})
        assert r.status_code == 404
        assert "github" not in server.running.services.notifier.deliverers


async def test_installation_id_from_configuration(
    make_github_server: Callable[..., Awaitable[GitHubServer]]
) -> None:
    gh = await make_github_server(extra={"BUILDIT_GITHUB_INSTALLATION_ID": "77"})
    with trio.fail_after(30):
        open_pr(gh)
        await command(gh, "@aosc-buildit-bot help")
        await command(gh, "@aosc-buildit-bot build amd64")
        assert not gh.fake.succeeded("GET", r"/installation$")
        assert len(gh.fake.succeeded("POST", r"/app/installations/77/access_tokens$")) == 1


async def test_transient_github_errors_while_reading_are_retried(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        gh.fake.fail(502, count=1, match=lambda method, path: "/members/" in path)
        gh.fake.fail(429, count=1, headers={"Retry-After": "0"},
                     match=lambda method, path: "/pulls/" in path)
        reply = await command(gh, "@aosc-buildit-bot build amd64")
        assert reply.startswith("Pipeline [#")
        assert [c.status for c in gh.fake.calls if "/members/" in c.path] == [502, 204]
        assert [c.status for c in gh.fake.calls if "/pulls/" in c.path] == [429, 200]


async def test_github_failing_while_reading_is_answered_on_the_pull_request(
    gh: GitHubServer
) -> None:
    with trio.fail_after(30):
        open_pr(gh)
        gh.fake.fail(429, headers={"Retry-After": "0"},
                     match=lambda method, path: "/pulls/" in path)
        reply = await command(gh, "@aosc-buildit-bot build amd64")
        assert reply.startswith("@alice I could not handle this command because of GitHub "
                                "did not answer as expected (GitHub answered 429 to GET "
                                f"/repos/{REPO}/pulls/{PR}: You have exceeded a rate limit.)")
        assert len([c for c in gh.fake.calls if "/pulls/" in c.path]) == 3
        await _nothing_built(gh)
