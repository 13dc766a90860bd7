"""Decisions without I/O: validating requests, computing statuses, matching workers.

Everything here is a pure function, tested without an event loop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from buildit.errors import Unprocessable

JOB_STATUSES = ("created", "running", "error", "success", "failed")
TERMINAL_JOB_STATUSES = frozenset({"error", "success", "failed"})
PIPELINE_STATUSES = ("running", "error", "failed", "success")
NOARCH = "noarch"
MAINLINE = "mainline"

# A package name as ACBS knows it, optionally `section/name`, `groups/name`, and an
# optional `:modifier` suffix (kept for the build, ignored for lookup).
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+._-]*(/[a-z0-9][a-z0-9+._-]*)?(:[A-Za-z0-9+._=-]+)?$")
# git check-ref-format rules, the parts that matter for a branch name.
_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/+-]+$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_PACKAGES = 2000
MAX_BRANCH_LEN = 200
MAX_OPTIONS_LEN = 1000


def split_list(value: str | Sequence[str]) -> list[str]:
    """Accept ``"a,b"`` (what scripts send today), ``"a b"`` or a JSON list."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise Unprocessable("list items must be strings")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def validate_branch(branch: str) -> str:
    branch = branch.strip()
    if not branch:
        raise Unprocessable("git_branch must not be empty")
    if len(branch) > MAX_BRANCH_LEN:
        raise Unprocessable(f"git_branch is longer than {MAX_BRANCH_LEN} characters")
    if (
        not _BRANCH_RE.match(branch)
        or ".." in branch
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or "//" in branch
        or "@{" in branch
    ):
        raise Unprocessable(f"git_branch {branch!r} is not a valid branch name")
    return branch


def validate_sha(sha: str) -> str:
    sha = sha.strip().lower()
    if not _SHA_RE.match(sha):
        raise Unprocessable(f"git_sha {sha!r} is not a full 40-character commit id")
    return sha


def validate_packages(packages: str | Sequence[str]) -> list[str]:
    names = split_list(packages)
    if not names:
        raise Unprocessable("packages must name at least one package")
    if len(names) > MAX_PACKAGES:
        raise Unprocessable(f"at most {MAX_PACKAGES} packages per pipeline")
    bad = [n for n in names if len(n) > 200 or not _PACKAGE_RE.match(n)]
    if bad:
        raise Unprocessable(f"invalid package name(s): {', '.join(bad[:10])}")
    return names


def validate_archs(archs: str | Sequence[str], known: Sequence[str]) -> list[str]:
    """Expand ``mainline``, check every arch is known; ``noarch`` must stand alone."""
    names = split_list(archs)
    if not names:
        raise Unprocessable("archs must name at least one architecture")
    out: list[str] = []
    for name in names:
        expanded = list(known) if name == MAINLINE else [name]
        for arch in expanded:
            if arch not in known and arch != NOARCH:
                raise Unprocessable(
                    f"unknown architecture {arch!r}; known: {', '.join(known)}, noarch, mainline"
                )
            if arch not in out:
                out.append(arch)
    if NOARCH in out and len(out) > 1:
        raise Unprocessable("noarch must stand alone: it is built once, by an amd64 worker")
    return out


def validate_options(options: str | None) -> str | None:
    if options is None:
        return None
    if len(options) > MAX_OPTIONS_LEN:
        raise Unprocessable(f"options is longer than {MAX_OPTIONS_LEN} characters")
    return options or None


def pipeline_status(job_statuses: Iterable[str]) -> str:
    """The seed rules: error > failed > running > success (latest attempt per arch)."""
    statuses = list(job_statuses)
    if "error" in statuses:
        return "error"
    if "failed" in statuses:
        return "failed"
    if statuses and all(s == "success" for s in statuses):
        return "success"
    return "running"


# ``pipeline_status`` in SQL, over a text[] of job statuses written as ``{statuses}``
# (tests/test_domain_sql.py checks the two agree on every mix of statuses).
PIPELINE_STATUS_SQL = """CASE WHEN 'error' = ANY({statuses}) THEN 'error'
     WHEN 'failed' = ANY({statuses}) THEN 'failed'
     WHEN cardinality({statuses}) > 0 AND {statuses} <@ ARRAY['success'] THEN 'success'
     ELSE 'running' END"""


def job_status_from_result(build_success: bool, pushpkg_success: bool) -> str:
    return "success" if build_success and pushpkg_success else "failed"


def claimable_archs(worker_arch: str) -> list[str]:
    """amd64 workers also build noarch jobs."""
    return [worker_arch, NOARCH] if worker_arch == "amd64" else [worker_arch]


def scheduler_arch(job_arch: str) -> str:
    """Which scheduler hands out jobs of this arch."""
    return "amd64" if job_arch == NOARCH else job_arch


@dataclass(frozen=True)
class Requirements:
    """Minimum resources a job needs. ``None`` means no minimum."""

    min_cores: int | None = None
    min_total_mem: int | None = None  # bytes
    min_total_mem_per_core: float | None = None  # bytes per core
    min_disk: int | None = None  # bytes free

    def met_by(self, cores: int, memory: int, disk: int) -> bool:
        if self.min_cores is not None and cores < self.min_cores:
            return False
        if self.min_total_mem is not None and memory < self.min_total_mem:
            return False
        if self.min_total_mem_per_core is not None and (
            cores <= 0 or memory / cores < self.min_total_mem_per_core
        ):
            return False
        return not (self.min_disk is not None and disk < self.min_disk)

    def describe(self) -> str:
        parts = []
        if self.min_cores:
            parts.append(f"at least {self.min_cores} cores")
        if self.min_total_mem:
            parts.append(f"{self.min_total_mem / 2**30:.0f} GiB memory")
        if self.min_total_mem_per_core:
            parts.append(f"{self.min_total_mem_per_core / 2**30:.1f} GiB memory per core")
        if self.min_disk:
            parts.append(f"{self.min_disk / 10**9:.0f} GB free disk")
        return ", ".join(parts)
