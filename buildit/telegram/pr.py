"""What ``/pr`` needs from the GitHub front end: the build plan of a pull request.

The rules are the GitHub front end's (``buildit.github.commands.plan_from_pull``): the
PR head branch and sha, or ``stable`` and the merge commit once merged; forks
refused; the packages from the first line of the PR body starting with ``#buildit``.
``find_pr_reader`` returns a reader over ``buildit.github.client.GitHubAPI`` when
GitHub is configured (``BUILDIT_GITHUB_*``), otherwise None, and ``/pr`` answers
that it needs GitHub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx

from buildit.errors import NotFound, Unprocessable
from buildit.github.client import GitHubAPI, GitHubError
from buildit.github.commands import Refusal, plan_from_pull
from buildit.github.config import GitHubConfig, load_github_config
from buildit.http_client import make_client
from buildit.services import Services


@dataclass(frozen=True)
class PrPlan:
    number: int
    branch: str
    sha: str
    packages: str  # comma-separated


class PrReader(Protocol):
    def open(self) -> AbstractAsyncContextManager[object]:
        """Hold what reading needs (an HTTP client) open for the body."""
        ...

    async def read_pr(self, number: int) -> PrPlan:
        """The plan of PR ``number``; a ``RequestError`` says why it cannot be built."""
        ...


class GitHubPrReader:
    """Reads pull requests with the GitHub front end's client and rules."""

    def __init__(self, config: GitHubConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._api: GitHubAPI | None = None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[GitHubPrReader]:
        async with make_client(base_url=self.config.api_url, transport=self._transport) as http:
            self._api = GitHubAPI(http, self.config)
            try:
                yield self
            finally:
                self._api = None

    async def read_pr(self, number: int) -> PrPlan:
        if self._api is None:
            raise Unprocessable("GitHub cannot be reached right now; try again shortly")
        try:
            pull = await self._api.pull(number)
        except GitHubError as exc:
            if exc.status == 404:
                raise NotFound(f"pull request #{number} does not exist in "
                               f"{self.config.repo}") from None
            raise Unprocessable(f"GitHub could not be asked about #{number}: "
                                f"{exc.message}") from None
        plan = plan_from_pull(pull)
        if isinstance(plan, Refusal):
            raise Unprocessable(plan.reason)
        return PrPlan(number, plan.branch, plan.sha, ",".join(plan.packages))


def find_pr_reader(services: Services) -> PrReader | None:
    """A reader of pull requests when this server has GitHub configured, else None."""
    config = load_github_config(services.config)
    return GitHubPrReader(config) if config is not None else None
