"""The client subcommands: ``buildit pipeline new|show|list|cancel``, ``buildit job restart``.

``register(subparsers)`` adds them to the ``buildit`` parser; each command returns its
exit status: 0 done, 1 a followed pipeline failed, 2 the request failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import orjson
import trio

from buildit.client import render
from buildit.client.api import BuildItApi, ClientError, open_api
from buildit.client.config import ClientSettings, load_client_settings
from buildit.client.follow import Display, LineDisplay, TableDisplay, follow_pipeline
from buildit.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

_CONNECTION_HELP = """\
server and token: --server/--token, else BUILDIT_SERVER/BUILDIT_TOKEN, else
~/.config/buildit/client.toml (server = "...", token = "..."; BUILDIT_CLIENT_CONFIG
names another file). The server defaults to http://127.0.0.1:3000.

exit status: 0 done (with --follow: the pipeline succeeded), 1 the followed pipeline
failed or errored, 2 the request failed (the server's message is printed).
"""


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument("--server", metavar="URL",
                       help="BuildIt server [BUILDIT_SERVER] (default: http://127.0.0.1:3000)")
    group.add_argument("--token", metavar="TOKEN",
                       help="API token [BUILDIT_TOKEN] (the environment or client.toml keep "
                            "it out of `ps`)")
    return common


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", "-f", action="store_true",
                        help="show the jobs live until the pipeline ends; exit 1 if it fails")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="how often --follow asks the server (default: 1)")
    parser.add_argument("--fail-fast", action="store_true",
                        help="with --follow: stop at the first failed job")
    parser.add_argument("--plain", action="store_true",
                        help="with --follow: one line per change even on a terminal")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _connection_options()
    fmt = argparse.RawDescriptionHelpFormatter

    pipeline = subparsers.add_parser(
        "pipeline", help="create, follow and inspect pipelines (a client of the HTTP API)")
    psub = pipeline.add_subparsers(dest="pipeline_cmd", required=True, metavar="COMMAND")

    p = psub.add_parser(
        "new", parents=[common], formatter_class=fmt, epilog=_CONNECTION_HELP,
        help="ask for packages to be built",
        description="Create a pipeline: build PACKAGES from BRANCH of the packages tree "
                    "for ARCHS (one job per arch). Needs a Developer's API token.")
    p.add_argument("branch", help="branch of the packages tree, e.g. stable")
    p.add_argument("packages", help="comma-separated packages (or groups/NAME)")
    p.add_argument("archs", nargs="?", default=None,
                   help="comma-separated archs, or mainline (default: what the server "
                        "derives from the packages tree, else all it knows)")
    p.add_argument("--sha", help="commit to build (40 hex digits); required when the server "
                                 "has no packages tree to resolve the branch with")
    p.add_argument("--options", help="build options, as the web form's (e.g. enable-topics)")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    _follow_options(p)
    p.set_defaults(func=cmd_pipeline_new)

    p = psub.add_parser("show", parents=[common], formatter_class=fmt, epilog=_CONNECTION_HELP,
                        help="show a pipeline and its jobs")
    p.add_argument("pipeline_id", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    _follow_options(p)
    p.set_defaults(func=cmd_pipeline_show)

    p = psub.add_parser("list", parents=[common], formatter_class=fmt, epilog=_CONNECTION_HELP,
                        help="list recent pipelines")
    p.add_argument("--status", choices=("running", "success", "failed", "error"))
    p.add_argument("--creator", metavar="GITHUB_LOGIN")
    p.add_argument("--stable", action="store_true", help="only pipelines of the stable branch")
    p.add_argument("--limit", type=int, default=20, help="how many (default: 20, at most 200)")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(func=cmd_pipeline_list)

    p = psub.add_parser("cancel", parents=[common], formatter_class=fmt,
                        epilog=_CONNECTION_HELP, help="cancel a pipeline's unfinished jobs")
    p.add_argument("pipeline_id", type=int, metavar="ID")
    p.set_defaults(func=cmd_pipeline_cancel)

    job = subparsers.add_parser("job", help="act on jobs (a client of the HTTP API)")
    jsub = job.add_subparsers(dest="job_cmd", required=True, metavar="COMMAND")
    p = jsub.add_parser("restart", parents=[common], formatter_class=fmt,
                        epilog=_CONNECTION_HELP,
                        help="build a failed or errored job again (a new attempt)")
    p.add_argument("job_id", type=int, metavar="ID")
    _follow_options(p)
    p.set_defaults(func=cmd_job_restart)


# -- running a command ----------------------------------------------------------------


def _settings(args: argparse.Namespace) -> ClientSettings:
    return load_client_settings(server=args.server, token=args.token)


def _run(args: argparse.Namespace,
         body: Callable[[BuildItApi], Awaitable[int]]) -> int:
    """Run ``body`` with an API client; errors become a message and exit status 2."""
    try:
        settings = _settings(args)
    except ConfigError as error:
        print(f"buildit: {error}", file=sys.stderr)
        return EXIT_ERROR

    async def main() -> int:
        async with open_api(settings.server, token=settings.token) as api:
            return await body(api)

    code = EXIT_ERROR
    try:
        code = trio.run(main)
    except* ClientError as group:
        for leaf in _leaves(group):
            print(f"buildit: {leaf}", file=sys.stderr)
    return code


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for sub in group.exceptions for leaf in _leaves(sub)]
    return [group]


def _print_json(value: Any, out: TextIO | None = None) -> None:
    stream = sys.stdout if out is None else out
    stream.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    stream.flush()


def _display(args: argparse.Namespace, out: TextIO | None = None) -> Display:
    stream = sys.stdout if out is None else out
    if not args.plain and stream.isatty():
        return TableDisplay(stream, color="NO_COLOR" not in os.environ)  # no-color.org
    return LineDisplay(stream)


async def _follow(api: BuildItApi, args: argparse.Namespace, pipeline_id: int) -> int:
    info = await follow_pipeline(api, pipeline_id, display=_display(args),
                                 interval=max(0.05, args.interval), fail_fast=args.fail_fast)
    return render.exit_code(render.outcome(info))


def cmd_pipeline_new(args: argparse.Namespace) -> int:
    async def body(api: BuildItApi) -> int:
        created = await api.new_pipeline(git_branch=args.branch, packages=args.packages,
                                         archs=args.archs, git_sha=args.sha,
                                         options=args.options)
        if args.json:
            _print_json(created)
        else:
            jobs = ", ".join(f"{arch} job {job}" for arch, job in created["jobs"].items())
            print(f"pipeline {created['id']} created: {jobs}", flush=True)
        if args.follow:
            return await _follow(api, args, int(created["id"]))
        return EXIT_OK

    return _run(args, body)


def cmd_pipeline_show(args: argparse.Namespace) -> int:
    async def body(api: BuildItApi) -> int:
        if args.follow:
            return await _follow(api, args, args.pipeline_id)
        info = await api.pipeline_info(args.pipeline_id)
        if args.json:
            _print_json(info)
        else:
            print("\n".join(render.details(info)))
        return EXIT_OK

    return _run(args, body)


def cmd_pipeline_list(args: argparse.Namespace) -> int:
    async def body(api: BuildItApi) -> int:
        result = await api.list_pipelines(page=args.page, items_per_page=args.limit,
                                          status=args.status, creator=args.creator,
                                          stable_only=args.stable)
        if args.json:
            _print_json(result)
        else:
            print("\n".join(render.pipeline_rows(result.get("items") or [])))
            total = result.get("total_items")
            shown = len(result.get("items") or [])
            if isinstance(total, int) and total > shown:
                print(f"({shown} of {total}; --page/--limit for more)")
        return EXIT_OK

    return _run(args, body)


def cmd_pipeline_cancel(args: argparse.Namespace) -> int:
    async def body(api: BuildItApi) -> int:
        result = await api.cancel_pipeline(args.pipeline_id)
        ended = result.get("cancelled_jobs") or []
        if ended:
            print(f"pipeline {args.pipeline_id} cancelled: "
                  + ", ".join(f"job {j}" for j in sorted(ended)) + " ended")
        else:
            print(f"pipeline {args.pipeline_id} had no unfinished jobs")
        return EXIT_OK

    return _run(args, body)


def cmd_job_restart(args: argparse.Namespace) -> int:
    async def body(api: BuildItApi) -> int:
        result = await api.restart_job(args.job_id)
        pipeline_id = int(result["pipeline_id"])
        print(f"job {args.job_id} restarted (pipeline {pipeline_id})", flush=True)
        if args.follow:
            return await _follow(api, args, pipeline_id)
        return EXIT_OK

    return _run(args, body)
