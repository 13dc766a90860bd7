"""The GitHub front end: PR comment commands, replies and check runs (issue #5).

    github = GitHub.from_config(config, services)   # None unless BUILDIT_GITHUB_* are set
    deliverers["github"] = github.deliver            # the outbox channel "github"
    ChildSpec("github", github.run)                  # the actor owning the HTTP client
    blueprints.append(github.blueprint)              # POST /api/github/webhook

Pure decisions live in :mod:`.commands` (what a comment and a PR ask for) and
:mod:`.render` (what GitHub shows); I/O in :mod:`.client` (the API as a GitHub App),
:mod:`.webhook`, :mod:`.frontend` and :mod:`.deliver`; SQL in
``buildit.db.github_queries``.
"""

from __future__ import annotations

from buildit.github.config import GitHubConfig, load_github_config, notifier_options
from buildit.github.frontend import GitHub

__all__ = ["GitHub", "GitHubConfig", "load_github_config", "notifier_options"]
