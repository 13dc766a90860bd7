"""Settings of ``buildit worker``: flags, environment variables, defaults.

Each setting has one environment variable, named as the AOSC build machines name them
today (``BUILDIT_SERVER``, ``BUILDIT_WORKER_SECRET``, ``BUILDIT_ARCH``, ...), and a
command-line flag that wins over it. The TOML file named by ``BUILDIT_CONFIG`` (see
``buildit.config``) may hold the same settings under their lower-case names. Parsing is
pure: nothing here touches the network or the workspace (``run_worker`` checks those).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from buildit.worker.errors import WorkerConfigError

DEFAULT_GIT_REMOTE = "https://github.com/AOSC-Dev/aosc-os-abbs.git"
DEFAULT_RSYNC_HOST = "repo.aosc.io"
DEFAULT_CONNECTIVITY_CHECK = "github.com:443"
MIB = 1024 * 1024


@dataclass(frozen=True)
class WorkerConfig:
    """Everything ``run_worker`` needs. Tests build it directly with small intervals."""

    server: str
    """Base URL of the BuildIt server, e.g. ``https://buildit.aosc.io`` (no trailing /)."""
    worker_secret: str
    arch: str
    ciel_path: Path
    ciel_instance: str = "main"
    pushpkg_options: str = ""
    """Extra arguments for pushpkg, split like a shell would (``shlex.split``)."""
    ssh_key: str | None = None
    """SSH key pushpkg uploads with. Unset: packages are not uploaded (pushpkg_success false)."""
    rsync_host: str = DEFAULT_RSYNC_HOST
    hostname: str = field(default_factory=socket.gethostname)
    heartbeat_interval: float = 30.0
    log_max_bytes: int = 32 * MIB
    """Largest log uploaded for one job; the rest of the output is dropped with a marker."""
    shutdown_grace: float = 600.0
    """After SIGTERM, how long a running build may go on before it is stopped and handed back."""
    poll_wait: float = 25.0
    """How long the server may hold a poll (``wait_secs``); the server caps it."""
    git_remote: str = DEFAULT_GIT_REMOTE
    """What ``git fetch`` fetches the job's branch from (a URL or a remote name of TREE)."""
    connectivity_check: str = DEFAULT_CONNECTIVITY_CHECK
    """host:port that heartbeats try to connect to; empty: not checked (reported true)."""

    # Tunables without an environment variable (tests shrink them).
    retry_initial_delay: float = 1.0
    retry_max_delay: float = 60.0
    retry_attempts: int = 5
    """Attempts of git fetch, ciel update-os and pushpkg (delays 1, 2, 4, 8 s as today)."""
    kill_grace: float = 10.0
    """Between SIGTERM and SIGKILL to a stopped step's process group."""
    log_flush_interval: float = 1.0
    """How long log output gathers before it is uploaded."""
    log_flush_limit: float = 120.0
    """How long a finished job waits for its log upload before it reports its result."""
    idle_poll_delay: float = 5.0
    """Pause after a poll that came back empty at once (a server without long poll)."""
    hand_back_limit: float = 30.0
    """How long a shutting-down worker tries to hand its job back."""

    @property
    def tree_path(self) -> Path:
        return self.ciel_path / "TREE"

    def output_path(self, branch: str) -> Path:
        """Where ciel puts the packages of a build of ``branch`` (pushpkg runs there)."""
        return self.ciel_path / f"OUTPUT-{branch}"

    def replace(self, **changes: Any) -> WorkerConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Setting:
    field: str
    env: str
    flags: tuple[str, ...]
    help: str
    required: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("server", "BUILDIT_SERVER", ("-H", "--server"),
            "URL of the BuildIt server, e.g. https://buildit.aosc.io", required=True),
    Setting("worker_secret", "BUILDIT_WORKER_SECRET", ("--worker-secret",),
            "Shared secret the server expects from workers (prefer the environment "
            "variable: flags show in ps)", required=True),
    Setting("arch", "BUILDIT_ARCH", ("-A", "--arch"),
            "Architecture this worker builds (amd64 workers also take noarch jobs)",
            required=True),
    Setting("ciel_path", "BUILDIT_CIEL_PATH", ("-c", "--ciel-path"),
            "Path to the ciel workspace (holds .ciel/ and the TREE git checkout)",
            required=True),
    Setting("ciel_instance", "BUILDIT_CIEL_INSTANCE", ("-I", "--ciel-instance"),
            "ciel instance to build in (default: main)"),
    Setting("pushpkg_options", "BUILDIT_PUSHPKG_OPTIONS", ("--pushpkg-options",),
            "Extra options for pushpkg, shell-quoted (default: none)"),
    Setting("ssh_key", "BUILDIT_SSH_KEY", ("-s", "--ssh-key"),
            "SSH key for uploading packages with pushpkg (unset: packages are not "
            "uploaded and pushpkg_success is false)"),
    Setting("rsync_host", "BUILDIT_RSYNC_HOST", ("-r", "--rsync-host"),
            f"Repository host pushpkg uploads to (default: {DEFAULT_RSYNC_HOST})"),
    Setting("hostname", "BUILDIT_HOSTNAME", ("--hostname",),
            "This worker's name towards the server (default: the machine's hostname)"),
    Setting("heartbeat_interval", "BUILDIT_HEARTBEAT_INTERVAL", ("--heartbeat-interval",),
            "Seconds between heartbeats (default: 30)"),
    Setting("log_max_bytes", "BUILDIT_LOG_MAX_BYTES", ("--log-max-bytes",),
            "Largest build log uploaded for one job, in bytes (default: 32 MiB)"),
    Setting("shutdown_grace", "BUILDIT_SHUTDOWN_GRACE", ("--shutdown-grace",),
            "After SIGTERM, seconds a running build may still take before it is stopped "
            "and handed back (default: 600; a second SIGTERM/SIGINT stops it at once)"),
    Setting("poll_wait", "BUILDIT_POLL_WAIT", ("--poll-wait",),
            "Seconds the server may hold a poll waiting for a job (default: 25)"),
    Setting("git_remote", "BUILDIT_GIT_REMOTE", ("--git-remote",),
            f"Where the packages tree is fetched from (default: {DEFAULT_GIT_REMOTE})"),
    Setting("connectivity_check", "BUILDIT_CONNECTIVITY_CHECK", ("--connectivity-check",),
            f"host:port heartbeats test internet access with (default: "
            f"{DEFAULT_CONNECTIVITY_CHECK}; empty: not tested)"),
)

_ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def _positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise WorkerConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise WorkerConfigError(f"{name} must be a positive number, got {value!r}")
    return number


def _non_negative_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise WorkerConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise WorkerConfigError(f"{name} must be zero or a positive number, got {value!r}")
    return number


def _bytes(name: str, value: str) -> int:
    text = value.strip().upper()
    factor = 1
    for suffix, mult in (("KIB", 1024), ("MIB", MIB), ("GIB", 1024 * MIB), ("K", 1024),
                         ("M", MIB), ("G", 1024 * MIB)):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)].strip(), mult
            break
    try:
        number = int(text) * factor
    except ValueError:
        raise WorkerConfigError(
            f"{name} must be a number of bytes (optionally with K/M/G), got {value!r}"
        ) from None
    if number < 16 * 1024:
        raise WorkerConfigError(f"{name} must be at least 16 KiB, got {value!r}")
    return number


def _server_url(value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WorkerConfigError(
            f"BUILDIT_SERVER must be an http:// or https:// URL, got {value!r}"
        )
    return url


def _hostname(value: str) -> str:
    name = value.strip()
    if "://" in name or "/" in name:
        # Early versions of the AOSC worker used BUILDIT_HOSTNAME for the server address.
        raise WorkerConfigError(
            f"BUILDIT_HOSTNAME is this worker's own name, but {value!r} looks like a URL; "
            "put the server's address in BUILDIT_SERVER"
        )
    if not name or any(ch.isspace() for ch in name):
        raise WorkerConfigError(f"BUILDIT_HOSTNAME must be a name without spaces, got {value!r}")
    return name


def _host_port(value: str) -> str:
    text = value.strip()
    if not text:
        return ""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise WorkerConfigError(
            f"BUILDIT_CONNECTIVITY_CHECK must be host:port (or empty), got {value!r}"
        )
    return text


def _shell_words(value: str) -> str:
    try:
        shlex.split(value)
    except ValueError as exc:
        raise WorkerConfigError(f"BUILDIT_PUSHPKG_OPTIONS cannot be split: {exc}") from None
    return value.strip()


def _arch(value: str) -> str:
    arch = value.strip()
    if not _ARCH_RE.match(arch) or arch in ("mainline", "noarch"):
        raise WorkerConfigError(f"BUILDIT_ARCH: {value!r} is not an architecture name")
    return arch


def _text(name: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = value.strip()
        if not text:
            raise WorkerConfigError(f"{name} must not be empty")
        return text

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {
    "server": _server_url,
    "worker_secret": _text("BUILDIT_WORKER_SECRET"),
    "arch": _arch,
    "ciel_path": lambda v: Path(_text("BUILDIT_CIEL_PATH")(v)).expanduser(),
    "ciel_instance": _text("BUILDIT_CIEL_INSTANCE"),
    "pushpkg_options": _shell_words,
    "ssh_key": lambda v: v.strip() or None,
    "rsync_host": _text("BUILDIT_RSYNC_HOST"),
    "hostname": _hostname,
    "heartbeat_interval": lambda v: _positive_float("BUILDIT_HEARTBEAT_INTERVAL", v),
    "log_max_bytes": lambda v: _bytes("BUILDIT_LOG_MAX_BYTES", v),
    "shutdown_grace": lambda v: _non_negative_float("BUILDIT_SHUTDOWN_GRACE", v),
    "poll_wait": lambda v: _non_negative_float("BUILDIT_POLL_WAIT", v),
    "git_remote": _text("BUILDIT_GIT_REMOTE"),
    "connectivity_check": _host_port,
}


def load_worker_config(
    flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> WorkerConfig:
    """Build the configuration from flag values (by field name; None = not given) and
    the environment (``BUILDIT_*``). Flags win; missing required settings are named."""
    values: dict[str, Any] = {}
    missing: list[str] = []
    for setting in SETTINGS:
        raw = flags.get(setting.field)
        if raw is None:
            raw = environ.get(setting.env)
        if raw is None or (setting.required and not raw.strip()):
            if setting.required:
                missing.append(f"{setting.env} (or {setting.flags[-1]})")
            continue
        values[setting.field] = _PARSERS[setting.field](raw)
    if missing:
        raise WorkerConfigError("missing required setting(s): " + ", ".join(missing))
    return WorkerConfig(**values)
