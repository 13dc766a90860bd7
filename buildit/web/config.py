"""Settings of the web UI, read from ``ServerConfig.extra`` (see buildit/config.py)."""

from __future__ import annotations

from dataclasses import dataclass

from buildit.config import ServerConfig, load_or_create_secret

DEFAULT_GITHUB_WEB_URL = "https://github.com"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_GITHUB_ORG = "AOSC-Dev"
DEFAULT_ABBS_REPO = "AOSC-Dev/aosc-os-abbs"


def session_secret(config: ServerConfig) -> str:
    """``BUILDIT_SESSION_SECRET``, or the one generated once into the data directory.

    It signs the session cookies and the Telegram link tokens (``buildit.linking``):
    the Telegram bot calls this to make tokens the web UI accepts.
    """
    value = config.extra.get("BUILDIT_SESSION_SECRET", "")
    if value:
        return value
    return load_or_create_secret(config.data_dir / "session_secret")


@dataclass(frozen=True)
class WebConfig:
    public_url: str
    session_secret: str
    github_client_id: str = ""
    github_client_secret: str = ""
    github_web_url: str = DEFAULT_GITHUB_WEB_URL
    github_api_url: str = DEFAULT_GITHUB_API_URL
    github_org: str = DEFAULT_GITHUB_ORG
    # where the links to branches, commits and pull requests point
    abbs_repo: str = DEFAULT_ABBS_REPO
    # how long a role from GitHub holds before membership is checked again (s)
    role_max_age: float = 3600.0

    @property
    def login_configured(self) -> bool:
        return bool(self.github_client_id and self.github_client_secret)

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.lower().startswith("https://")

    @property
    def callback_url(self) -> str:
        return f"{self.public_url}/login/callback"

    @classmethod
    def from_server_config(cls, config: ServerConfig) -> WebConfig:
        extra = config.extra

        def get(name: str, default: str) -> str:
            return (extra.get(name) or default).strip()

        return cls(
            public_url=config.public_url.rstrip("/"),
            session_secret=session_secret(config),
            github_client_id=get("BUILDIT_GITHUB_CLIENT_ID", ""),
            github_client_secret=get("BUILDIT_GITHUB_CLIENT_SECRET", ""),
            github_web_url=get("BUILDIT_GITHUB_WEB_URL", DEFAULT_GITHUB_WEB_URL).rstrip("/"),
            github_api_url=get("BUILDIT_GITHUB_API_URL", DEFAULT_GITHUB_API_URL).rstrip("/"),
            github_org=get("BUILDIT_GITHUB_ORG", DEFAULT_GITHUB_ORG),
            abbs_repo=get("BUILDIT_GITHUB_REPO", DEFAULT_ABBS_REPO).strip("/"),
        )
