"""The ``buildit`` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_asyncio

from buildit import __version__
from buildit.config import SERVER_SETTINGS, ServerConfig, load_server_config, settings_help
from buildit.errors import BuildItError, ConfigError
from buildit.logs import LOG_FORMATS, resolve_format, setup_logging

log = logging.getLogger("buildit")


async def watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s; stopping gracefully", signal.Signals(signum).name)
            stop.set()
            return


async def _with_loop(fn: Callable[[], Awaitable[Any]]) -> Any:
    async with trio_asyncio.open_loop():
        return await fn()


def _load_config(args: argparse.Namespace) -> ServerConfig:
    return load_server_config(config_file=getattr(args, "config", None))


def cmd_serve(args: argparse.Namespace) -> int:
    from buildit.server import limit_heap_fragmentation, run_server

    config = _load_config(args)
    limit_heap_fragmentation()

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals, stop)
            await run_server(config, stop=stop)
            nursery.cancel_scope.cancel()

    code = 0
    try:
        trio.run(_with_loop, main)
    except* OSError as group:
        # Typically the address is taken or not ours to bind.
        listen = f"{config.listen_host}:{config.listen_port}"
        for exc in _leaves(group):
            print(f"buildit: cannot serve on {listen}: {exc}", file=sys.stderr)
        code = 1
    return code


def cmd_migrate(args: argparse.Namespace) -> int:
    from buildit.server import database_for

    config = _load_config(args)

    async def main() -> None:
        async with database_for(config):
            print("the database schema is up to date")

    trio.run(_with_loop, main)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from buildit.db import queries
    from buildit.server import database_for

    config = _load_config(args)

    async def main() -> None:
        async with database_for(config) as db:
            user = await db.run(queries.upsert_user, args.github_login, args.role)
            print(f"user {user.github_login} is a {user.role} (id {user.id})")

    trio.run(_with_loop, main)
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from buildit.db import queries
    from buildit.server import database_for
    from buildit.services import hash_token, new_token

    config = _load_config(args)

    async def main() -> None:
        async with database_for(config) as db:
            user = await db.read(queries.user_by_login, args.github_login)
            if user is None:
                raise BuildItError(
                    f"no user {args.github_login!r}; add one first: "
                    f"buildit user add --github-login {args.github_login} --role developer"
                )
            token = new_token()
            await db.run(queries.insert_token, user.id, hash_token(token))
            print(token)
            print(f"(API token for {user.github_login}; it is shown only once)", file=sys.stderr)

    trio.run(_with_loop, main)
    return 0


def _github_login(value: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9-]{1,39}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a GitHub login")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildit", description="BuildIt! - the AOSC OS build farm"
    )
    parser.add_argument("--version", action="version", version=f"buildit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="log lines as text (default) or one JSON object per line "
                             "[BUILDIT_LOG_FORMAT]")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    epilog = settings_help(SERVER_SETTINGS)
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("serve", help="run the backend", epilog=epilog, formatter_class=fmt)
    p.add_argument("--config", help="TOML configuration file (same as BUILDIT_CONFIG)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations", epilog=epilog,
                       formatter_class=fmt)
    p.add_argument("--config")
    p.set_defaults(func=cmd_migrate)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_cmd",
                                                                     required=True)
    p = user.add_parser("add", help="add a user or change their role", epilog=epilog,
                        formatter_class=fmt)
    p.add_argument("--github-login", required=True, type=_github_login)
    p.add_argument("--role", required=True, choices=("developer", "guest"))
    p.add_argument("--config")
    p.set_defaults(func=cmd_user_add)

    token = sub.add_parser("token", help="manage API tokens").add_subparsers(dest="token_cmd",
                                                                            required=True)
    p = token.add_parser("create", help="create an API token (printed once)", epilog=epilog,
                         formatter_class=fmt)
    p.add_argument("--github-login", required=True, type=_github_login)
    p.add_argument("--config")
    p.set_defaults(func=cmd_token_create)

    from buildit.client.cli import register as register_client
    from buildit.demo import register as register_demo

    register_client(sub)
    register_demo(sub)
    for module in ("buildit.worker.cli", "buildit.telegram.cli", "buildit.bench.cli",
                   "buildit.soak"):
        try:
            register = __import__(module, fromlist=["register"]).register
        except (ImportError, AttributeError):
            continue
        register(sub)
    return parser


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        log_format = resolve_format(args.log_format)
    except ConfigError as error:
        print(f"buildit: {error}", file=sys.stderr)
        sys.exit(2)
    setup_logging(verbose=args.verbose, fmt=log_format)
    try:
        code = args.func(args)
    except* BuildItError as group:
        for exc in _leaves(group):
            print(f"buildit: {exc}", file=sys.stderr)
        code = 1
    except* KeyboardInterrupt:
        code = 130
    sys.exit(code)
