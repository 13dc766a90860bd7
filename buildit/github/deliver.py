"""Delivers the ``github`` outbox channel: comments and check runs.

At least once, and repeats are harmless:

- a comment carries ``<!-- buildit:outbox:<id> -->``; a retry first looks for it on
  the pull request and, when the earlier attempt did post, records that comment;
- a check run is created with ``external_id = buildit-job-<job>-outbox-<id>``; a retry
  looks for that run on the commit before creating one; updates are idempotent.

GitHub errors become notifier outcomes: 5xx, 429, 403 rate limits, 401 and network
errors retry (after ``Retry-After`` / the rate-limit reset when given); other 4xx
give up at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from buildit import clock
from buildit.actors.notifier import Delivered, GiveUp, Outcome, Retry
from buildit.db import Database, github_queries, queries
from buildit.github import render
from buildit.github.client import GitHubAPI, GitHubError
from buildit.github.config import GitHubConfig

log = logging.getLogger(__name__)


def can_update(current_status: str, target_status: str) -> bool:
    """May a run in ``current_status`` be PATCHed to ``target_status``?

    GitHub moves a run only forward: queued -> in_progress -> completed.
    """
    order = {"queued": 0, "in_progress": 1, "completed": 2}
    if current_status == "completed":
        return False
    return order[target_status] >= order[current_status]


class GitHubDeliverer:
    def __init__(self, config: GitHubConfig, db: Database,
                 api: Callable[[], GitHubAPI | None]) -> None:
        self.config = config
        self.db = db
        self._api = api

    async def __call__(self, item: queries.OutboxItem) -> Outcome:
        api = self._api()
        if api is None:
            return Retry("the GitHub front end is not running yet")
        try:
            if item.kind == github_queries.KIND_COMMENT:
                return await self._comment(api, item)
            if item.kind == github_queries.KIND_CHECK_RUN:
                return await self._check_run(api, item)
        except GitHubError as exc:
            if exc.retryable:
                return Retry(exc.message, exc.retry_after)
            return GiveUp(exc.message)
        except (KeyError, TypeError, ValueError) as exc:
            return GiveUp(f"malformed {item.kind} notification: {exc.__class__.__name__}: {exc}")
        return GiveUp(f"the github channel has no kind {item.kind!r}")

    async def _comment(self, api: GitHubAPI, item: queries.OutboxItem) -> Outcome:
        issue = int(item.payload["issue"])
        if item.attempts > 1:
            found = await api.find_comment(issue, render.marker(item.id))
            if found is not None:
                log.info("outbox %d: comment %s was posted by an earlier attempt", item.id,
                         found.get("id"))
                return Delivered({"comment_id": found.get("id"), "found": True})
        body = render.with_marker(render.comment_text(item.payload, self.config), item.id)
        created = await api.post_comment(issue, body)
        return Delivered({"comment_id": created.get("id")})

    async def _check_run(self, api: GitHubAPI, item: queries.OutboxItem) -> Outcome:
        facts: dict[str, Any] = item.payload
        job_id = int(facts["job_id"])
        sha = str(facts["head_sha"])
        update = render.check_run_update(facts, self.config)
        target = str(update["status"])
        current = await self.db.read(github_queries.check_run_of, job_id)
        if current is not None and current.head_sha == sha:
            if can_update(current.status, target):
                await api.update_check_run(current.check_run_id, update)
                await self._remember(job_id, current.check_run_id, sha, target)
                return Delivered({"check_run_id": current.check_run_id, "status": target})
            if current.status == "in_progress":
                # Back to the queue: close this run; the job gets a new one below.
                await api.update_check_run(current.check_run_id,
                                           render.requeued_body(self.config, job_id))
                await self._remember(job_id, current.check_run_id, sha, "completed")
        run: dict[str, Any] | None = None
        name = render.check_run_name(str(facts["arch"]))
        if item.attempts > 1:
            run = await api.find_check_run(sha, name, render.external_id(job_id, item.id))
        found = run is not None
        if run is None:
            run = await api.create_check_run(render.check_run_create(facts, self.config, item.id))
        check_run_id = int(run["id"])
        await self._remember(job_id, check_run_id, sha, target)
        return Delivered({"check_run_id": check_run_id, "status": target, "created": True,
                          "found": found})

    async def _remember(self, job_id: int, check_run_id: int, sha: str, status: str) -> None:
        await self.db.run(github_queries.remember_check_run, job_id, check_run_id, sha, status,
                          clock.now())
