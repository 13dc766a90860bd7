"""Configuration: environment variables, optionally a TOML file.

Every setting has one fixed environment variable name (operators and scripts rely
on them). A TOML file named by ``BUILDIT_CONFIG`` (or ``--config``) may hold the
same settings under their lower-case names without the prefix, e.g.
``worker_secret = "..."``; the environment wins over the file.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from buildit.errors import ConfigError

AOSC_ARCHS = (
    "amd64",
    "arm64",
    "loongarch64",
    "loongarch64_nosimd",
    "loongson3",
    "ppc64el",
    "riscv64",
)


@dataclass(frozen=True)
class Setting:
    env: str
    help: str
    default: str | None


SERVER_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "BUILDIT_DATABASE_URL",
        "PostgreSQL URL (postgresql://user@host:port/db). Unset: an embedded "
        "PostgreSQL is started in the data directory and stopped on exit.",
        None,
    ),
    Setting(
        "BUILDIT_DATA_DIR",
        "Where BuildIt keeps its data: embedded database, build logs, generated secrets.",
        "a per-user data directory",
    ),
    Setting("BUILDIT_LISTEN", "host:port the HTTP server binds.", "127.0.0.1:3000"),
    Setting(
        "BUILDIT_PUBLIC_URL",
        "The address people and workers reach this server at (for links and log URLs).",
        "http://<BUILDIT_LISTEN>",
    ),
    Setting(
        "BUILDIT_WORKER_SECRET",
        "Shared secret workers must present. Unset: generated once and kept in "
        "<data dir>/worker_secret.",
        None,
    ),
    Setting(
        "BUILDIT_ARCHS",
        "Comma-separated architecture list ('mainline' expands to all of them; "
        "'noarch' is always known and built by amd64 workers).",
        ",".join(AOSC_ARCHS),
    ),
    Setting(
        "BUILDIT_HEARTBEAT_TIMEOUT",
        "Seconds without a heartbeat after which a worker's job is requeued.",
        "300",
    ),
    Setting(
        "BUILDIT_LONG_POLL_MAX",
        "Longest a worker's poll is held waiting for a job, in seconds.",
        "25",
    ),
    Setting(
        "BUILDIT_MAX_LOST_ATTEMPTS",
        "How many times a job may be lost by silent workers before it ends as 'error'.",
        "3",
    ),
    Setting(
        "BUILDIT_LOG_MAX_BYTES",
        "Largest build log the server stores for one job attempt, in bytes.",
        str(64 * 1024 * 1024),
    ),
    Setting(
        "BUILDIT_ABBS_PATH",
        "A git repository of the packages tree (aosc-os-abbs) the server reads: branches "
        "are resolved to commits, packages and groups checked, archs and build "
        "requirements derived. Unset: pipelines must name git_sha and archs.",
        None,
    ),
    Setting(
        "BUILDIT_ABBS_REMOTE",
        "The remote the packages tree fetches branches from (URL or path). Unset: the "
        "branches already in BUILDIT_ABBS_PATH are used.",
        None,
    ),
    Setting(
        "BUILDIT_TELEGRAM_TOKEN",
        "The Telegram bot's token (from @BotFather). Unset: no Telegram front end.",
        None,
    ),
    Setting(
        "BUILDIT_TELEGRAM_WEBHOOK_SECRET",
        "Secret Telegram sends with every update (X-Telegram-Bot-Api-Secret-Token); "
        "required with BUILDIT_TELEGRAM_TOKEN; 1-256 of A-Z a-z 0-9 _ -.",
        None,
    ),
    Setting(
        "BUILDIT_TELEGRAM_API_URL",
        "Base URL of the Telegram Bot API.",
        "https://api.telegram.org",
    ),
    Setting(
        "BUILDIT_TELEGRAM_BOT_NAME",
        "The bot's username (without @): commands to other bots in groups are ignored; "
        "links to the bot use it.",
        None,
    ),
    Setting(
        "BUILDIT_GITHUB_WEBHOOK_SECRET",
        "Secret of the GitHub webhook (X-Hub-Signature-256). GitHub is on when this, "
        "BUILDIT_GITHUB_APP_ID and BUILDIT_GITHUB_APP_PRIVATE_KEY are all set.",
        None,
    ),
    Setting("BUILDIT_GITHUB_APP_ID", "The GitHub App's id.", None),
    Setting(
        "BUILDIT_GITHUB_APP_PRIVATE_KEY",
        "Path to the GitHub App's private key (PEM), read at startup.",
        None,
    ),
    Setting(
        "BUILDIT_GITHUB_INSTALLATION_ID",
        "The App's installation id. Unset: found through the API for BUILDIT_GITHUB_REPO.",
        None,
    ),
    Setting(
        "BUILDIT_GITHUB_ORG",
        "Organization whose members may start builds from PR comments.",
        "AOSC-Dev",
    ),
    Setting(
        "BUILDIT_GITHUB_REPO",
        "owner/name of the packages tree on GitHub (PR commands, comments, check runs).",
        "AOSC-Dev/aosc-os-abbs",
    ),
    Setting("BUILDIT_GITHUB_API_URL", "Base URL of GitHub's REST API.",
            "https://api.github.com"),
    Setting(
        "BUILDIT_NOTIFY_BASE_DELAY",
        "First retry delay of a failed notification, in seconds (doubles each attempt, "
        "unless the remote says when to retry).",
        "2",
    ),
    Setting(
        "BUILDIT_NOTIFY_POLL_INTERVAL",
        "How often the notifier looks for due notifications besides wake-ups, in seconds.",
        "5",
    ),
    Setting(
        "BUILDIT_NOTIFY_MAX_ATTEMPTS",
        "Attempts to deliver a notification before it is marked failed.",
        "10",
    ),
    Setting(
        "BUILDIT_NOTIFY_LEASE",
        "Seconds a notification being delivered is reserved for one server process (a "
        "process that dies mid-delivery delays it this long).",
        "120",
    ),
    Setting(
        "BUILDIT_GITHUB_CLIENT_ID",
        "Client id of the GitHub OAuth app people log in to the web UI with (its callback "
        "URL: <BUILDIT_PUBLIC_URL>/login/callback). Unset: nobody can log in.",
        None,
    ),
    Setting("BUILDIT_GITHUB_CLIENT_SECRET", "Client secret of that GitHub OAuth app.", None),
    Setting(
        "BUILDIT_GITHUB_WEB_URL",
        "Where GitHub's OAuth pages live (and links to branches, commits and PRs point).",
        "https://github.com",
    ),
    Setting(
        "BUILDIT_SESSION_SECRET",
        "Signs the web UI's session cookies and the Telegram link tokens; the same in "
        "every server process. Unset: generated once and kept in <data dir>/session_secret.",
        None,
    ),
    Setting(
        "BUILDIT_CONFIG",
        "Optional TOML file with the same settings (lower-case, without BUILDIT_).",
        None,
    ),
)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"BUILDIT_LISTEN must be host:port, got {value!r}")
    try:
        port_no = int(port)
    except ValueError:
        raise ConfigError(f"BUILDIT_LISTEN port must be a number, got {port!r}") from None
    if not 0 <= port_no <= 65535:
        raise ConfigError(f"BUILDIT_LISTEN port out of range: {port_no}")
    return host.strip("[]"), port_no


def _positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number


def parse_archs(value: str) -> tuple[str, ...]:
    archs = tuple(a.strip() for a in value.split(",") if a.strip())
    if not archs:
        raise ConfigError("BUILDIT_ARCHS must name at least one architecture")
    for arch in archs:
        if not arch.replace("_", "").isalnum() or arch in ("mainline", "noarch"):
            raise ConfigError(f"BUILDIT_ARCHS: {arch!r} is not a valid architecture name")
    return archs


@dataclass(frozen=True)
class ServerConfig:
    database_url: str | None
    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 3000
    public_url: str = "http://127.0.0.1:3000"
    worker_secret: str = ""
    archs: tuple[str, ...] = AOSC_ARCHS
    heartbeat_timeout: float = 300.0
    long_poll_max: float = 25.0
    max_lost_attempts: int = 3
    log_max_bytes: int = 64 * 1024 * 1024
    # Settings of other front ends live in `extra` until they have their own fields.
    abbs_path: Path | None = None
    abbs_remote: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def watchdog_period(self) -> float:
        """How often the watchdog looks for silent workers."""
        return max(1.0, min(30.0, self.heartbeat_timeout / 4))

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


def _read_toml(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out["BUILDIT_" + key.upper()] = str(value)
    return out


def gather_env(
    environ: Mapping[str, str] | None = None, *, config_file: str | None = None
) -> dict[str, str]:
    """Merge the TOML file (if any) under the environment."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get("BUILDIT_CONFIG")
    merged: dict[str, str] = _read_toml(path) if path else {}
    merged.update({k: v for k, v in env.items() if k.startswith("BUILDIT_")})
    return merged


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("buildit", appauthor=False))


def load_or_create_secret(path: Path) -> str:
    """Read a generated secret kept in the data directory, creating it once."""
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def load_server_config(
    environ: Mapping[str, str] | None = None,
    *,
    config_file: str | None = None,
    create_secrets: bool = True,
) -> ServerConfig:
    env = gather_env(environ, config_file=config_file)
    get: Callable[[str, str], str] = lambda name, default: env.get(name) or default  # noqa: E731
    data_dir = Path(get("BUILDIT_DATA_DIR", str(default_data_dir()))).expanduser()
    host, port = _parse_listen(get("BUILDIT_LISTEN", "127.0.0.1:3000"))
    public_url = get("BUILDIT_PUBLIC_URL", f"http://{host}:{port}").rstrip("/")
    secret = env.get("BUILDIT_WORKER_SECRET", "")
    if not secret and create_secrets:
        secret = load_or_create_secret(data_dir / "worker_secret")
    return ServerConfig(
        database_url=env.get("BUILDIT_DATABASE_URL") or None,
        data_dir=data_dir,
        listen_host=host,
        listen_port=port,
        public_url=public_url,
        worker_secret=secret,
        archs=parse_archs(get("BUILDIT_ARCHS", ",".join(AOSC_ARCHS))),
        heartbeat_timeout=_positive_float(
            "BUILDIT_HEARTBEAT_TIMEOUT", get("BUILDIT_HEARTBEAT_TIMEOUT", "300")
        ),
        long_poll_max=_positive_float("BUILDIT_LONG_POLL_MAX", get("BUILDIT_LONG_POLL_MAX", "25")),
        max_lost_attempts=_positive_int(
            "BUILDIT_MAX_LOST_ATTEMPTS", get("BUILDIT_MAX_LOST_ATTEMPTS", "3")
        ),
        log_max_bytes=_positive_int(
            "BUILDIT_LOG_MAX_BYTES", get("BUILDIT_LOG_MAX_BYTES", str(64 * 1024 * 1024))
        ),
        abbs_path=Path(env["BUILDIT_ABBS_PATH"]).expanduser() if env.get("BUILDIT_ABBS_PATH")
        else None,
        abbs_remote=env.get("BUILDIT_ABBS_REMOTE") or None,
        extra={k: v for k, v in env.items() if k.startswith("BUILDIT_")},
    )


def settings_help(settings: tuple[Setting, ...]) -> str:
    lines = ["environment variables:"]
    for s in settings:
        default = f" (default: {s.default})" if s.default else ""
        lines.append(f"  {s.env}\n      {s.help}{default}")
    return "\n".join(lines)
