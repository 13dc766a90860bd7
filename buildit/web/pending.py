"""Why a pending job waits: a pure function of queue facts (no I/O, no event loop)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from buildit import domain


@dataclass(frozen=True)
class LiveWorker:
    """A worker of the job's scheduler arch that sent a heartbeat recently."""

    cores: int
    memory: int  # bytes
    disk: int  # bytes free
    busy: bool  # holds a running job


@dataclass(frozen=True)
class QueueFacts:
    arch: str  # the job's arch (may be noarch)
    requirements: domain.Requirements
    jobs_ahead: int  # runnable jobs the scheduler hands out before this one
    workers: Sequence[LiveWorker]


def _gib(value: float) -> str:
    number = value / 2**30
    return f"{number:.0f} GiB" if number >= 10 or number == int(number) else f"{number:.1f} GiB"


def _unmet(req: domain.Requirements, workers: Sequence[LiveWorker]) -> list[str]:
    """Requirements that at least one live worker fails, worded for people."""
    out: list[str] = []
    if req.min_cores is not None and any(w.cores < req.min_cores for w in workers):
        out.append(f"at least {req.min_cores} cores")
    if req.min_total_mem is not None and any(w.memory < req.min_total_mem for w in workers):
        out.append(f"at least {_gib(req.min_total_mem)} of memory")
    if req.min_total_mem_per_core is not None and any(
        w.cores <= 0 or w.memory / w.cores < req.min_total_mem_per_core for w in workers
    ):
        out.append(f"at least {_gib(req.min_total_mem_per_core)} of memory per core")
    if req.min_disk is not None and any(w.disk < req.min_disk for w in workers):
        out.append(f"at least {req.min_disk / 10**9:.0f} GB of free disk")
    return out


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def pending_reason(facts: QueueFacts) -> str:
    """One sentence: what the job waits for."""
    sched = domain.scheduler_arch(facts.arch)
    via = " (noarch jobs are built by amd64 workers)" if facts.arch == domain.NOARCH else ""
    if not facts.workers:
        return f"no live worker for {sched}{via}"
    req = facts.requirements
    suitable = [w for w in facts.workers if req.met_by(w.cores, w.memory, w.disk)]
    if not suitable:
        unmet = _unmet(req, facts.workers) or [req.describe()]
        live = _plural(len(facts.workers), f"live {sched} worker", f"live {sched} workers")
        return f"waiting for a worker with {' and '.join(unmet)} ({live}, none qualifies)"
    parts: list[str] = []
    if facts.jobs_ahead > 0:
        parts.append(
            _plural(facts.jobs_ahead, "job", "jobs") + f" ahead in the {sched} queue{via}"
        )
    idle = [w for w in suitable if not w.busy]
    if not idle:
        parts.append(
            f"the only suitable {sched} worker is busy" if len(suitable) == 1
            else f"all {len(suitable)} suitable {sched} workers are busy"
        )
    if parts:
        return "; ".join(parts)
    return f"next in line: waiting for an idle {sched} worker to ask for work{via}"
