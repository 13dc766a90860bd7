"""Our payload builders and decisions against GitHub's real sample payloads.

The samples live in ``../shared/fixtures/github/`` next to the project; a fresh clone
has no such folder, and these tests skip, saying so.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from buildit.github.commands import (
    Build,
    BuildPlan,
    CommentEvent,
    Refusal,
    Rerun,
    command_event,
)
from buildit.github.commands import plan_from_pull as plan
from tests.github.conftest import GitHubServer
from tests.github.payloads import check_run_rerequested, issue_comment, pull_request

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "github"


def sample(name: str) -> dict[str, Any]:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"the shared GitHub samples are absent ({path}); a fresh clone has none")
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def _keys_within(ours: dict[str, Any], real: dict[str, Any], where: str) -> None:
    extra = set(ours) - set(real)
    assert not extra, f"{where}: keys GitHub does not send: {sorted(extra)}"


def test_issue_comment_builder_has_the_real_shape() -> None:
    real = sample("issue_comment.created.1.json")
    ours = issue_comment(repo="Codertocat/Hello-World", pr=1, login="Codertocat", body="hi")
    _keys_within(ours, {**real, "installation": {}}, "payload")
    _keys_within({k: v for k, v in ours["issue"].items() if k != "pull_request"},
                 real["issue"], "issue")
    _keys_within(ours["comment"], real["comment"], "comment")
    _keys_within(ours["comment"]["user"], real["comment"]["user"], "comment.user")
    _keys_within(ours["repository"], real["repository"], "repository")
    assert real["action"] == ours["action"] == "created"
    assert type(real["issue"]["number"]) is type(ours["issue"]["number"]) is int


def test_pull_request_builder_has_the_real_shape() -> None:
    real = sample("pull_request.opened.json")["pull_request"]
    ours = pull_request(2, repo="Codertocat/Hello-World", branch="changes",
                        sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821", body="x")
    _keys_within(ours, real, "pull_request")
    for side in ("head", "base"):
        _keys_within(ours[side], real[side], side)
        _keys_within(ours[side]["repo"], real[side]["repo"], f"{side}.repo")


def test_real_comment_on_a_pull_request_is_a_command() -> None:
    payload = copy.deepcopy(sample("issue_comment.created.1.json"))
    repo = payload["repository"]["full_name"]
    assert isinstance(command_event("issue_comment", payload, repo), str)  # a plain issue
    payload["issue"]["pull_request"] = {
        "url": f"https://api.github.com/repos/{repo}/pulls/1", "merged_at": None}
    assert isinstance(command_event("issue_comment", payload, repo), str)  # no mention
    payload["comment"]["body"] = "@aosc-buildit-bot build amd64"
    event = command_event("issue_comment", payload, repo)
    assert event == CommentEvent(pr=1, login="Codertocat", command=Build(("amd64",)),
                                 comment_id=payload["comment"]["id"])
    edited = sample("issue_comment.edited.json")
    assert "edited" in str(command_event("issue_comment", edited, repo))


def test_real_check_run_rerequest_is_a_rerun() -> None:
    real = sample("check_run.rerequested.json")
    ours = check_run_rerequested(repo="github/hello-world", check_run_id=4, login="octocat",
                                 head_sha="d6fde92930d4715a2b49857d24b940956b26d2d3", pr=2)
    _keys_within(ours, real, "payload")
    _keys_within(ours["check_run"], real["check_run"], "check_run")
    _keys_within(ours["sender"], real["sender"], "sender")
    repo = real["repository"]["full_name"]
    assert command_event("check_run", real, repo) == CommentEvent(
        pr=0, login="octocat", command=Rerun(4), comment_id=0)
    assert command_event("check_run", ours, repo) == CommentEvent(
        pr=2, login="octocat", command=Rerun(4), comment_id=0)
    assert "not handled" in str(command_event("check_run", {**real, "action": "created"}, repo))
    assert "is not" in str(command_event("check_run", real, "AOSC-Dev/aosc-os-abbs"))


def test_real_pull_requests_plan() -> None:
    opened = copy.deepcopy(sample("pull_request.opened.json")["pull_request"])
    refusal = plan(opened)
    assert isinstance(refusal, Refusal) and "no `#buildit` line" in refusal.reason
    opened["body"] += "\r\n#buildit bash, zlib"
    assert plan(opened) == BuildPlan("changes", "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                                     ("bash", "zlib"), merged=False)
    closed = sample("pull_request.closed.json")["pull_request"]
    refusal = plan(closed)
    assert isinstance(refusal, Refusal) and "closed without being merged" in refusal.reason


async def test_real_deliveries_through_the_webhook(gh: GitHubServer) -> None:
    with trio.fail_after(30):
        before = await gh.server.counts()
        r = await gh.send("ping", sample("ping.with-app_id.json"))
        assert r.status_code == 200 and r.json()["zen"] == "Anything added dilutes everything else."
        for name, event in (("issue_comment.created.with-installation.json", "issue_comment"),
                            ("issue_comment.edited.json", "issue_comment"),
                            ("check_run.rerequested.json", "check_run"),
                            ("pull_request.opened.json", "pull_request")):
            r = await gh.send(event, sample(name))
            assert r.status_code == 200 and "ignored" in r.json(), (name, r.text)
        assert await gh.server.counts() == before
