"""Decisions about GitHub events, free of I/O: which events carry a command, what
the command says, and what a pull request asks to build.

    >>> parse_command("@aosc-buildit-bot build amd64, arm64")
    Build(archs=('amd64', 'arm64'))
    >>> packages_line("Fix things\\r\\n#buildit bash, zlib\\r\\n")
    ['bash', 'zlib']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from buildit import domain
from buildit.errors import Unprocessable

BOT = "@aosc-buildit-bot"
BUILDIT_TAG = "#buildit"

HELP = f"""\
I build the packages a pull request names, for the architectures asked:

- `{BOT} build` builds for every architecture the packages support;
- `{BOT} build amd64 arm64` (or `amd64,arm64`, or `mainline`) builds for those;
- `{BOT} help` shows this message.

The packages come from the first line of the pull request's description that starts
with `{BUILDIT_TAG}`, e.g. `{BUILDIT_TAG} bash zlib` or `{BUILDIT_TAG} bash, zlib`.
An open pull request is built at its head commit on its branch; a merged one on
`stable` at its merge commit. Pull requests from forks are built once merged.
Only members of the organization may start builds."""


@dataclass(frozen=True)
class Build:
    archs: tuple[str, ...]  # as written; empty: what the packages support


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Unknown:
    word: str


@dataclass(frozen=True)
class Rerun:
    """The "Re-run" button of one of our check runs (``check_run`` ``rerequested``)."""

    check_run_id: int


Command = Build | Help | Unknown | Rerun


def parse_command(body: str | None) -> Command | None:
    """The command of a comment whose first word mentions the bot, else None.

    Only the first line counts: what follows may be prose for humans.
    """
    if not body:
        return None
    first_line = body.strip().split("\n", 1)[0].strip()
    words = first_line.split()
    if not words or words[0].lower() != BOT:
        return None
    rest = words[1:]
    if not rest:
        return Unknown("")
    verb = rest[0].lower()
    if verb == "build":
        return Build(tuple(domain.split_list(" ".join(rest[1:]))))
    if verb == "help":
        return Help()
    return Unknown(re.sub(r"[^\w.+-]", "", rest[0])[:50])


def packages_line(body: str | None) -> list[str] | None:
    """The packages of the first ``#buildit`` line of a PR description, or None.

    An empty list means the line is there but names nothing.
    """
    for line in (body or "").splitlines():
        text = line.strip()
        if text.lower().startswith(BUILDIT_TAG) and (
            len(text) == len(BUILDIT_TAG) or text[len(BUILDIT_TAG)] in " \t,:"
        ):
            rest = text[len(BUILDIT_TAG):].lstrip(":")
            return domain.split_list(rest)
    return None


@dataclass(frozen=True)
class BuildPlan:
    branch: str
    sha: str
    packages: tuple[str, ...]
    merged: bool


@dataclass(frozen=True)
class Refusal:
    reason: str


def plan_from_pull(pull: Mapping[str, Any]) -> BuildPlan | Refusal:
    """What a pull request (``GET /repos/{owner}/{repo}/pulls/{n}``) asks to build."""
    number = pull.get("number")
    merged = bool(pull.get("merged")) or pull.get("merged_at") is not None
    head = pull.get("head")
    base = pull.get("base")
    if not isinstance(head, Mapping) or not isinstance(base, Mapping):
        return Refusal(f"GitHub described #{number} without its head and base")
    branch: Any
    sha: Any
    if merged:
        branch, sha = "stable", pull.get("merge_commit_sha")
        if not isinstance(sha, str) or not sha:
            return Refusal(f"#{number} is merged but GitHub reports no merge commit")
    else:
        if pull.get("state") == "closed":
            return Refusal(f"#{number} is closed without being merged; nothing to build")
        head_repo = (head.get("repo") or {}).get("full_name")
        base_repo = (base.get("repo") or {}).get("full_name")
        if not head_repo or head_repo != base_repo:
            source = head_repo or "a deleted repository"
            return Refusal(
                f"#{number} comes from a fork ({source}); pull requests from forks are "
                "built only once merged"
            )
        branch, sha = head.get("ref"), head.get("sha")
        if not isinstance(branch, str) or not isinstance(sha, str):
            return Refusal(f"#{number} has no head branch and commit")
    packages = packages_line(pull.get("body"))
    if packages is None:
        return Refusal(
            f"the description of #{number} has no `{BUILDIT_TAG}` line naming the packages "
            f"to build (e.g. `{BUILDIT_TAG} bash zlib`)"
        )
    if not packages:
        return Refusal(f"the `{BUILDIT_TAG}` line of #{number} names no packages")
    try:
        names = domain.validate_packages(packages)
        branch = domain.validate_branch(branch)
        sha = domain.validate_sha(sha)
    except Unprocessable as exc:
        return Refusal(exc.message)
    return BuildPlan(branch=branch, sha=sha, packages=tuple(names), merged=merged)


@dataclass(frozen=True)
class CommentEvent:
    """An ``issue_comment`` ``created`` on a pull request that mentions the bot first, or
    a ``check_run`` ``rerequested`` (``Rerun``; ``pr`` 0 when GitHub names no pull
    request, ``comment_id`` 0)."""

    pr: int
    login: str
    command: Command
    comment_id: int


def _other_repository(payload: Mapping[str, Any], repo: str) -> str | None:
    """Why a delivery about another repository is ignored; None when it is ``repo``."""
    repository = payload.get("repository") or {}
    full_name = repository.get("full_name") if isinstance(repository, Mapping) else None
    if not isinstance(full_name, str) or full_name.lower() != repo.lower():
        return f"repository {full_name!r} is not {repo}"
    return None


def command_event(event: str, payload: Mapping[str, Any], repo: str) -> CommentEvent | str:
    """The command a webhook delivery carries, or why it is ignored."""
    if event == "check_run":
        return rerun_event(payload, repo)
    if event != "issue_comment":
        return f"event {event!r} is not handled"
    if payload.get("action") != "created":
        return f"issue_comment action {payload.get('action')!r} is not handled"
    if (elsewhere := _other_repository(payload, repo)) is not None:
        return elsewhere
    issue = payload.get("issue")
    comment = payload.get("comment")
    if not isinstance(issue, Mapping) or not isinstance(comment, Mapping):
        return "malformed issue_comment payload"
    if not issue.get("pull_request"):
        return "comment on an issue, not a pull request"
    user = comment.get("user")
    login = user.get("login") if isinstance(user, Mapping) else None
    if not isinstance(user, Mapping) or not isinstance(login, str) or not login:
        return "comment without an author"
    if user.get("type") == "Bot":
        return "comment by a bot"
    command = parse_command(comment.get("body") if isinstance(comment.get("body"), str)
                            else None)
    if command is None:
        return "comment does not start with " + BOT
    number = issue.get("number")
    comment_id = comment.get("id")
    if not isinstance(number, int) or number <= 0 or not isinstance(comment_id, int):
        return "malformed issue_comment payload"
    return CommentEvent(pr=number, login=login, command=command, comment_id=comment_id)


def rerun_event(payload: Mapping[str, Any], repo: str) -> CommentEvent | str:
    """A person pressed "Re-run" on a check run (ours or not: the front end looks)."""
    if payload.get("action") != "rerequested":
        return f"check_run action {payload.get('action')!r} is not handled"
    if (elsewhere := _other_repository(payload, repo)) is not None:
        return elsewhere
    check_run = payload.get("check_run")
    sender = payload.get("sender")
    if not isinstance(check_run, Mapping) or not isinstance(sender, Mapping):
        return "malformed check_run payload"
    run_id = check_run.get("id")
    login = sender.get("login")
    if not isinstance(run_id, int) or isinstance(run_id, bool) or run_id <= 0:
        return "malformed check_run payload"
    if not isinstance(login, str) or not login:
        return "check_run re-run without a sender"
    if sender.get("type") == "Bot":
        return "re-run requested by a bot"
    pr = 0
    pulls = check_run.get("pull_requests")
    if isinstance(pulls, list) and pulls and isinstance(pulls[0], Mapping):
        number = pulls[0].get("number")
        if isinstance(number, int) and not isinstance(number, bool) and number > 0:
            pr = number
    return CommentEvent(pr=pr, login=login, command=Rerun(run_id), comment_id=0)
