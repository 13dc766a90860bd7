"""The worker side of the wire protocol (see docs/PROTOCOL.md): jobs and results.

Pure data and checks, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from buildit.worker.errors import ProtocolError


@dataclass(frozen=True)
class Job:
    """A job as ``/api/worker/poll`` hands it out."""

    job_id: int
    git_branch: str
    git_sha: str
    packages: tuple[str, ...]
    options: str | None = None
    attempt: int | None = None
    attempt_token: str | None = None
    arch: str | None = None
    log_url: str | None = None

    @classmethod
    def from_json(cls, data: object) -> Job:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"a job must be a JSON object, got {type(data).__name__}")
        try:
            job_id = data["job_id"]
            branch = data["git_branch"]
            sha = data["git_sha"]
            packages = data["packages"]
        except KeyError as exc:
            raise ProtocolError(f"the job has no {exc.args[0]!r} field") from None
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise ProtocolError(f"job_id must be an integer, got {job_id!r}")
        if not isinstance(branch, str) or not isinstance(sha, str):
            raise ProtocolError("git_branch and git_sha must be strings")
        if isinstance(packages, str):
            names = tuple(p.strip() for p in packages.split(",") if p.strip())
        elif isinstance(packages, list) and all(isinstance(p, str) for p in packages):
            names = tuple(p.strip() for p in packages if p.strip())
        else:
            raise ProtocolError(f"packages must be a comma-separated string, got {packages!r}")
        return cls(
            job_id=job_id,
            git_branch=branch,
            git_sha=sha,
            packages=names,
            options=_optional(data, "options", str),
            attempt=_optional(data, "attempt", int),
            attempt_token=_optional(data, "attempt_token", str),
            arch=_optional(data, "arch", str),
            log_url=_optional(data, "log_url", str),
        )

    def describe(self) -> str:
        attempt = f" attempt {self.attempt}" if self.attempt is not None else ""
        return (
            f"job {self.job_id}{attempt}: {','.join(self.packages)} "
            f"at {self.git_branch} ({self.git_sha[:12]})"
        )


_T = TypeVar("_T")


def _optional(data: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProtocolError(f"job field {key} must be a {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class JobOk:
    """A build that ran to its end, successful or not."""

    build_success: bool
    successful_packages: list[str]
    failed_package: str | None
    skipped_packages: list[str]
    elapsed_secs: int
    pushpkg_success: bool
    log_url: str | None = None
    package_versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "Ok": {
                "build_success": self.build_success,
                "successful_packages": list(self.successful_packages),
                "failed_package": self.failed_package,
                "skipped_packages": list(self.skipped_packages),
                "log_url": self.log_url,
                "elapsed_secs": self.elapsed_secs,
                "pushpkg_success": self.pushpkg_success,
                "package_versions": dict(self.package_versions),
            }
        }

    def describe(self) -> str:
        state = "succeeded" if self.build_success and self.pushpkg_success else "failed"
        parts = [f"build {state} in {self.elapsed_secs}s"]
        parts.append(f"built: {' '.join(self.successful_packages) or '-'}")
        if self.failed_package:
            parts.append(f"failed: {self.failed_package}")
        if self.skipped_packages:
            parts.append(f"not built: {' '.join(self.skipped_packages)}")
        parts.append(f"build_success={str(self.build_success).lower()}")
        parts.append(f"pushpkg_success={str(self.pushpkg_success).lower()}")
        return "; ".join(parts)


@dataclass(frozen=True)
class JobError:
    """The job could not be built at all (not a package's fault)."""

    message: str

    def to_json(self) -> dict[str, Any]:
        return {"Error": self.message}

    def describe(self) -> str:
        return f"error: {self.message}"


JobResult: TypeAlias = JobOk | JobError

# Conservative forms of what the server may send; anything else never reaches a
# command line (a branch named "--upload-pack=..." must not become a git option).
_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._@:/-]{0,199}$")
_BRANCH_BAD = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def job_problem(job: Job) -> str | None:
    """Why the job cannot be run as given, or None."""
    branch = job.git_branch
    if (
        not branch
        or len(branch) > 250
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or _BRANCH_BAD.search(branch)
    ):
        return f"invalid git branch name {branch!r}"
    if not _SHA_RE.match(job.git_sha):
        return f"invalid git commit sha {job.git_sha!r}"
    if not job.packages:
        return "the job names no packages"
    for name in job.packages:
        if not _PACKAGE_RE.match(name):
            return f"invalid package name {name!r}"
    return None


_TOPIC_WORDS = frozenset({"with-topics", "with_topics", "topics", "topic"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def wants_topics(options: str | None) -> bool:
    """Whether ``ciel build`` gets ``--with-topics <branch>``.

    The options string is split on commas, semicolons and whitespace; a word
    ``with-topics`` (also ``--with-topics``, ``with_topics``, ``topics``, ``topic``)
    turns it on, unless written ``with-topics=false`` (or 0/no/off). Today's worker
    looks for the substring ``with-topics``; every options string it accepts is
    accepted here too.
    """
    if not options:
        return False
    for word in re.split(r"[\s,;]+", options):
        name, sep, value = word.lstrip("-").partition("=")
        if name.lower() in _TOPIC_WORDS:
            return not (sep and value.lower() in _FALSE_WORDS)
    return "with-topics" in options
