"""The GitHub front end's decisions, without an event loop: commands, PR plans,
signatures, retry decisions, what GitHub is shown, configuration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from buildit.config import ServerConfig
from buildit.errors import ConfigError
from buildit.github.client import retry_after, retry_decision
from buildit.github.commands import (
    HELP,
    Build,
    BuildPlan,
    CommentEvent,
    Help,
    Refusal,
    Rerun,
    Unknown,
    command_event,
    packages_line,
    parse_command,
    plan_from_pull,
)
from buildit.github.config import GitHubConfig, load_github_config, notifier_options
from buildit.github.deliver import can_update
from buildit.github.render import (
    check_run_create,
    check_run_state,
    check_run_update,
    comment_text,
    defang,
    duration,
    marker,
    with_marker,
)
from buildit.github.webhook import sign, signature_valid
from tests.github.payloads import issue_comment, pull_request

REPO = "AOSC-Dev/aosc-os-abbs"
SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
CONFIG = GitHubConfig(webhook_secret="s", app_id="1", private_key="", repo=REPO,
                      public_url="https://buildit.aosc.io")

# ---------------------------------------------------------------- comment commands


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@aosc-buildit-bot build", Build(())),
        ("@aosc-buildit-bot build amd64 arm64", Build(("amd64", "arm64"))),
        ("@aosc-buildit-bot build amd64,arm64", Build(("amd64", "arm64"))),
        ("@aosc-buildit-bot build amd64, arm64, amd64", Build(("amd64", "arm64"))),
        ("  @AOSC-BuildIt-Bot  BUILD mainline\r\nplease, thanks", Build(("mainline",))),
        ("@aosc-buildit-bot help", Help()),
        ("@aosc-buildit-bot Help me", Help()),
        ("@aosc-buildit-bot", Unknown("")),
        ("@aosc-buildit-bot deploy everything", Unknown("deploy")),
        ("@aosc-buildit-bot `x`@someone", Unknown("xsomeone")),
        ("@aosc-buildit-bot\nbuild", Unknown("")),  # the command is on the first line
        ("LGTM. @aosc-buildit-bot build", None),  # not the first word
        ("@aosc-buildit-botx build", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_command(body: str | None, expected: Any) -> None:
    assert parse_command(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("#buildit bash zlib", ["bash", "zlib"]),
        ("#buildit bash, zlib", ["bash", "zlib"]),
        ("Update bash.\r\n\r\n#buildit bash,zlib\r\n#buildit other\r\n", ["bash", "zlib"]),
        ("  #buildit   groups/base  core/bash:+stage2 ", ["groups/base", "core/bash:+stage2"]),
        ("#BuildIt: bash", ["bash"]),
        ("#buildit", []),
        ("#builditbash zlib", None),  # not the tag
        ("see the #buildit line below", None),  # the line must start with it
        ("no tag at all", None),
        ("", None),
        (None, None),
    ],
)
def test_packages_line(body: str | None, expected: list[str] | None) -> None:
    assert packages_line(body) == expected


def test_open_pull_request_builds_its_head() -> None:
    pull = pull_request(7, repo=REPO, branch="bash-5.2.37", sha=SHA,
                        body="Update bash.\n#buildit bash, zlib")
    assert plan_from_pull(pull) == BuildPlan(branch="bash-5.2.37", sha=SHA,
                                             packages=("bash", "zlib"), merged=False)


def test_merged_pull_request_builds_stable_at_the_merge_commit() -> None:
    merge = "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
    pull = pull_request(7, repo=REPO, branch="bash-5.2.37", sha=SHA, body="#buildit bash",
                        merged_sha=merge)
    assert plan_from_pull(pull) == BuildPlan("stable", merge, ("bash",), merged=True)
    # a merged PR from a fork is fine: its commits are on stable now
    pull = pull_request(7, repo=REPO, branch="x", sha=SHA, body="#buildit bash",
                        fork="someone/aosc-os-abbs", merged_sha=merge)
    assert plan_from_pull(pull) == BuildPlan("stable", merge, ("bash",), merged=True)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"fork": "mallory/aosc-os-abbs"}, "comes from a fork (mallory/aosc-os-abbs)"),
        ({"body": "Update bash."}, "has no `#buildit` line"),
        ({"body": None}, "has no `#buildit` line"),
        ({"body": "#buildit"}, "names no packages"),
        ({"body": "#buildit bash Zlib!"}, "invalid package name(s): Zlib!"),
        ({"closed": True}, "closed without being merged"),
        ({"branch": "bad..branch"}, "not a valid branch name"),
    ],
)
def test_pull_requests_refused(changes: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"branch": "topic", "sha": SHA, "body": "#buildit bash"} | changes
    plan = plan_from_pull(pull_request(7, repo=REPO, **args))
    assert isinstance(plan, Refusal)
    assert reason in plan.reason


def test_incomplete_pull_request_is_refused() -> None:
    plan = plan_from_pull({"number": 7, "state": "open"})
    assert plan == Refusal("GitHub described #7 without its head and base")


def test_fork_whose_repository_was_deleted_is_refused() -> None:
    pull = pull_request(7, repo=REPO, branch="topic", sha=SHA, body="#buildit bash")
    pull["head"]["repo"] = None
    plan = plan_from_pull(pull)
    assert isinstance(plan, Refusal) and "a deleted repository" in plan.reason


def test_command_event_takes_only_bot_commands_on_pull_requests() -> None:
    payload = issue_comment(repo=REPO, pr=12, login="alice", body="@aosc-buildit-bot build")
    event = command_event("issue_comment", payload, REPO)
    assert isinstance(event, CommentEvent)
    assert (event.pr, event.login, event.command) == (12, "alice", Build(()))
    assert event.comment_id == payload["comment"]["id"]

    def ignored(event_name: str, payload: dict[str, Any], repo: str = REPO) -> str:
        result = command_event(event_name, payload, repo)
        assert isinstance(result, str)
        return result

    assert "not handled" in ignored("pull_request", payload)
    edited = issue_comment(repo=REPO, pr=12, login="alice", body="@aosc-buildit-bot build",
                           action="edited")
    assert "edited" in ignored("issue_comment", edited)
    on_issue = issue_comment(repo=REPO, pr=12, login="alice", body="@aosc-buildit-bot build",
                             on_pull_request=False)
    assert "not a pull request" in ignored("issue_comment", on_issue)
    assert "is not" in ignored("issue_comment", payload, "AOSC-Dev/other")
    chatter = issue_comment(repo=REPO, pr=12, login="alice", body="nice work")
    assert "does not start with" in ignored("issue_comment", chatter)
    bot = issue_comment(repo=REPO, pr=12, login="aosc-buildit-bot", user_kind="Bot",
                        body="@aosc-buildit-bot help")
    assert "bot" in ignored("issue_comment", bot)
    assert "malformed" in ignored("issue_comment", {"action": "created", "issue": [],
                                                    "comment": {}, "repository":
                                                    {"full_name": REPO}})


# ---------------------------------------------------------------- signatures


def test_signature() -> None:
    body = b'{"zen": "Design for failure."}'
    good = sign("secret", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert signature_valid("secret", body, good)
    assert signature_valid("secret", body, good.upper().replace("SHA256=", "sha256="))
    assert not signature_valid("secret", body + b" ", good)
    assert not signature_valid("other", body, good)
    assert not signature_valid("secret", body, None)
    assert not signature_valid("secret", body, "")
    assert not signature_valid("secret", body, good[7:])  # no scheme
    assert not signature_valid("secret", body, "sha1=" + good[7:])
    assert not signature_valid("secret", body, "sha256=zz\u00e9")
    assert not signature_valid("", body, sign("", body))  # no secret: nothing verifies


# ---------------------------------------------------------------- retries


def test_retry_decisions() -> None:
    now = 1_700_000_000.0
    assert retry_decision(502, {}, now) == (True, None)
    assert retry_decision(503, {"retry-after": "7"}, now) == (True, 7.0)
    assert retry_decision(429, {"retry-after": "30"}, now) == (True, 30.0)
    limited = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 42)}
    assert retry_decision(403, limited, now) == (True, 43.0)
    assert retry_decision(429, limited, now) == (True, 43.0)
    assert retry_decision(403, {"retry-after": "60"}, now) == (True, 60.0)  # secondary limit
    assert retry_decision(403, {"x-ratelimit-remaining": "12"}, now) == (False, None)
    assert retry_decision(404, {}, now) == (False, None)
    assert retry_decision(422, {"retry-after": "5"}, now) == (False, None)
    assert retry_decision(401, {}, now) == (True, None)  # the token is fetched again
    # an HTTP date, a reset in the past, absurd values
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 90))
    assert retry_after({"retry-after": date}, now) == 90.0
    assert retry_after({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) - 5)},
                       now) == 1.0
    assert retry_after({"retry-after": "99999999"}, now) == 3600.0
    assert retry_after({"retry-after": "soon"}, now) is None


def test_check_runs_only_move_forward() -> None:
    assert can_update("queued", "queued") and can_update("queued", "in_progress")
    assert can_update("queued", "completed") and can_update("in_progress", "completed")
    assert not can_update("in_progress", "queued")
    assert not can_update("completed", "queued") and not can_update("completed", "completed")


# ---------------------------------------------------------------- what GitHub shows


def facts(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": 31, "pipeline_id": 9, "github_pr": 7, "arch": "amd64", "head_sha": SHA,
        "status": "created", "event": "created", "at": "2025-11-29T10:00:00Z",
        "hostname": None, "packages": "bash,zlib", "successful_packages": [],
        "failed_package": None, "skipped_packages": [], "elapsed_secs": None,
        "log_url": None, "error_message": None, "build_success": None,
        "pushpkg_success": None,
    }
    return base | changes


def test_defang() -> None:
    assert defang("invalid package name(s): @everyone") == \
        "invalid package name(s): @\u200beveryone"
    assert defang("no `#buildit` line") == "no `#buildit` line"


def test_duration() -> None:
    assert duration(0) == "0 s"
    assert duration(59) == "59 s"
    assert duration(61) == "1 min 1 s"
    assert duration(3725) == "1 h 2 min"
    assert duration(None) == "an unknown time"


def test_check_run_states() -> None:
    queued = check_run_create(facts(), CONFIG, outbox_id=5)
    assert queued["name"] == "buildit amd64" and queued["head_sha"] == SHA
    assert queued["status"] == "queued" and "conclusion" not in queued
    assert queued["external_id"] == "buildit-job-31-outbox-5"
    assert queued["details_url"] == "https://buildit.aosc.io/jobs/31"
    assert "[#9](https://buildit.aosc.io/pipelines/9)" in queued["output"]["summary"]

    running = check_run_update(facts(status="running", event="started", hostname="kp920"),
                               CONFIG)
    assert running["status"] == "in_progress" and running["started_at"] == "2025-11-29T10:00:00Z"
    assert running["output"]["title"] == "Building on kp920"

    log = "https://buildit.aosc.io/api/job/log?job_id=31"
    done = check_run_update(facts(status="success", event="finished",
                                  successful_packages=["bash", "zlib"], elapsed_secs=75,
                                  log_url=log, build_success=True, pushpkg_success=True),
                            CONFIG)
    assert done["status"] == "completed" and done["conclusion"] == "success"
    assert done["completed_at"] == "2025-11-29T10:00:00Z"
    assert done["output"]["title"] == "Built 2 packages in 1 min 15 s"
    assert "`bash`, `zlib`" in done["output"]["summary"]
    assert f"[build log]({log})" in done["output"]["summary"]

    failed = check_run_state(facts(status="failed", event="finished",
                                   successful_packages=["bash"], failed_package="zlib",
                                   skipped_packages=["zsh"], elapsed_secs=12,
                                   build_success=False, pushpkg_success=False), CONFIG)
    assert (failed.status, failed.conclusion) == ("completed", "failure")
    assert failed.title == "zlib failed to build"
    assert "Failed package: `zlib`." in failed.summary
    assert "Built 1 package in 12 s: `bash`." in failed.summary
    assert "Skipped after the failure: `zsh`." in failed.summary

    push = check_run_state(facts(status="failed", event="finished",
                                 successful_packages=["bash"], build_success=True,
                                 pushpkg_success=False), CONFIG)
    assert push.title == "Built, but uploading the packages failed"

    error = check_run_state(facts(status="error", event="finished",
                                  error_message="ciel exploded"), CONFIG)
    assert (error.conclusion, error.title) == ("failure", "Error")
    assert "ciel exploded" in error.summary
    lost = check_run_state(facts(status="error", event="requeued",
                                 error_message="lost 3 times"), CONFIG)
    assert lost.conclusion == "failure"
    cancelled = check_run_state(facts(status="error", event="cancelled",
                                      error_message="cancelled by alice"), CONFIG)
    assert (cancelled.status, cancelled.conclusion) == ("completed", "cancelled")
    for event in ("requeued", "restarted", "handed_back"):
        again = check_run_state(facts(status="created", event=event), CONFIG)
        assert (again.status, again.conclusion) == ("queued", None)


def test_comments() -> None:
    assert comment_text({"issue": 7, "text": "hello"}, CONFIG) == "hello"
    created = comment_text({"issue": 7, "pipeline": {
        "pipeline_id": 9, "creator": "alice", "packages": "bash,zlib",
        "git_branch": "bash-5.2", "git_sha": SHA, "jobs": [["amd64", 31], ["arm64", 32]],
        "warnings": ["zlib is not built on riscv64"]}}, CONFIG)
    assert created.startswith(
        "Pipeline [#9](https://buildit.aosc.io/pipelines/9) created for @alice: `bash`, "
        "`zlib` on `bash-5.2` at `ec26c3e57ca3`, for 2 architectures.")
    assert "| amd64 | [#31](https://buildit.aosc.io/jobs/31) |" in created
    assert "- zlib is not built on riscv64" in created
    tagged = with_marker("hello", 42)
    assert tagged == "hello\n\n<!-- buildit:outbox:42 -->" and marker(42) in tagged
    assert len(with_marker("x" * 100_000, 1)) < 65_536
    assert "@aosc-buildit-bot build" in HELP and "#buildit" in HELP


# ---------------------------------------------------------------- configuration


def _server_config(tmp_path: Path, **extra: str) -> ServerConfig:
    return ServerConfig(database_url=None, data_dir=tmp_path,
                        public_url="https://buildit.aosc.io", extra=extra)


def test_github_config(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    assert load_github_config(_server_config(tmp_path)) is None
    with pytest.raises(ConfigError, match=r"half configured.*BUILDIT_GITHUB_APP_PRIVATE_KEY"):
        load_github_config(_server_config(tmp_path, BUILDIT_GITHUB_WEBHOOK_SECRET="s",
                                          BUILDIT_GITHUB_APP_ID="1"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "app.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    base = {"BUILDIT_GITHUB_WEBHOOK_SECRET": "s", "BUILDIT_GITHUB_APP_ID": "123",
            "BUILDIT_GITHUB_APP_PRIVATE_KEY": str(pem)}
    config = load_github_config(_server_config(tmp_path, **base))
    assert config is not None
    assert (config.org, config.repo, config.api_url) == (
        "AOSC-Dev", "AOSC-Dev/aosc-os-abbs", "https://api.github.com")
    assert config.installation_id is None and config.app_id == "123"
    assert config.job_url(3) == "https://buildit.aosc.io/jobs/3"
    assert "s" not in repr(config).split("app_id")[0].replace("GitHubConfig(", "")
    config = load_github_config(_server_config(
        tmp_path, **base, BUILDIT_GITHUB_INSTALLATION_ID="99", BUILDIT_GITHUB_REPO="me/tree",
        BUILDIT_GITHUB_API_URL="http://127.0.0.1:1234/"))
    assert config is not None and config.installation_id == 99 and config.repo == "me/tree"
    assert config.api_url == "http://127.0.0.1:1234"
    for name, value, message in [
        ("BUILDIT_GITHUB_APP_ID", "abc", "must be a number"),
        ("BUILDIT_GITHUB_INSTALLATION_ID", "x1", "must be a number"),
        ("BUILDIT_GITHUB_REPO", "no-slash", "owner/name"),
        ("BUILDIT_GITHUB_API_URL", "ftp://x", "http"),
        ("BUILDIT_GITHUB_APP_PRIVATE_KEY", str(tmp_path / "missing.pem"), "cannot read"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_github_config(_server_config(tmp_path, **(base | {name: value})))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_github_config(_server_config(tmp_path, **(base | {
            "BUILDIT_GITHUB_APP_PRIVATE_KEY": str(junk)})))
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="not an RSA key"):
        load_github_config(_server_config(tmp_path, **(base | {
            "BUILDIT_GITHUB_APP_PRIVATE_KEY": str(ec_key)})))


def test_notifier_options(tmp_path: Path) -> None:
    assert notifier_options(_server_config(tmp_path)) == {}
    assert notifier_options(_server_config(
        tmp_path, BUILDIT_NOTIFY_BASE_DELAY="0.5", BUILDIT_NOTIFY_MAX_ATTEMPTS="4")) == {
        "base_delay": 0.5, "max_attempts": 4}
    with pytest.raises(ConfigError, match="positive"):
        notifier_options(_server_config(tmp_path, BUILDIT_NOTIFY_POLL_INTERVAL="-1"))
    with pytest.raises(ConfigError, match="positive number"):
        notifier_options(_server_config(tmp_path, BUILDIT_NOTIFY_LEASE="soon"))


def test_rerun_events_are_checked_like_comments() -> None:
    from tests.github.payloads import check_run_rerequested

    repo = "AOSC-Dev/aosc-os-abbs"
    sha = "0123456789abcdef0123456789abcdef01234567"
    good = check_run_rerequested(repo=repo, check_run_id=7, login="alice", head_sha=sha, pr=3)
    assert command_event("check_run", good, repo) == CommentEvent(3, "alice", Rerun(7), 0)
    by_bot = check_run_rerequested(repo=repo, check_run_id=7, login="ci[bot]", head_sha=sha,
                                   user_kind="Bot")
    assert command_event("check_run", by_bot, repo) == "re-run requested by a bot"
    for run_id in (True, 0, -1, "7", None):
        bad = check_run_rerequested(repo=repo, check_run_id=7, login="alice", head_sha=sha)
        bad["check_run"]["id"] = run_id
        assert command_event("check_run", bad, repo) == "malformed check_run payload"
    nobody = check_run_rerequested(repo=repo, check_run_id=7, login="alice", head_sha=sha)
    nobody["sender"] = {"login": ""}
    assert command_event("check_run", nobody, repo) == "check_run re-run without a sender"
    odd_pulls = check_run_rerequested(repo=repo, check_run_id=7, login="alice", head_sha=sha)
    odd_pulls["check_run"]["pull_requests"] = [{"number": "3"}]
    assert command_event("check_run", odd_pulls, repo) == CommentEvent(0, "alice", Rerun(7), 0)
