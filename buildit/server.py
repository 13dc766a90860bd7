"""The composition root of ``buildit serve``.

    trio.run(main)
    └ trio_asyncio.open_loop()          (the caller's: outermost, outlives every db user)
      └ embedded PostgreSQL (when no BUILDIT_DATABASE_URL)
        └ database pool                 closed shielded and time-limited, after its users
          └ migrations                  before anything serves
            └ root nursery
              ├ Supervisor (one_for_one)
              │  ├ Fleet                 batched heartbeats, who holds a job
              │  ├ Scheduler per arch     hands jobs to polling workers
              │  ├ Aggregator            job events -> live subscribers
              │  ├ Listener              LISTEN/NOTIFY -> wakes and events
              │  ├ Watchdog              requeues jobs of silent workers (advisory lock)
              │  ├ GitHub                PR comment commands; the GitHub HTTP client
              │  └ Notifier              delivers the outbox to GitHub / Telegram
              └ hypercorn.trio.serve     web UI, webhooks, worker API
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Blueprint
from quart_trio import QuartTrio

from buildit.abbs import AbbsTree
from buildit.actors.aggregator import Aggregator
from buildit.actors.fleet import Fleet
from buildit.actors.listener import Listener
from buildit.actors.notifier import Deliverer, Notifier
from buildit.actors.scheduler import Scheduler
from buildit.actors.supervisor import ChildSpec, Supervisor
from buildit.actors.watchdog import Watchdog
from buildit.config import ServerConfig
from buildit.db import Database, open_database
from buildit.db.embedded import embedded_postgres
from buildit.db.migrate import migrate
from buildit.github import GitHub, notifier_options
from buildit.http.app import create_app
from buildit.metrics import Metrics
from buildit.services import Services
from buildit.telegram.frontend import telegram_front_end
from buildit.web import blueprint as web_blueprint
from buildit.web import init_app as init_web

log = logging.getLogger(__name__)


MMAP_THRESHOLD = 64 * 1024


def limit_heap_fragmentation() -> bool:
    """glibc: allocate blocks of 64 KiB and more with mmap, as ``MALLOC_MMAP_THRESHOLD_=65536``.

    hypercorn reads each connection with ``recv(65536)``: CPython allocates 64 KiB per read,
    shrinks it in place to what arrived, and the reading task keeps that last chunk until
    the connection's next request (a worker's long poll: 20 s and more). Under glibc's
    default (dynamic) threshold those 64 KiB blocks come from the main heap, each kept chunk
    stops its 64 KiB hole from serving the next read, and the heap fills with free memory:
    RSS grew by some 50 MiB/h in a 500-worker soak while the memory in use stayed flat.
    Through mmap each read is given back when freed. Returns whether it was set (not on
    other C libraries, nor when the environment already sets the threshold).
    """
    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ or (
        "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", "")
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc
        return False
    m_mmap_threshold = -3
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD))


@dataclass(frozen=True)
class RunningServer:
    url: str
    services: Services
    supervisor: Supervisor
    watchdog: Watchdog
    stop: trio.Event
    app: QuartTrio | None = None  # the quart-trio app serving ``url`` (tests walk its routes)


@asynccontextmanager
async def database_for(config: ServerConfig) -> AsyncIterator[Database]:
    """The configured database, or the embedded one; migrated."""
    async with AsyncExitStack() as stack:
        dsn = config.database_url
        if dsn is None:
            dsn = await stack.enter_async_context(embedded_postgres(config.data_dir))
        db = await stack.enter_async_context(open_database(dsn, min_size=2, max_size=20))
        applied = await migrate(db)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        yield db


def _open_tree(config: ServerConfig) -> AbbsTree | None:
    if config.abbs_path is None:
        return None
    return AbbsTree(config.abbs_path, remote=config.abbs_remote)


def _hypercorn_config(config: ServerConfig) -> HypercornConfig:
    hconfig = HypercornConfig()
    host = config.listen_host
    hconfig.bind = [f"[{host}]:{config.listen_port}" if ":" in host else
                    f"{host}:{config.listen_port}"]
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    hconfig.graceful_timeout = 5.0
    hconfig.keep_alive_timeout = 75.0
    hconfig.h11_max_incomplete_size = 16 * 1024
    hconfig.backlog = 2048
    return hconfig


async def run_server(
    config: ServerConfig,
    *,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run BuildIt until ``stop`` is set. Must run inside ``trio_asyncio.open_loop()``.

    ``task_status.started`` receives a ``RunningServer`` once the server accepts
    requests (its ``url`` holds the real port when binding port 0).
    """
    if stop is None:
        stop = trio.Event()
    async with database_for(config) as db:
        config.log_dir.mkdir(parents=True, exist_ok=True)
        fleet = Fleet(db)
        aggregator = Aggregator()
        services = Services(config=config, db=db, fleet=fleet, aggregator=aggregator)
        services.tree = _open_tree(config)
        services.schedulers = {arch: Scheduler(db, arch) for arch in config.archs}
        # Front ends that send notifications add a deliverer per outbox channel here.
        deliverers: dict[str, Deliverer] = {}
        telegram = telegram_front_end(services)
        if telegram is not None:
            deliverers["telegram"] = telegram.deliverer
        github = GitHub.from_config(config, services)  # None unless BUILDIT_GITHUB_* are set
        if github is not None:
            deliverers["github"] = github.deliver
            services.github = github
        notifier = Notifier(db, deliverers, **notifier_options(config))
        services.notifier = notifier
        listener = Listener(
            db,
            on_wake=services.wake,
            on_wake_all=services.wake_all,
            on_event=aggregator.publish,
            on_outbox=notifier.wake,
        )
        watchdog = Watchdog(
            db,
            timeout=config.heartbeat_timeout,
            period=config.watchdog_period,
            max_lost_attempts=config.max_lost_attempts,
        )
        children = [
            ChildSpec("fleet", fleet.run),
            *(ChildSpec(f"scheduler-{a}", s.run) for a, s in services.schedulers.items()),
            ChildSpec("aggregator", aggregator.run),
            ChildSpec("listener", listener.run),
            ChildSpec("watchdog", watchdog.run),
            # before the notifier: it owns the HTTP client GitHub deliveries use
            *([ChildSpec("github", github.run)] if github is not None else []),
            # before the notifier too: it holds the Bot API client Telegram deliveries use
            *([telegram.child] if telegram is not None else []),
            ChildSpec("notifier", notifier.run),
        ]
        supervisor = Supervisor(children, max_restarts=10, period=60.0)
        # Front ends with routes of their own (webhooks, web UI) add blueprints here.
        metrics = Metrics(services, supervisor=supervisor, watchdog=watchdog)
        blueprints: list[Blueprint] = [metrics.blueprint]
        if telegram is not None:
            blueprints.append(telegram.blueprint)
        if github is not None:
            blueprints.append(github.blueprint)
        blueprints.append(web_blueprint)
        app = create_app(services, blueprints)
        init_web(app, stop=stop)  # web UI: session secret, quart-auth, its settings
        async with trio.open_nursery() as root:
            await root.start(supervisor.run)
            binds = await root.start(
                partial(serve, app, _hypercorn_config(config), shutdown_trigger=stop.wait)
            )
            url = binds[0].replace("0.0.0.0", "127.0.0.1")  # noqa: S104
            log.info("BuildIt listening on %s", url)
            task_status.started(
                RunningServer(url=url, services=services, supervisor=supervisor,
                              watchdog=watchdog, stop=stop, app=app)
            )
            await stop.wait()
            log.info("shutting down")
            await supervisor.shutdown(grace=5.0)
