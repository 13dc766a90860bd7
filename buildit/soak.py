"""``buildit soak``: a real server under a steady fleet for a while; does it stay flat?

    buildit soak [--minutes 30] [--workers 500] [--json]

Starts ``buildit serve`` as a child process (on ``BUILDIT_DATABASE_URL`` when set, else
the embedded PostgreSQL in a temporary data directory), then runs simulated workers
against it over real HTTP, as ``buildit worker`` does: a heartbeat every
``--heartbeat`` seconds (naming the job while building), long polls, and for each job
a short "build", one log chunk and the result. A steady trickle of one-job pipelines
(``--jobs-per-minute``) keeps them busy.

Every ``--sample`` seconds it samples the server process: its RSS (``VmRSS`` of
``/proc/<pid>/status``), its open files (``/proc/<pid>/fd``), and its database pool
(``GET /api/health``: ``pool.size/idle/max``). At the end it prints the samples, then
first/last/max and the slope per hour of each, and fails (exit status 1) when, after the
warm-up, RSS grew by more than ``--max-rss-growth`` MiB or the open files by more than
``--max-fd-growth``, or when any request failed with a 5xx or a transport error, or the
server died.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from buildit.errors import BuildItError

log = logging.getLogger(__name__)
MIB = 1024 * 1024


class SoakError(BuildItError):
    """The soak could not run (the server did not start, a setup command failed)."""


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 30.0
    workers: int = 500
    heartbeat: float = 10.0  # seconds between a worker's heartbeats
    wait: float = 20.0  # wait_secs of a long poll (the server caps it)
    jobs_per_minute: float = 60.0
    sample: float = 10.0  # seconds between samples
    warmup: float | None = None  # seconds; default: a fifth of the run, 10 s to 120 s
    max_rss_growth: float = 64.0  # MiB after the warm-up
    max_fd_growth: int = 50
    archs: tuple[str, ...] = ("amd64", "arm64")
    build_secs: tuple[float, float] = (0.5, 3.0)

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def warmup_secs(self) -> float:
        if self.warmup is not None:
            return self.warmup
        return max(10.0, min(120.0, self.seconds / 5))


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the workers started
    rss_mib: float
    fds: int
    pool_size: int | None
    pool_idle: int | None
    pool_max: int | None
    jobs_done: int
    requests: int
    failures: int  # 5xx and transport errors so far


@dataclass
class Counters:
    requests: int = 0
    server_errors: int = 0  # 5xx
    transport_errors: int = 0
    refused: int = 0  # other 4xx (a 409 for a job lost is normal)
    pipelines: int = 0
    claims: int = 0
    jobs_done: int = 0
    heartbeats: int = 0
    last_error: str = ""

    @property
    def failures(self) -> int:
        return self.server_errors + self.transport_errors


@dataclass(frozen=True)
class Trend:
    first: float
    last: float
    max: float
    growth: float  # last minus the first sample after the warm-up
    slope_per_hour: float  # least squares over the samples after the warm-up


@dataclass
class Report:
    options: SoakOptions
    samples: list[Sample]
    counters: Counters
    trends: dict[str, Trend] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "options": asdict(self.options),
            "samples": [asdict(s) for s in self.samples],
            "counters": asdict(self.counters),
            "trends": {name: asdict(t) for name, t in self.trends.items()},
            "failures": self.failures,
            "ok": not self.failures,
        }


# ------------------------------------------------------------------ decisions (pure)


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour (0 with < 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600.0


def trend(samples: Sequence[Sample], metric: str, warmup: float) -> Trend:
    values = [(s.t, float(getattr(s, metric) or 0)) for s in samples]
    after = [(t, v) for t, v in values if t >= warmup] or values[-1:]
    return Trend(
        first=values[0][1],
        last=values[-1][1],
        max=max(v for _, v in values),
        growth=after[-1][1] - after[0][1],
        slope_per_hour=slope_per_hour(after),
    )


def judge(samples: Sequence[Sample], counters: Counters, options: SoakOptions
          ) -> tuple[dict[str, Trend], list[str]]:
    """The trends of the samples, and what failed (empty: the soak passed)."""
    failures: list[str] = []
    if len(samples) < 2:
        return {}, ["fewer than two samples were taken"]
    warmup = options.warmup_secs
    trends = {m: trend(samples, m, warmup) for m in ("rss_mib", "fds", "pool_size")}
    rss, fds = trends["rss_mib"], trends["fds"]
    if rss.growth > options.max_rss_growth:
        failures.append(f"RSS grew by {rss.growth:.1f} MiB after the warm-up "
                        f"(limit {options.max_rss_growth:g} MiB)")
    if fds.growth > options.max_fd_growth:
        failures.append(f"open files grew by {fds.growth:.0f} after the warm-up "
                        f"(limit {options.max_fd_growth})")
    if counters.server_errors:
        failures.append(f"{counters.server_errors} requests answered 5xx "
                        f"(last: {counters.last_error})")
    if counters.transport_errors:
        failures.append(f"{counters.transport_errors} requests failed in transport "
                        f"(last: {counters.last_error})")
    return trends, failures


def render(report: Report, *, rows: bool = True) -> str:
    """The table of samples (without it: ``rows=False``), the trends, the verdict."""
    lines = [f"{'t (s)':>7} {'RSS MiB':>8} {'fds':>5} {'pool':>9} {'jobs':>7} "
             f"{'req':>8} {'failed':>6}"]
    for s in report.samples if rows else ():
        pool = (f"{s.pool_size}/{s.pool_idle}/{s.pool_max}" if s.pool_size is not None
                else "-")
        lines.append(f"{s.t:7.0f} {s.rss_mib:8.1f} {s.fds:5d} {pool:>9} {s.jobs_done:7d} "
                     f"{s.requests:8d} {s.failures:6d}")
    lines.append("")
    lines.append(f"after a warm-up of {report.options.warmup_secs:.0f} s:")
    for name, label in (("rss_mib", "RSS (MiB)"), ("fds", "open files"),
                        ("pool_size", "pool size")):
        t = report.trends.get(name)
        if t is not None:
            lines.append(f"  {label:<11} first {t.first:8.1f}  last {t.last:8.1f}  "
                         f"max {t.max:8.1f}  growth {t.growth:+8.1f}  "
                         f"slope {t.slope_per_hour:+9.1f}/h")
    c = report.counters
    lines.append(f"  {c.pipelines} pipelines, {c.claims} claims, {c.jobs_done} jobs done, "
                 f"{c.heartbeats} heartbeats, {c.requests} requests, {c.refused} refused "
                 f"(4xx), {c.server_errors} 5xx, {c.transport_errors} transport errors")
    lines.append("PASS" if not report.failures else
                 "FAIL: " + "; ".join(report.failures))
    return "\n".join(lines)


# ------------------------------------------------------------------ the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def count_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class ServerChild:
    process: trio.Process
    url: str
    env: dict[str, str]
    log_path: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


async def _buildit(env: dict[str, str], *args: str) -> str:
    result = await trio.run_process([sys.executable, "-m", "buildit", *args], env=env,
                                    capture_stdout=True, capture_stderr=True, check=False)
    if result.returncode != 0:
        raise SoakError(f"buildit {' '.join(args)} failed: "
                        f"{result.stderr.decode(errors='replace')[-2000:]}")
    return result.stdout.decode().strip()


async def start_server(data_dir: Path, options: SoakOptions, *, extra_env: dict[str, str]
                       ) -> tuple[ServerChild, str]:
    """``buildit serve`` as a child; returns it and a Developer's API token."""
    port = _free_port()
    env = {
        **os.environ,
        "BUILDIT_DATA_DIR": str(data_dir),
        "BUILDIT_LISTEN": f"127.0.0.1:{port}",
        "BUILDIT_WORKER_SECRET": secrets.token_urlsafe(24),
        "BUILDIT_ARCHS": ",".join(options.archs),
        "BUILDIT_HEARTBEAT_TIMEOUT": str(max(60.0, options.heartbeat * 6)),
        **extra_env,
    }
    await _buildit(env, "user", "add", "--github-login", "buildit-soak", "--role", "developer")
    token = (await _buildit(env, "token", "create", "--github-login", "buildit-soak")
             ).splitlines()[-1]
    log_path = data_dir / "serve.log"
    with open(log_path, "ab") as out:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "buildit", "serve"], env=env, stdout=out, stderr=out)
    child = ServerChild(process, f"http://127.0.0.1:{port}", env, log_path)
    try:
        with trio.fail_after(120):
            async with httpx.AsyncClient(timeout=5) as client:
                while True:
                    if process.poll() is not None:
                        raise SoakError(f"the server exited at start:\n{child.tail()}")
                    try:
                        if (await client.get(f"{child.url}/api/ping")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.1)
    except BaseException:
        await stop_server(child)
        raise
    return child, token


async def stop_server(child: ServerChild) -> None:
    with trio.CancelScope(shield=True):
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(30):
                await child.process.wait()
            if child.process.returncode is None:
                child.process.kill()
                await child.process.wait()


# ------------------------------------------------------------------ the fleet


WORKERS_PER_CLIENT = 25  # httpx's pool scans its connections: keep each pool small


@dataclass
class Fleet:
    clients: list[httpx.AsyncClient]  # [0]: the sampler and the pipelines; then per shard
    url: str
    secret: str
    token: str
    options: SoakOptions
    counters: Counters = field(default_factory=Counters)

    def client(self, worker: int | None = None) -> httpx.AsyncClient:
        if worker is None:
            return self.clients[0]
        return self.clients[1 + worker // WORKERS_PER_CLIENT]

    async def post(self, path: str, *, worker: int | None = None, **kwargs: Any
                   ) -> httpx.Response | None:
        """POST; None on a transport error or a 5xx (counted)."""
        self.counters.requests += 1
        try:
            r = await self.client(worker).post(f"{self.url}{path}", **kwargs)
        except httpx.TransportError as exc:
            self.counters.transport_errors += 1
            self.counters.last_error = f"{path}: {exc.__class__.__name__}: {exc}"
            return None
        if r.status_code >= 500:
            self.counters.server_errors += 1
            self.counters.last_error = f"{path}: {r.status_code} {r.text[:200]}"
            return None
        if r.status_code >= 400:
            self.counters.refused += 1
        return r

    def _machine(self, hostname: str, arch: str) -> dict[str, Any]:
        return {"hostname": hostname, "arch": arch, "worker_secret": self.secret,
                "memory_bytes": 64 * 2**30, "logical_cores": 32,
                "disk_free_space_bytes": 500 * 10**9}

    async def worker(self, index: int, *, rng: random.Random) -> None:
        hostname = f"soak-{index:04d}"
        arch = self.options.archs[index % len(self.options.archs)]
        machine = self._machine(hostname, arch)
        holding: dict[str, Any] = {}
        await trio.sleep(rng.uniform(0, min(self.options.heartbeat, 5.0)))  # spread starts
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeats, index, machine, holding, rng)
            while True:
                r = await self.post("/api/worker/poll", worker=index,
                                    json={**machine, "wait_secs": self.options.wait},
                                    timeout=self.options.wait + 30)
                if r is None or r.status_code != 200:
                    await trio.sleep(1.0)
                    continue
                job = r.json()
                if job is None:
                    continue
                self.counters.claims += 1
                holding.update(job)
                await trio.sleep(rng.uniform(*self.options.build_secs))
                await self.post(
                    "/api/worker/log", worker=index, params={"job_id": job["job_id"], "offset": 0,
                                               "attempt_token": job["attempt_token"]},
                    content=b"soak build log\n" * 256,
                    headers={"X-Worker-Secret": self.secret, "X-Worker-Hostname": hostname,
                             "X-Worker-Arch": arch})
                result = {"Ok": {"build_success": True, "pushpkg_success": True,
                                 "successful_packages": ["soak-pkg"], "failed_package": None,
                                 "skipped_packages": [], "log_url": None, "elapsed_secs": 1}}
                while True:  # a result is never dropped
                    r = await self.post("/api/worker/job_update", worker=index, json={
                        **machine, "job_id": job["job_id"],
                        "attempt_token": job["attempt_token"], "result": result})
                    if r is not None and r.status_code in (200, 409):
                        break
                    await trio.sleep(1.0)
                holding.clear()
                if r.status_code == 200:
                    self.counters.jobs_done += 1

    async def _heartbeats(self, index: int, machine: dict[str, Any],
                          holding: dict[str, Any], rng: random.Random) -> None:
        await trio.sleep(rng.uniform(0, self.options.heartbeat))
        while True:
            body = {**machine, "git_commit": "soak", "performance": None,
                    "internet_connectivity": True, "worker_version": "soak"}
            if holding:
                body |= {"job_id": holding["job_id"],
                         "attempt_token": holding["attempt_token"]}
            if await self.post("/api/worker/heartbeat", worker=index, json=body) is not None:
                self.counters.heartbeats += 1
            await trio.sleep(self.options.heartbeat)

    async def pipelines(self, *, rng: random.Random) -> None:
        if self.options.jobs_per_minute <= 0:
            return
        period = 60.0 / self.options.jobs_per_minute
        for n in itertools.count():
            arch = self.options.archs[n % len(self.options.archs)]
            r = await self.post("/api/pipeline/new", json={
                "git_branch": "soak", "git_sha": f"{rng.getrandbits(160):040x}",
                "packages": "soak-pkg", "archs": arch},
                headers={"Authorization": f"Bearer {self.token}"})
            if r is not None and r.status_code == 200:
                self.counters.pipelines += 1
            await trio.sleep(period)


async def _sample(fleet: Fleet, pid: int, started: float) -> Sample:
    pool: dict[str, Any] = {}
    fleet.counters.requests += 1
    try:
        r = await fleet.client().get(f"{fleet.url}/api/health", timeout=10)
        if r.status_code == 200:
            pool = r.json().get("pool") or {}
        elif r.status_code >= 500:
            fleet.counters.server_errors += 1
            fleet.counters.last_error = f"/api/health: {r.status_code} {r.text[:200]}"
    except httpx.TransportError as exc:
        fleet.counters.transport_errors += 1
        fleet.counters.last_error = f"/api/health: {exc.__class__.__name__}: {exc}"
    c = fleet.counters
    return Sample(t=trio.current_time() - started, rss_mib=read_rss_mib(pid), fds=count_fds(pid),
                  pool_size=pool.get("size"), pool_idle=pool.get("idle"),
                  pool_max=pool.get("max"), jobs_done=c.jobs_done, requests=c.requests,
                  failures=c.failures)


async def run_soak(options: SoakOptions, *, extra_env: dict[str, str] | None = None,
                   live: bool = False, seed: int | None = None) -> Report:
    """Start a server, run the fleet for ``options.minutes``, stop; the samples judged.

    ``live``: print each sample as it is taken (the table's rows).
    """
    rng = random.Random(seed)
    data_dir = Path(tempfile.mkdtemp(prefix="buildit-soak-"))
    samples: list[Sample] = []
    try:
        child, token = await start_server(data_dir, options, extra_env=extra_env or {})
        limits = httpx.Limits(max_connections=WORKERS_PER_CLIENT * 2 + 10,
                              max_keepalive_connections=WORKERS_PER_CLIENT * 2 + 10)
        shards = 1 + (options.workers + WORKERS_PER_CLIENT - 1) // WORKERS_PER_CLIENT
        try:
            async with AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(
                    httpx.AsyncClient(limits=limits, timeout=30)) for _ in range(shards)]
                fleet = Fleet(clients, child.url, child.env["BUILDIT_WORKER_SECRET"], token,
                              options)
                started = trio.current_time()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(partial(fleet.pipelines, rng=random.Random(rng.random())))
                    for i in range(options.workers):
                        # a generator each: deterministic under a seed
                        nursery.start_soon(partial(fleet.worker, i,
                                                   rng=random.Random(rng.random())))
                    if live:
                        print(render(Report(options, [], fleet.counters)).splitlines()[0],
                              flush=True)
                    deadline = started + options.seconds
                    while True:
                        if child.process.poll() is not None:
                            fleet.counters.transport_errors += 1
                            fleet.counters.last_error = "the server died"
                            break
                        samples.append(await _sample(fleet, child.process.pid, started))
                        if live:
                            print(render(Report(options, samples[-1:], fleet.counters))
                                  .splitlines()[1], flush=True)
                        now = trio.current_time()
                        if now >= deadline:
                            break
                        await trio.sleep(min(options.sample, deadline - now))
                    nursery.cancel_scope.cancel()
            counters = fleet.counters
        finally:
            died = child.process.poll() is not None
            await stop_server(child)
            if died:
                log.error("the server exited during the soak:\n%s", child.tail())
        trends, failures = judge(samples, counters, options)
        if died:
            failures.append(f"the server died (exit status {child.process.returncode})")
        return Report(options, samples, counters, trends, failures)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# ------------------------------------------------------------------ the command


def cmd_soak(args: argparse.Namespace) -> int:
    options = SoakOptions(
        minutes=args.minutes, workers=args.workers, heartbeat=args.heartbeat,
        wait=args.wait, jobs_per_minute=args.jobs_per_minute, sample=args.sample,
        warmup=args.warmup, max_rss_growth=args.max_rss_growth,
        max_fd_growth=args.max_fd_growth,
    )
    if not args.json:
        where = ("BUILDIT_DATABASE_URL" if os.environ.get("BUILDIT_DATABASE_URL")
                 else "an embedded PostgreSQL")
        print(f"soak: {options.workers} workers for {options.minutes:g} min on {where}; "
              f"a sample every {options.sample:g} s", flush=True)
    report = trio.run(partial(run_soak, options, live=not args.json))
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:  # the rows were printed as they came
        print("\n".join(render(report, rows=False).splitlines()[1:]))
    return 0 if not report.failures else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "soak", help="run a server under a simulated fleet; fail if it grows",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SoakOptions()
    p.add_argument("--minutes", type=float, default=d.minutes, help="how long (default 30)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="simulated workers (default 500)")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat,
                   help="seconds between a worker's heartbeats (default 10)")
    p.add_argument("--wait", type=float, default=d.wait,
                   help="wait_secs of the long polls (default 20)")
    p.add_argument("--jobs-per-minute", type=float, default=d.jobs_per_minute,
                   help="one-job pipelines created per minute (default 60)")
    p.add_argument("--sample", type=float, default=d.sample,
                   help="seconds between samples (default 10)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds left out of the growth checks (default: a fifth of the "
                        "run, 10 to 120)")
    p.add_argument("--max-rss-growth", type=float, default=d.max_rss_growth,
                   help="MiB of RSS growth allowed after the warm-up (default 64)")
    p.add_argument("--max-fd-growth", type=int, default=d.max_fd_growth,
                   help="open files growth allowed after the warm-up (default 50)")
    p.add_argument("--json", action="store_true", help="print a JSON report only")
    p.set_defaults(func=cmd_soak)
