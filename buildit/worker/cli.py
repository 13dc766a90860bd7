"""``buildit worker``: the command line of the build worker.

``register(subparsers)`` adds the subcommand to the main ``buildit`` parser; its
``func`` default is ``run_command(args) -> int`` (the exit status). ``main()`` runs it
on its own: ``python -m buildit.worker.cli --help``.

Signals: the first SIGTERM or SIGINT stops taking jobs and lets a running build finish
within ``BUILDIT_SHUTDOWN_GRACE`` seconds; a second one stops the build at once. Either
way a stopped build's job is handed back to the server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import trio

from buildit.config import gather_env
from buildit.errors import ConfigError
from buildit.worker.config import SETTINGS, WorkerConfig, load_worker_config
from buildit.worker.errors import WorkerError
from buildit.worker.main import WorkerHandle, run_worker

logger = logging.getLogger("buildit.worker")

_DESCRIPTION = """\
Run a BuildIt build worker: take jobs for one architecture from the server, build
them with ciel in a ciel workspace, upload their logs and report their results.

Every option can also be given by its environment variable (shown in brackets); an
option given on the command line wins. The TOML file named by BUILDIT_CONFIG may hold
them too, lower-case and without BUILDIT_ (e.g. worker_secret = "...").
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:
        parser.add_argument(
            *setting.flags,
            dest=setting.field,
            default=None,
            metavar=setting.field.upper(),
            help=f"{setting.help} [{setting.env}]",
        )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` subcommand to the ``buildit`` command line."""
    parser = subparsers.add_parser(
        "worker",
        help="run a build worker",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    flags = {setting.field: getattr(args, setting.field, None) for setting in SETTINGS}
    environ = gather_env(os.environ, config_file=getattr(args, "config", None))
    return load_worker_config(flags, environ)


async def _forward_signals(signals: AsyncIterator[int], handle: WorkerHandle) -> None:
    count = 0
    async for signum in signals:
        count += 1
        name = signal.Signals(signum).name
        if count == 1:
            logger.info("%s received: finishing the current build, taking no new job", name)
            handle.request_shutdown()
        else:
            logger.info("%s received again: stopping the current build now", name)
            handle.request_shutdown(immediate=True)


async def serve(config: WorkerConfig) -> None:
    """Run the worker with SIGTERM/SIGINT handling, until it stops."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(run_worker, config)
            nursery.start_soon(_forward_signals, signals, handle)
            await handle.wait_stopped()
            nursery.cancel_scope.cancel()


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=os.environ.get("BUILDIT_LOG_LEVEL", "INFO").upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def _fail(message: str, code: int) -> int:
    print(f"buildit worker: error: {message}", file=sys.stderr)
    return code


def run_command(args: argparse.Namespace) -> int:
    """Run ``buildit worker``; return its exit status."""
    _setup_logging()
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    status = 0
    try:
        trio.run(serve, config)
    except* WorkerError as group:
        errors = [e for e in _leaves(group) if isinstance(e, WorkerError)]
        for error in errors:
            _fail(str(error), error.exit_code)
        status = max(e.exit_code for e in errors)
    except* KeyboardInterrupt:
        status = 130
    return status


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for sub in group.exceptions for leaf in _leaves(sub)]
    return [group]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="buildit worker",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
