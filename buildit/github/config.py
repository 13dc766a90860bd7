"""GitHub settings, read from ``ServerConfig.extra`` (``BUILDIT_GITHUB_*``).

GitHub is configured when the webhook secret, the App id and the App's private key
are all set; with none of them the front end is off (no webhook route, no
deliverer); with only some of them the server refuses to start, saying which are
missing. The private key is read and checked at startup, so a wrong path fails
``buildit serve`` at once rather than the first notification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from buildit.config import ServerConfig
from buildit.errors import ConfigError

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_ORG = "AOSC-Dev"
DEFAULT_REPO = "AOSC-Dev/aosc-os-abbs"
_REQUIRED = (
    "BUILDIT_GITHUB_WEBHOOK_SECRET",
    "BUILDIT_GITHUB_APP_ID",
    "BUILDIT_GITHUB_APP_PRIVATE_KEY",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


@dataclass(frozen=True)
class GitHubConfig:
    webhook_secret: str = field(repr=False)
    app_id: str
    private_key: str = field(repr=False)  # PEM text
    installation_id: int | None = None  # None: found through the API
    org: str = DEFAULT_ORG
    repo: str = DEFAULT_REPO  # owner/name
    api_url: str = DEFAULT_API_URL
    public_url: str = "http://127.0.0.1:3000"  # the web UI, for links

    def job_url(self, job_id: int) -> str:
        return f"{self.public_url}/jobs/{job_id}"

    def pipeline_url(self, pipeline_id: int) -> str:
        return f"{self.public_url}/pipelines/{pipeline_id}"


def load_github_config(config: ServerConfig) -> GitHubConfig | None:
    """The GitHub settings, or None when GitHub is not configured at all."""
    env = config.extra
    given = [name for name in _REQUIRED if env.get(name)]
    if not given:
        return None
    missing = [name for name in _REQUIRED if not env.get(name)]
    if missing:
        raise ConfigError(
            f"GitHub is half configured: {', '.join(given)} set but {', '.join(missing)} "
            "missing (set all three, or none to turn GitHub off)"
        )
    app_id = env["BUILDIT_GITHUB_APP_ID"].strip()
    if not app_id.isdigit():
        raise ConfigError(f"BUILDIT_GITHUB_APP_ID must be a number, got {app_id!r}")
    installation = (env.get("BUILDIT_GITHUB_INSTALLATION_ID") or "").strip()
    if installation and not installation.isdigit():
        raise ConfigError(
            f"BUILDIT_GITHUB_INSTALLATION_ID must be a number, got {installation!r}"
        )
    org = (env.get("BUILDIT_GITHUB_ORG") or DEFAULT_ORG).strip()
    if not _NAME_RE.match(org):
        raise ConfigError(f"BUILDIT_GITHUB_ORG is not an organization name: {org!r}")
    repo = (env.get("BUILDIT_GITHUB_REPO") or DEFAULT_REPO).strip()
    owner, _, name = repo.partition("/")
    if not (_NAME_RE.match(owner) and _NAME_RE.match(name)):
        raise ConfigError(f"BUILDIT_GITHUB_REPO must be owner/name, got {repo!r}")
    api_url = (env.get("BUILDIT_GITHUB_API_URL") or DEFAULT_API_URL).strip().rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        raise ConfigError(f"BUILDIT_GITHUB_API_URL must be an http(s) URL, got {api_url!r}")
    return GitHubConfig(
        webhook_secret=env["BUILDIT_GITHUB_WEBHOOK_SECRET"],
        app_id=app_id,
        private_key=_read_private_key(env["BUILDIT_GITHUB_APP_PRIVATE_KEY"]),
        installation_id=int(installation) if installation else None,
        org=org,
        repo=repo,
        api_url=api_url,
        public_url=config.public_url.rstrip("/"),
    )


def _read_private_key(path_text: str) -> str:
    path = Path(path_text).expanduser()
    try:
        pem = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"BUILDIT_GITHUB_APP_PRIVATE_KEY: cannot read {path}: {exc.strerror or exc}"
        ) from None
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"BUILDIT_GITHUB_APP_PRIVATE_KEY: {path} is not an unencrypted PEM private key "
            f"({exc})"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"BUILDIT_GITHUB_APP_PRIVATE_KEY: {path} is not an RSA key "
                          "(GitHub Apps sign with RS256)")
    return pem


def _positive(env: Mapping[str, str], name: str, convert: type[float] | type[int]
              ) -> float | int | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = convert(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def notifier_options(config: ServerConfig) -> dict[str, Any]:
    """Tuning of the notifier from ``BUILDIT_NOTIFY_*`` (only the settings given).

    Kept here until the notifier has settings of its own in ``ServerConfig``; tests
    use them to make retries fast without a virtual clock.
    """
    env = config.extra
    options: dict[str, Any] = {}
    for name, key, convert in (
        ("BUILDIT_NOTIFY_BASE_DELAY", "base_delay", float),
        ("BUILDIT_NOTIFY_POLL_INTERVAL", "poll_interval", float),
        ("BUILDIT_NOTIFY_MAX_ATTEMPTS", "max_attempts", int),
        ("BUILDIT_NOTIFY_LEASE", "lease", float),
    ):
        value = _positive(env, name, convert)
        if value is not None:
            options[key] = value
    return options
