"""The GitHub front end: the webhook, the actor that runs commands, the deliverer.

    GitHub (actor, under the supervisor)
    ├ owns the httpx client (``make_client``) and the API handle with its token cache
    └ ``concurrency`` tasks, each taking one ``WebhookCommand`` at a time from the
      bounded inbox the webhook fills

A ``build`` command: the commenter must be a member of the organization; the pull
request is read through the API; the pipeline is created with
``Services.create_pipeline`` — whose transaction also queues the reply comment and
the check runs (``github_queries.job_changed``). Refusals and errors are replied to
in one transaction of their own: nothing else has to commit with them. A command that
fails unexpectedly is logged and answered on the pull request.

Commands are at most once: a crash while a command runs loses it (the delivery id
stays remembered; GitHub's "redeliver" will be refused as a duplicate). The
notifications they cause are durable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import trio

from buildit import clock, domain
from buildit.abbs import AbbsError
from buildit.config import ServerConfig
from buildit.db import github_queries, queries
from buildit.errors import RequestError, Unprocessable
from buildit.github.client import GitHubAPI, GitHubError
from buildit.github.commands import (
    HELP,
    Build,
    Help,
    Refusal,
    Rerun,
    Unknown,
    plan_from_pull,
)
from buildit.github.config import GitHubConfig, load_github_config
from buildit.github.deliver import GitHubDeliverer
from buildit.github.render import defang
from buildit.github.webhook import WebhookCommand, webhook_blueprint
from buildit.http_client import make_client
from buildit.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_DELAYS = (0.5, 2.0)  # a command's GitHub calls are tried three times
MAX_COMMAND_WAIT = 30.0  # longer Retry-After: give up and say so


@dataclass(frozen=True)
class GitHubStatistics:
    received: int
    handled: int
    failed: int
    waiting: int


class GitHub:
    def __init__(
        self,
        config: GitHubConfig,
        services: Services,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        inbox_size: int = 32,
        concurrency: int = 4,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self.config = config
        self.services = services
        self.concurrency = concurrency
        self.retry_delays = tuple(retry_delays)
        self._transport = transport
        self._send, self._recv = trio.open_memory_channel[WebhookCommand](inbox_size)
        self.api: GitHubAPI | None = None
        self.deliver = GitHubDeliverer(config, services.db, lambda: self.api)
        self.blueprint = webhook_blueprint(config=config, db=services.db, submit=self.submit)
        self.received = 0
        self.handled = 0
        self.failed = 0

    @classmethod
    def from_config(cls, config: ServerConfig, services: Services, **options: Any
                    ) -> GitHub | None:
        """The front end, or None when ``BUILDIT_GITHUB_*`` leave GitHub off."""
        github_config = load_github_config(config)
        if github_config is None:
            return None
        return cls(github_config, services, **options)

    def statistics(self) -> GitHubStatistics:
        return GitHubStatistics(self.received, self.handled, self.failed,
                                self._recv.statistics().current_buffer_used)

    def submit(self, command: WebhookCommand) -> bool:
        """Called by the webhook handler; False when the inbox is full (see webhook.py)."""
        try:
            self._send.send_nowait(command)
        except trio.WouldBlock:
            return False
        self.received += 1
        return True

    async def run(self, *, task_status: trio.TaskStatus[GitHub] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with make_client(base_url=self.config.api_url, transport=self._transport) as http:
            self.api = GitHubAPI(http, self.config)
            try:
                async with trio.open_nursery() as nursery:
                    for _ in range(self.concurrency):
                        nursery.start_soon(self._work)
                    task_status.started(self)
            finally:
                self.api = None

    async def _work(self) -> None:
        while True:
            command = await self._recv.receive()
            await self.handle(command)

    async def handle(self, command: WebhookCommand) -> None:
        """Run one command; an unexpected failure is logged and answered on the PR."""
        try:
            await self._handle(command)
            self.handled += 1
        except Exception as exc:
            self.failed += 1
            log.exception("GitHub delivery %s (%s on #%d) failed", command.delivery_id,
                          type(command.event.command).__name__, command.event.pr)
            if isinstance(exc, GitHubError):
                why = f"GitHub did not answer as expected ({exc.message})"
            else:
                why = f"an internal error ({exc.__class__.__name__})"
            if not command.event.pr:
                return  # a re-run GitHub named no pull request for: nowhere to answer
            try:
                await self._reply(command, f"@{command.event.login} I could not handle this "
                                  f"command because of {why}. Please try again later.")
            except Exception:
                log.exception("could not queue the error reply to delivery %s",
                              command.delivery_id)

    async def _patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again after transient GitHub errors (5xx, rate limits)."""
        for delay in (*self.retry_delays, None):
            try:
                return await call()
            except GitHubError as exc:
                wait = exc.retry_after if exc.retry_after is not None else delay
                if not exc.retryable or delay is None or wait is None \
                        or wait > MAX_COMMAND_WAIT:
                    raise
                log.info("%s; trying again in %g s", exc.message, wait)
                await trio.sleep(wait)
        raise AssertionError("unreachable")

    async def _reply(self, command: WebhookCommand, text: str, *, issue: int | None = None
                     ) -> None:
        await self.services.db.run(
            github_queries.enqueue_comment,
            issue=issue if issue is not None else command.event.pr,
            text=text,
            dedup_key=f"github:reply:{command.delivery_id}",
            now=clock.now(),
        )

    async def _rerun(self, command: WebhookCommand, what: Rerun) -> None:
        """"Re-run" on a check run: a new attempt of its job when it failed or errored."""
        login = command.event.login
        found = await self.services.db.read(github_queries.job_of_check_run, what.check_run_id)
        if found is None or found.github_pr is None:
            log.info("GitHub: re-run of check run %d by %s, which is not the latest run of "
                     "a job; ignored", what.check_run_id, login)
            return
        pr = found.github_pr
        api = self.api
        if api is None:
            raise GitHubError("the GitHub client is not running", retryable=True)
        if not await self._patiently(lambda: api.is_member(login)):
            await self._reply(command, f"@{login} only members of the {self.config.org} "
                              f"organization may re-run builds, and GitHub says you are not "
                              "one.", issue=pr)
            return
        try:
            await self.services.restart_job(found.job_id)
        except RequestError as exc:
            await self._reply(command, f"@{login} job #{found.job_id} was not re-run: "
                              f"{defang(exc.message)}.", issue=pr)
            return
        log.info("GitHub: job %d re-run by %s from its check run on #%d", found.job_id,
                 login, pr)

    async def _handle(self, command: WebhookCommand) -> None:
        event = command.event
        login = event.login
        what = event.command
        if isinstance(what, Help):
            await self._reply(command, HELP)
            return
        if isinstance(what, Rerun):
            await self._rerun(command, what)
            return
        if isinstance(what, Unknown):
            said = f"`{what.word}` is not a command I know." if what.word else \
                "You mentioned me without a command."
            await self._reply(command, f"@{login} {said}\n\n{HELP}")
            return
        assert isinstance(what, Build)
        api = self.api
        if api is None:
            raise GitHubError("the GitHub client is not running", retryable=True)
        if not await self._patiently(lambda: api.is_member(login)):
            await self._reply(
                command,
                f"@{login} only members of the {self.config.org} organization may start "
                "builds, and GitHub says you are not one. Ask a member to comment "
                "`@aosc-buildit-bot build` for you.",
            )
            return
        archs = list(what.archs)
        if archs:
            try:
                domain.validate_archs(archs, self.services.config.archs)
            except Unprocessable as exc:
                await self._reply(command, f"@{login} {defang(exc.message)}")
                return
        pull = await self._patiently(lambda: api.pull(event.pr))
        plan = plan_from_pull(pull)
        if isinstance(plan, Refusal):
            await self._reply(command, f"@{login} I cannot build this: {defang(plan.reason)}.")
            return
        user = await self.services.db.run(queries.upsert_user, login, "developer")
        try:
            if self.services.tree is not None:
                # fetch the branch, so the tree holds the commits to plan from
                await self.services.tree.resolve(plan.branch)
            created = await self.services.create_pipeline(
                git_branch=plan.branch,
                packages=list(plan.packages),
                archs=archs or None,
                git_sha=plan.sha,
                source="github",
                creator=user,
                github_pr=event.pr,
            )
        except RequestError as exc:
            await self._reply(command,
                              f"@{login} the pipeline was not created: {defang(exc.message)}")
            return
        except AbbsError as exc:
            log.error("packages tree error for GitHub delivery %s: %s", command.delivery_id,
                      exc)
            await self._reply(command, f"@{login} the pipeline was not created: the packages "
                              f"tree could not be read ({defang(str(exc))}).")
            return
        log.info("GitHub: pipeline %d for #%d by %s", created.id, event.pr, login)
