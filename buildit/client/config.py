"""Where the client finds the server and its API token. Pure, except reading one file.

In order, the first that is set wins:

1. the flags ``--server`` / ``--token``;
2. the environment: ``BUILDIT_SERVER`` / ``BUILDIT_TOKEN``;
3. the TOML file ``~/.config/buildit/client.toml`` (``BUILDIT_CLIENT_CONFIG`` names
   another one)::

       server = "https://buildit.aosc.io"
       token = "bit_..."        # keep the file private: chmod 600

The server defaults to ``http://127.0.0.1:3000`` (where ``buildit serve`` and
``buildit demo`` listen); the token has no default (reading needs none).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from buildit.errors import ConfigError

DEFAULT_SERVER = "http://127.0.0.1:3000"
SERVER_ENV = "BUILDIT_SERVER"
TOKEN_ENV = "BUILDIT_TOKEN"
CONFIG_ENV = "BUILDIT_CLIENT_CONFIG"


@dataclass(frozen=True)
class ClientSettings:
    server: str
    token: str | None
    config_file: Path | None = None
    """The file that was read, if any (for messages)."""


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("buildit", appauthor=False)) / "client.toml"


def config_path(environ: Mapping[str, str]) -> Path:
    named = environ.get(CONFIG_ENV)
    return Path(named).expanduser() if named else default_config_path()


def read_config_file(path: Path, *, required: bool) -> dict[str, str]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"client configuration {path} does not exist") from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"client configuration {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read client configuration {path}: {exc.strerror}") from None
    unknown = sorted(set(data) - {"server", "token"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)} "
                          "(known: server, token)")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        out[key] = value
    return out


def server_url(value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the server must be an http:// or https:// URL, got {value!r}")
    return url


def load_client_settings(
    *, server: str | None = None, token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    env = os.environ if environ is None else environ
    path = config_path(env)
    file_values: dict[str, str] = {}
    if not (server and token):
        file_values = read_config_file(path, required=bool(env.get(CONFIG_ENV)))
    chosen_server = server or env.get(SERVER_ENV) or file_values.get("server") or DEFAULT_SERVER
    chosen_token = token or env.get(TOKEN_ENV) or file_values.get("token") or None
    return ClientSettings(
        server=server_url(chosen_server),
        token=chosen_token.strip() if chosen_token else None,
        config_file=path if file_values else None,
    )
