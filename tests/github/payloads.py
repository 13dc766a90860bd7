"""Webhook payloads and API objects in GitHub's documented shapes.

Built after ``../shared/fixtures/github/`` (octokit/webhooks examples):
``issue_comment.created`` with the ``issue.pull_request`` object GitHub adds on pull
requests, and the pull request object of ``GET /repos/{owner}/{repo}/pulls/{n}``
(the ``pull_request`` of ``pull_request.*`` payloads). ``test_payload_shapes.py``
checks these against the real samples when that folder is present.
"""

from __future__ import annotations

import itertools
from typing import Any

API = "https://api.github.com"
WEB = "https://github.com"
_ids = itertools.count(492700400)


def user(login: str, *, user_id: int = 21031067, kind: str = "User") -> dict[str, Any]:
    return {
        "login": login,
        "id": user_id,
        "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": f"{API}/users/{login}",
        "html_url": f"{WEB}/{login}",
        "type": kind,
        "site_admin": False,
    }


def repository(full_name: str, *, repo_id: int = 186853002) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": repo_id,
        "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": user(owner, kind="Organization"),
        "html_url": f"{WEB}/{full_name}",
        "description": None,
        "fork": False,
        "url": f"{API}/repos/{full_name}",
        "default_branch": "stable",
    }


def issue_comment(*, repo: str, pr: int, login: str, body: str, on_pull_request: bool = True,
                  action: str = "created", user_kind: str = "User") -> dict[str, Any]:
    """An ``issue_comment`` webhook payload (``X-GitHub-Event: issue_comment``)."""
    comment_id = next(_ids)
    issue: dict[str, Any] = {
        "url": f"{API}/repos/{repo}/issues/{pr}",
        "repository_url": f"{API}/repos/{repo}",
        "comments_url": f"{API}/repos/{repo}/issues/{pr}/comments",
        "html_url": f"{WEB}/{repo}/{'pull' if on_pull_request else 'issues'}/{pr}",
        "id": 444500041,
        "node_id": "MDU6SXNzdWU0NDQ1MDAwNDE=",
        "number": pr,
        "title": "bash: update to 5.2.37",
        "user": user("Codertocat"),
        "labels": [],
        "state": "open",
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": 1,
        "created_at": "2025-11-28T22:17:31Z",
        "updated_at": "2025-11-29T05:00:42Z",
        "closed_at": None,
        "author_association": "MEMBER",
        "active_lock_reason": None,
        "body": "",
        "performed_via_github_app": None,
        "draft": False,
    }
    if on_pull_request:
        issue["pull_request"] = {
            "url": f"{API}/repos/{repo}/pulls/{pr}",
            "html_url": f"{WEB}/{repo}/pull/{pr}",
            "diff_url": f"{WEB}/{repo}/pull/{pr}.diff",
            "patch_url": f"{WEB}/{repo}/pull/{pr}.patch",
            "merged_at": None,
        }
    return {
        "action": action,
        "issue": issue,
        "comment": {
            "url": f"{API}/repos/{repo}/issues/comments/{comment_id}",
            "html_url": f"{WEB}/{repo}/pull/{pr}#issuecomment-{comment_id}",
            "issue_url": f"{API}/repos/{repo}/issues/{pr}",
            "id": comment_id,
            "node_id": "MDEyOklzc3VlQ29tbWVudDQ5MjcwMDQwMA==",
            "user": user(login, kind=user_kind),
            "created_at": "2025-11-29T05:00:42Z",
            "updated_at": "2025-11-29T05:00:42Z",
            "author_association": "MEMBER",
            "body": body,
            "performed_via_github_app": None,
        },
        "repository": repository(repo),
        "organization": {"login": repo.split("/")[0], "id": 38302899,
                         "url": f"{API}/orgs/{repo.split('/')[0]}"},
        "sender": user(login, kind=user_kind),
        "installation": {"id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="},
    }


def pull_request(number: int, *, repo: str, branch: str, sha: str, body: str | None,
                 fork: str | None = None, merged_sha: str | None = None,
                 closed: bool = False) -> dict[str, Any]:
    """A pull request as ``GET /repos/{owner}/{repo}/pulls/{n}`` returns it."""
    head_repo = fork or repo
    merged = merged_sha is not None
    return {
        "url": f"{API}/repos/{repo}/pulls/{number}",
        "id": 279147437,
        "node_id": "MDExOlB1bGxSZXF1ZXN0Mjc5MTQ3NDM3",
        "html_url": f"{WEB}/{repo}/pull/{number}",
        "number": number,
        "state": "closed" if merged or closed else "open",
        "locked": False,
        "title": "bash: update to 5.2.37",
        "user": user("Codertocat"),
        "body": body,
        "created_at": "2025-11-28T22:17:31Z",
        "updated_at": "2025-11-29T05:00:42Z",
        "closed_at": "2025-11-29T10:00:00Z" if merged or closed else None,
        "merged_at": "2025-11-29T10:00:00Z" if merged else None,
        "merge_commit_sha": merged_sha if merged else "c4295bd74fb0f4fda03689c3df3f2803b658fd85",
        "draft": False,
        "head": {
            "label": f"{head_repo.split('/')[0]}:{branch}",
            "ref": branch,
            "sha": sha,
            "user": user(head_repo.split("/")[0]),
            "repo": repository(head_repo, repo_id=186853003 if fork else 186853002),
        },
        "base": {
            "label": f"{repo.split('/')[0]}:stable",
            "ref": "stable",
            "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
            "user": user(repo.split("/")[0]),
            "repo": repository(repo),
        },
        "author_association": "MEMBER",
        "merged": merged,
        "mergeable": None,
        "rebaseable": None,
        "mergeable_state": "unknown",
        "merged_by": user("Codertocat") if merged else None,
        "comments": 0,
        "commits": 1,
        "additions": 1,
        "deletions": 1,
        "changed_files": 1,
    }


def ping(hook_id: int = 109948940) -> dict[str, Any]:
    return {"zen": "Anything added dilutes everything else.", "hook_id": hook_id,
            "hook": {"type": "App", "id": hook_id, "active": True, "events": ["issue_comment"],
                     "app_id": 12345}}


def check_run_rerequested(*, repo: str, check_run_id: int, login: str, head_sha: str,
                          name: str = "buildit amd64", pr: int | None = None,
                          user_kind: str = "User") -> dict[str, Any]:
    """A ``check_run`` ``rerequested`` webhook payload: someone pressed "Re-run"."""
    pulls = [] if pr is None else [{
        "url": f"{API}/repos/{repo}/pulls/{pr}", "id": 279147437, "number": pr,
        "head": {"ref": "changes", "sha": head_sha, "repo": {"id": 186853002}},
        "base": {"ref": "stable", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
                 "repo": {"id": 186853002}}}]
    return {
        "action": "rerequested",
        "check_run": {
            "id": check_run_id,
            "name": name,
            "head_sha": head_sha,
            "external_id": "",
            "url": f"{API}/repos/{repo}/check-runs/{check_run_id}",
            "html_url": f"{WEB}/{repo}/runs/{check_run_id}",
            "status": "completed",
            "conclusion": "failure",
            "started_at": "2026-11-29T10:00:00Z",
            "completed_at": "2026-11-29T10:05:00Z",
            "output": {"title": "Failed", "summary": "", "text": None,
                       "annotations_count": 0, "annotations_url": ""},
            "check_suite": {"id": 5, "head_branch": "changes", "head_sha": head_sha,
                            "status": "completed", "conclusion": "failure"},
            "app": {"id": 1, "slug": "aosc-buildit-bot", "name": "aosc-buildit-bot"},
            "pull_requests": pulls,
        },
        "repository": repository(repo),
        "sender": user(login, kind=user_kind),
        "installation": {"id": 2, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="},
    }
