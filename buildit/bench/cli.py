"""``buildit bench``: the command line of the benchmark (registered by buildit.cli)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
import trio
import trio_asyncio

from buildit.bench import FULL, QUICK, SIZES, report, run_bench

HELP = """\
Start a real server (python -m buildit serve) on a real database (BUILDIT_DATABASE_URL,
which must hold no pipelines unless --wipe, or an embedded PostgreSQL in a temporary
directory), drive it over HTTP with simulated workers, and print each figure beside a
ceiling measured in the same run. The database is emptied afterwards."""


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure the server under load", description=HELP)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="size", const=QUICK.name,
                      help="a smaller run of about a minute")
    size.add_argument("--size", choices=sorted(SIZES), default=FULL.name,
                      help="full (default), quick, or tiny (a smoke test)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with every figure on stdout (the table "
                        "goes to stderr)")
    p.add_argument("--wipe", action="store_true",
                   help="empty BUILDIT_DATABASE_URL's database first if it holds pipelines")
    p.add_argument("--keep-dir", action="store_true",
                   help="keep the temporary directory (server log, embedded database)")
    # After the group: --quick's default (None) would otherwise win over --size's.
    p.set_defaults(func=cmd_bench, size=FULL.name)


def cmd_bench(args: argparse.Namespace) -> int:
    size = SIZES[args.size]

    def progress(message: str) -> None:
        print(f"bench: {message} ...", file=sys.stderr, flush=True)

    async def main() -> dict[str, Any]:
        async with trio_asyncio.open_loop():
            return await run_bench(size, wipe=args.wipe, keep_dir=args.keep_dir,
                                   progress=progress)

    figures = trio.run(main)
    text = report.table(figures)
    if args.json:
        print(text, file=sys.stderr)
        sys.stdout.buffer.write(orjson.dumps(figures) + b"\n")
    else:
        print(text)
    return 0
