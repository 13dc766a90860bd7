"""``buildit demo``: BuildIt on one machine, from nothing, in one command.

It starts, in one process:

- the server, on an embedded PostgreSQL in the demo's own data directory
  (``<user data dir>/demo``, or ``--data-dir``), flagged as a demo
  (``BUILDIT_DEMO=1``: ``/api/dashboard/status`` answers ``"demo": true`` so the web
  UI can say so);
- a small packages tree (a git repository with a ``stable`` branch) the server plans
  pipelines from and the workers fetch from;
- one real ``buildit worker`` (``buildit.worker.run_worker``) per arch, each with a
  ciel workspace of its own (``.ciel/`` and a ``TREE`` clone), running against
  stand-in ``ciel`` and ``pushpkg`` programs the demo writes into ``<data dir>/bin``
  and puts first on ``PATH``: they build nothing, but print what ciel and ACBS print
  (the worker reads the ACBS summary), take a few seconds and leave fake packages;
- a few pipelines, made through the HTTP API with a Developer token: some succeed,
  one fails (curl does not build on riscv64).

It prints where to look and keeps running until Ctrl-C (``--exit-when-done``: until
the pipelines have ended). Everything it logs goes to ``<data dir>/demo.log``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import trio_asyncio

from buildit.client.api import BuildItApi, ClientError, open_api
from buildit.client.follow import has_ended
from buildit.client.render import outcome
from buildit.config import AOSC_ARCHS, ServerConfig, default_data_dir
from buildit.db import queries
from buildit.errors import BuildItError
from buildit.logs import log_to_file, resolve_format, set_console_level

if TYPE_CHECKING:
    from buildit.worker import WorkerConfig

log = logging.getLogger(__name__)

DEMO_ARCHS = ("amd64", "arm64", "riscv64")
MARKER = ".buildit-demo"
DEMO_USER = "demo"


class DemoError(BuildItError):
    pass


# -- what the demo builds -------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    packages: str
    archs: str | None  # None: the server derives them from the packages tree
    expect: str


SCENARIOS = (
    Scenario("bash,readline", None, "success"),
    Scenario("curl", None, "failed"),  # curl does not build on riscv64 (see FAILURES)
    Scenario("zlib", "amd64,arm64", "success"),
    Scenario("man-pages", None, "success"),  # noarch: built once, by the amd64 worker
)
FAILURES = {"curl": ["riscv64"]}


def demo_plan(count: int) -> list[Scenario]:
    """``count`` pipelines: the scenarios in order, then more of the successful ones."""
    plan = list(SCENARIOS[:count])
    extra = [s for s in SCENARIOS if s.expect == "success"]
    while len(plan) < count:
        plan.append(extra[(len(plan) - len(SCENARIOS)) % len(extra)])
    return plan


def _package(section: str, name: str, spec: str, defines: str) -> dict[str, str]:
    return {f"{section}/{name}/spec": spec,
            f"{section}/{name}/autobuild/defines": f"PKGNAME={name}\n{defines}"}


TREE_FILES: dict[str, str] = {
    "README.md": "A tiny packages tree for `buildit demo` (the layout of aosc-os-abbs).\n",
    **_package("app-shells", "bash",
               'VER=5.2.37\nSRCS="tbl::https://ftp.gnu.org/gnu/bash/bash-$VER.tar.gz"\n',
               'PKGSEC=shells\nPKGDEP="glibc ncurses readline"\n'
               'PKGDES="The GNU Bourne Again shell"\n'),
    **_package("core-libs", "readline",
               'VER=8.2.13\nSRCS="tbl::https://ftp.gnu.org/gnu/readline/readline-$VER.tar.gz"\n',
               'PKGSEC=libs\nPKGDEP="ncurses"\nPKGDES="GNU line-editing library"\n'),
    **_package("core-libs", "zlib",
               'VER=1.3.1\nREL=1\nSRCS="tbl::https://zlib.net/zlib-$VER.tar.xz"\n',
               'PKGSEC=libs\nPKGDEP="glibc"\nPKGDES="A compression library"\n'),
    **_package("app-network", "curl",
               'VER=8.11.1\nSRCS="tbl::https://curl.se/download/curl-$VER.tar.xz"\n',
               'PKGSEC=web\nPKGDEP="openssl zlib"\nPKGDES="Client for URLs"\n'),
    **_package("app-doc", "man-pages",
               'VER=6.9.1\nSRCS="tbl::https://www.kernel.org/pub/linux/docs/man-pages/'
               'man-pages-$VER.tar.xz"\n',
               'PKGSEC=doc\nPKGDES="Linux manual pages"\nABHOST=noarch\n'),
}


# -- the stand-in programs ------------------------------------------------------------

CIEL_SCRIPT = r'''#!{python}
"""A stand-in for ciel, written by `buildit demo`. It compiles nothing.

It prints what ciel and ACBS print (the ACBS build summary the worker reads), takes
a few seconds and leaves fake packages in OUTPUT-<branch>/debs. Its settings are in
demo.json next to it; the arch comes from .ciel/arch in the workspace.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = json.loads((Path(__file__).resolve().parent / "demo.json").read_text())
TRIPLES = {{"amd64": "x86_64-aosc-linux-gnu", "arm64": "aarch64-aosc-linux-gnu",
           "ppc64el": "powerpc64le-aosc-linux-gnu", "loongson3": "mips64el-aosc-linux-gnuabi64"}}


def say(line, err=False):
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


def read_vars(path):
    values = {{}}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            values[key.strip()] = value.strip().strip('"')
    return values


def find(tree, name):
    for spec in sorted(tree.glob(f"*/{{name}}/spec")):
        spec_vars = read_vars(spec)
        defines = read_vars(spec.parent / "autobuild" / "defines")
        version = f"{{spec_vars.get('VER', '0')}}-{{spec_vars.get('REL', '0')}}"
        return version, defines.get("ABHOST") == "noarch", spec_vars.get("VER", "0")
    return None


def timing(seconds):
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{{minutes}}m {{secs}}s"


def column(rows):
    width = max(len(ref) for ref, _ in rows) + 2
    return "".join(ref.ljust(width) + took + "\n" for ref, took in rows)


def update_os():
    say("[INFO]:    Updating the OS of the build container (stand-in: nothing downloaded)")
    for line in ("Hit:1 https://repo.aosc.io/debs stable InRelease",
                 "Reading package lists... Done", "Building dependency tree... Done",
                 "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded."):
        time.sleep(0.05)
        say(line)
    return 0


def build(args):
    instance, topics, packages = None, None, []
    it = iter(args)
    for arg in it:
        if arg == "-i":
            instance = next(it, None)
        elif arg == "--with-topics":
            topics = next(it, None)
        else:
            packages.append(arg)
    if not instance or not packages:
        say("usage: ciel build -i <instance> <packages...>", err=True)
        return 2
    tree = Path.cwd() / "TREE"
    branch = subprocess.run(["git", "-C", str(tree), "rev-parse", "--abbrev-ref", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "stable"
    arch = (Path.cwd() / ".ciel" / "arch").read_text().strip()
    triple = TRIPLES.get(arch, f"{{arch}}-aosc-linux-gnu")
    per_package = float(SETTINGS.get("build_seconds", 5)) / len(packages)
    say(f"[INFO]:    Building in instance {{instance}} ({{arch}}, branch {{branch}}"
        + (f", topics {{topics}}" if topics else "") + ") -- a demo: nothing is compiled")
    built, failed, skipped = [], None, []
    for name in packages:
        found = find(tree, name)
        if failed is not None:
            skipped.append(f"{{name}} ({{arch}} @ {{found[0] if found else '?'}})")
            continue
        if found is None:
            say(f"[ERROR]:   Package not found: {{name}}", err=True)
            failed = (f"{{name}} ({{arch}} @ ?)", timing(0))
            continue
        version, noarch, upstream = found
        ref = f"{{name}} ({{'noarch' if noarch else arch}} @ {{version}})"
        begin = time.monotonic()
        steps = [
            f"[INFO]:    Building {{ref}}...",
            f"[INFO]:    Fetching source: {{name}}-{{upstream}}.tar.xz",
            "[INFO]:    Checksum verified (sha256)",
            "[INFO]:    Build type: autotools",
            f"checking build system type... {{triple}}",
            "checking for gcc... gcc",
            "checking whether the C compiler works... yes",
            "config.status: creating Makefile",
            f"  CC       {{name}}.o",
            f"  CCLD     {{name}}",
        ]
        for step in steps:
            say(step)
            time.sleep(per_package / (len(steps) + 2))
        if arch in SETTINGS.get("fail", {{}}).get(name, []):
            say(f"{{name}}.c:1337:5: error: implicit declaration of function 'frobnicate'",
                err=True)
            say("make: *** [Makefile:1234: all] Error 2", err=True)
            say(f"[ERROR]:   Build failed: {{ref}}: make exited with status 2", err=True)
            failed = (ref, timing(time.monotonic() - begin))
            continue
        deb = f"{{name}}_{{version}}_{{'noarch' if noarch else arch}}.deb"
        say(f"dpkg-deb: building package '{{name}}' in '{{deb}}'.")
        debs = Path.cwd() / f"OUTPUT-{{branch}}" / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        (debs / deb).write_text("not really a package (buildit demo)\n")
        time.sleep(per_package / (len(steps) + 2))
        say(f"[INFO]:    Build finished: {{ref}}")
        built.append((ref, timing(time.monotonic() - begin)))
    banner = "=" * 40
    say("")
    say(banner)
    say(f"    ACBS Build {{'Failed' if failed else 'Successful'}}")
    say(banner)
    say("")
    if failed:
        say("Failed package:")
        sys.stdout.write(column([failed]))
    if built:
        say("Package(s) built:")
        sys.stdout.write(column(built))
    if skipped:
        say("Package(s) not built due to previous build failure:")
        sys.stdout.write("".join(ref + "\n" for ref in skipped))
    sys.stdout.flush()
    return 1 if failed else 0


def main():
    args = sys.argv[1:]
    if args[:1] == ["update-os"]:
        return update_os()
    if args[:1] == ["build"]:
        return build(args[1:])
    say(f"ciel (buildit demo stand-in): unsupported command {{' '.join(args)}}", err=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
'''

PUSHPKG_SCRIPT = r'''#!{python}
"""A stand-in for pushpkg, written by `buildit demo`: it uploads nothing."""

import sys
from pathlib import Path

debs = sorted(Path("debs").glob("*.deb")) if Path("debs").is_dir() else []
target = " ".join(a for a in sys.argv[1:] if not a.startswith("-"))
print(f"[+] pushpkg (buildit demo stand-in): {{len(debs)}} package(s)", flush=True)
for deb in debs:
    print(f"Uploading {{deb.name}}... done (not really: this is a demo)", flush=True)
'''


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def write_stand_ins(bin_dir: Path, *, build_seconds: float) -> None:
    python = sys.executable
    _write(bin_dir / "ciel", CIEL_SCRIPT.format(python=python), 0o755)
    _write(bin_dir / "pushpkg", PUSHPKG_SCRIPT.format(python=python), 0o755)
    _write(bin_dir / "demo.json",
           json.dumps({"build_seconds": build_seconds, "fail": FAILURES}, indent=2) + "\n")


# -- git --------------------------------------------------------------------------------

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "BuildIt Demo",
    "GIT_AUTHOR_EMAIL": "demo@buildit.invalid",
    "GIT_COMMITTER_NAME": "BuildIt Demo",
    "GIT_COMMITTER_EMAIL": "demo@buildit.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def _git(cwd: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                                text=True, env={**os.environ, **_GIT_ENV})
    except FileNotFoundError:
        raise DemoError("the demo needs git: install it first") from None
    except subprocess.CalledProcessError as exc:
        raise DemoError(f"git {' '.join(args)} failed in {cwd}: {exc.stderr.strip()}") from exc
    return result.stdout.strip()


def create_tree(path: Path) -> None:
    """The demo's packages tree: one commit on ``stable`` (kept when it exists)."""
    if (path / ".git").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "--quiet", "--initial-branch", "stable")
    for name, content in TREE_FILES.items():
        _write(path / name, content)
    _git(path, "add", "--all")
    _git(path, "commit", "--quiet", "-m", "demo packages tree")


def create_workspace(path: Path, *, arch: str, tree: Path) -> None:
    """A ciel workspace as the worker checks it: ``.ciel/`` and a ``TREE`` git clone."""
    (path / ".ciel").mkdir(parents=True, exist_ok=True)
    _write(path / ".ciel" / "arch", arch + "\n")
    if not (path / "TREE" / ".git").exists():
        _git(path, "clone", "--quiet", "--branch", "stable", str(tree), "TREE")


# -- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path
    port: int = 3000
    pipelines: int = 4
    build_seconds: float = 8.0
    archs: tuple[str, ...] = DEMO_ARCHS
    exit_when_done: bool = False
    worker_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tree(self) -> Path:
        return self.data_dir / "abbs"

    @property
    def bin_dir(self) -> Path:
        return self.data_dir / "bin"

    def workspace(self, arch: str) -> Path:
        return self.data_dir / "workers" / arch


def server_config(options: DemoOptions) -> ServerConfig:
    return ServerConfig(
        database_url=None,  # the embedded PostgreSQL, in the demo's data dir
        data_dir=options.data_dir / "server",
        listen_host="127.0.0.1",
        listen_port=options.port,
        public_url=options.url,
        worker_secret=options.worker_secret,
        archs=options.archs,
        heartbeat_timeout=30.0,
        long_poll_max=25.0,
        abbs_path=options.tree,
        extra={"BUILDIT_DEMO": "1"},
    )


def worker_config(options: DemoOptions, arch: str) -> WorkerConfig:
    from buildit.worker import WorkerConfig

    return WorkerConfig(
        server=options.url,
        worker_secret=options.worker_secret,
        arch=arch,
        ciel_path=options.workspace(arch),
        hostname=f"demo-{arch}",
        ssh_key=str(options.data_dir / "demo-ssh-key"),  # so the stand-in pushpkg runs
        heartbeat_interval=5.0,
        git_remote=str(options.tree),
        connectivity_check="",
        shutdown_grace=0.0,
        retry_initial_delay=0.5,
        retry_max_delay=5.0,
        retry_attempts=3,
        kill_grace=2.0,
        log_flush_interval=0.5,
        idle_poll_delay=1.0,
        hand_back_limit=5.0,
    )


def check_port(port: int) -> None:
    """Fail early, with a useful message, when something already listens on ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise DemoError(f"cannot serve on 127.0.0.1:{port} ({exc.strerror}): "
                            "pick another port with --port") from None


def prepare(options: DemoOptions, *, reset: bool) -> None:
    """Files the demo needs (synchronous: before anything runs)."""
    check_port(options.port)
    data = options.data_dir
    if data.exists() and any(data.iterdir()) and not (data / MARKER).exists():
        raise DemoError(f"{data} is not empty and is not a demo data directory; "
                        "pick another with --data-dir")
    if reset and data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    (data / MARKER).write_text("made by `buildit demo`; --reset deletes this directory\n")
    write_stand_ins(options.bin_dir, build_seconds=options.build_seconds)
    _write(data / "demo-ssh-key", "not a key: the demo's pushpkg uploads nothing\n", 0o600)
    create_tree(options.tree)
    for arch in options.archs:
        create_workspace(options.workspace(arch), arch=arch, tree=options.tree)


# -- running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoHandle:
    url: str
    token: str
    pipeline_ids: list[int]
    done: trio.Event


async def _demo_token(services: Any, options: DemoOptions) -> str:
    await services.db.run(queries.upsert_user, DEMO_USER, "developer")
    token: str = await services.create_token(DEMO_USER)
    path = options.data_dir / "demo-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def _say(line: str = "") -> None:
    print(line, flush=True)


def _banner(options: DemoOptions, ids: Sequence[int]) -> None:
    url = options.url
    has_web = importlib.util.find_spec("buildit.web") is not None
    _say()
    _say("BuildIt demo: a server, build workers and pipelines on this machine.")
    _say("Builds are simulated (a stand-in ciel) and nothing is uploaded.")
    _say()
    _say(f"  open:      {url}/" if has_web else f"  API docs:  {url}/api/docs")
    _say(f"  pipelines: {url}/api/pipeline/list")
    _say(f"  metrics:   {url}/metrics")
    _say("  workers:   " + ", ".join(f"demo-{a} ({a})" for a in options.archs))
    _say(f"  data:      {options.data_dir}  (log: demo.log; `--reset` starts afresh)")
    _say()
    _say("Try the command-line client:")
    _say(f"  export BUILDIT_SERVER={url} BUILDIT_TOKEN=$(cat {options.data_dir / 'demo-token'})")
    _say("  buildit pipeline new stable bash,zlib amd64,arm64 --follow")
    _say()
    _say(f"Created pipelines {', '.join(map(str, ids))}. Stop the demo with Ctrl-C.")


async def _report(api: BuildItApi, ids: Sequence[int], done: trio.Event) -> None:
    """Print each pipeline's outcome as it ends; set ``done`` when all have."""
    waiting = list(ids)
    outcomes: dict[str, int] = {}
    while waiting:
        for pipeline_id in list(waiting):
            try:
                info = await api.pipeline_info(pipeline_id)
            except ClientError as exc:
                log.warning("demo: cannot read pipeline %d: %s", pipeline_id, exc)
                break
            if not has_ended(info):
                continue
            waiting.remove(pipeline_id)
            status = outcome(info)
            outcomes[status] = outcomes.get(status, 0) + 1
            why = "; ".join(f"{j['arch']}: {j.get('failed_package') or j.get('error_message')}"
                            f" did not build" for j in info["jobs"]
                            if j["status"] in ("failed", "error"))
            _say(f"pipeline {pipeline_id} ({info['packages']} for "
                 f"{', '.join(j['arch'] for j in info['jobs'])}): {status}"
                 + (f" ({why})" if why else ""))
        if waiting:
            await trio.sleep(1.0)
    words = {"success": "succeeded", "failed": "failed", "error": "errored"}
    summary = ", ".join(f"{outcomes[s]} {w}" for s, w in words.items() if s in outcomes)
    _say(f"All {len(ids)} demo pipelines have ended: {summary}.")
    done.set()


async def run_demo(
    options: DemoOptions,
    *,
    stop: trio.Event,
    task_status: trio.TaskStatus[DemoHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Server, workers and pipelines until ``stop``. Inside ``trio_asyncio.open_loop()``."""
    from buildit.server import RunningServer, run_server
    from buildit.worker import WorkerHandle, run_worker

    # The workers run ciel and pushpkg from PATH: the stand-ins come first.
    path = os.environ.get("PATH", "")
    if not path.startswith(f"{options.bin_dir}{os.pathsep}"):
        os.environ["PATH"] = f"{options.bin_dir}{os.pathsep}{path}"
    server_stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running: RunningServer = await nursery.start(
            partial(run_server, server_config(options), stop=server_stop))
        try:
            token = await _demo_token(running.services, options)
            # The API client outlives the nursery: the reporter uses it until cancelled.
            async with open_api(running.url, token=token) as api, \
                    trio.open_nursery() as inner:
                workers: list[WorkerHandle] = []
                for arch in options.archs:
                    workers.append(await inner.start(run_worker, worker_config(options, arch)))
                ids = []
                for scenario in demo_plan(options.pipelines):
                    created = await api.new_pipeline(
                        git_branch="stable", packages=scenario.packages, archs=scenario.archs)
                    ids.append(int(created["id"]))
                done = trio.Event()
                inner.start_soon(_report, api, ids, done)
                task_status.started(DemoHandle(running.url, token, ids, done))
                _banner(options, ids)
                if options.exit_when_done:
                    async with trio.open_nursery() as waiters:
                        for event in (stop, done):
                            waiters.start_soon(_set_when, event, waiters.cancel_scope)
                else:
                    await stop.wait()
                _say("Stopping the demo...")
                for worker in workers:
                    worker.request_shutdown(immediate=True)
                with trio.move_on_after(15):
                    for worker in workers:
                        await worker.wait_stopped()
                inner.cancel_scope.cancel()
        finally:
            server_stop.set()


async def _set_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return


# -- the command ------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="try BuildIt on this machine: server, workers and pipelines in one go",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=3000, help="port to serve on (default: 3000)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"where the demo keeps everything (default: {default_data_dir()}/demo)")
    p.add_argument("--pipelines", type=int, default=4,
                   help="how many pipelines to create (default: 4; the second one fails)")
    p.add_argument("--build-seconds", type=float, default=8.0,
                   help="how long a simulated build takes (default: 8)")
    p.add_argument("--archs", default=",".join(DEMO_ARCHS),
                   help=f"one worker per arch (default: {','.join(DEMO_ARCHS)})")
    p.add_argument("--reset", action="store_true",
                   help="delete the demo data directory first (database included)")
    p.add_argument("--exit-when-done", action="store_true",
                   help="stop once the pipelines have ended")
    p.set_defaults(func=cmd_demo)


def _options(args: argparse.Namespace) -> DemoOptions:
    archs = tuple(a.strip() for a in str(args.archs).split(",") if a.strip())
    unknown = [a for a in archs if a not in AOSC_ARCHS]
    if not archs or unknown:
        raise DemoError(f"--archs must name AOSC architectures ({', '.join(AOSC_ARCHS)})")
    if "amd64" not in archs:
        raise DemoError("--archs must include amd64 (it builds the noarch pipeline)")
    if not 0 < args.port < 65536:
        raise DemoError("--port must be between 1 and 65535")
    if args.pipelines < 1 or args.build_seconds < 0:
        raise DemoError("--pipelines must be at least 1 and --build-seconds not negative")
    data_dir = (args.data_dir or default_data_dir() / "demo").expanduser().resolve()
    return DemoOptions(data_dir=data_dir, port=args.port, pipelines=args.pipelines,
                       build_seconds=args.build_seconds, archs=archs,
                       exit_when_done=args.exit_when_done)


def cmd_demo(args: argparse.Namespace) -> int:
    options = _options(args)
    prepare(options, reset=args.reset)
    log_to_file(options.data_dir / "demo.log", fmt=resolve_format(args.log_format))
    if not args.verbose:
        # The console is for the demo's own lines; the whole story is in demo.log.
        set_console_level(logging.WARNING)
    log.info("buildit demo starting in %s", options.data_dir)
    _say(f"Starting the BuildIt demo in {options.data_dir} ...")

    async def main() -> None:
        stop = trio.Event()
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, stop)
            await run_demo(options, stop=stop)
            nursery.cancel_scope.cancel()

    trio.run(main)
    _say("The demo has stopped. `buildit demo` starts it again with the same data.")
    return 0
