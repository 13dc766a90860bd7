"""What every front end (HTTP API, web UI, GitHub, Telegram, CLI) asks of the backend.

``Services`` holds the handles of the running actors and the database; its methods
are the operations that change state: create a pipeline, restart a job, cancel a
pipeline. Front ends validate who may act, then call these.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from buildit import clock, domain
from buildit.actors.aggregator import Aggregator
from buildit.actors.fleet import Fleet
from buildit.actors.notifier import Notifier
from buildit.actors.scheduler import Scheduler
from buildit.config import ServerConfig
from buildit.db import Database, queries
from buildit.errors import NotFound, Unprocessable

if TYPE_CHECKING:
    from buildit.abbs import AbbsTree

log = logging.getLogger(__name__)
TOKEN_PREFIX = "bit_"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time compare; an empty secret never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Services:
    config: ServerConfig
    db: Database
    fleet: Fleet
    aggregator: Aggregator
    schedulers: dict[str, Scheduler] = field(default_factory=dict)
    tree: AbbsTree | None = None
    notifier: Notifier | None = None
    github: Any = None  # the GitHub front end (buildit.github.GitHub) when configured

    def wake(self, job_arch: str) -> None:
        scheduler = self.schedulers.get(domain.scheduler_arch(job_arch))
        if scheduler is not None:
            scheduler.wake()

    def wake_all(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.wake()

    async def authenticate_token(self, token: str | None) -> queries.User | None:
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return await self.db.single(queries.user_by_token_hash, hash_token(token), clock.now())

    async def create_pipeline(
        self,
        *,
        git_branch: str,
        packages: str | Sequence[str],
        archs: str | Sequence[str] | None,
        options: str | None = None,
        git_sha: str | None = None,
        source: str,
        creator: queries.User | None = None,
        github_pr: int | None = None,
        telegram_chat_id: int | None = None,
    ) -> queries.CreatedPipeline:
        branch = domain.validate_branch(git_branch)
        names = domain.validate_packages(packages)
        arch_list = (
            domain.validate_archs(archs, self.config.archs)
            if archs is not None and domain.split_list(archs)
            else None
        )
        options = domain.validate_options(options)
        sha = domain.validate_sha(git_sha) if git_sha else None
        requirements: dict[str, domain.Requirements] = {}
        warnings: list[str] = []
        if self.tree is not None:
            if sha is None:
                sha = await self.tree.resolve(branch)
            plan = await self.tree.plan(sha, names, arch_list, known_archs=self.config.archs)
            names, arch_list = plan.packages, plan.archs
            requirements, warnings = plan.requirements, plan.warnings
        elif sha is None:
            raise Unprocessable(
                "git_sha is required: this server has no packages tree to resolve the "
                "branch with (set BUILDIT_ABBS_PATH)"
            )
        if arch_list is None:
            arch_list = list(self.config.archs)
        package_str = ",".join(names)
        jobs = [
            queries.NewJob(arch, package_str, requirements.get(arch, domain.Requirements()))
            for arch in arch_list
        ]
        # One statement, unless a front end's notifications are queued with it.
        front_end = github_pr is not None or telegram_chat_id is not None
        run = self.db.run if front_end else self.db.single
        created = await run(
            queries.create_pipeline,
            git_branch=branch,
            git_sha=sha,
            packages=package_str,
            archs=",".join(arch_list),
            options=options,
            source=source,
            creator_user_id=creator.id if creator else None,
            github_pr=github_pr,
            telegram_chat_id=telegram_chat_id,
            jobs=jobs,
            warnings=warnings,
            now=clock.now(),
        )
        for arch in arch_list:
            self.wake(arch)
        log.info("pipeline %d created: %s @ %s (%s): %s", created.id, package_str, branch,
                 source, ", ".join(f"job {job} ({arch})" for arch, job in created.jobs.items()))
        return created

    async def restart_job(self, job_id: int) -> int:
        pipeline_id, arch = await self.db.run(queries.restart_job, job_id, clock.now())
        self.wake(arch)
        log.info("job %d restarted (pipeline %d, %s)", job_id, pipeline_id, arch)
        return pipeline_id

    async def cancel_pipeline(self, pipeline_id: int, by: str) -> list[int]:
        ended = await self.db.run(queries.cancel_pipeline, pipeline_id, by, clock.now())
        log.info("pipeline %d cancelled by %s; ended: %s", pipeline_id, by,
                 ", ".join(f"job {job}" for job in ended) or "no unfinished job")
        return ended

    async def create_token(self, github_login: str) -> str:
        user = await self.db.read(queries.user_by_login, github_login)
        if user is None:
            raise NotFound(f"no user {github_login!r}; add one with 'buildit user add'")
        token = new_token()
        await self.db.run(queries.insert_token, user.id, hash_token(token))
        return token
