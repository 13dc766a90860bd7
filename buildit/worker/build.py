"""One job, start to end: packages tree, ciel, pushpkg. Returns the job's result.

In the workspace's ``TREE`` checkout:

1. ``git fetch <BUILDIT_GIT_REMOTE> <branch>`` (retried with backoff: 1, 2, 4, 8 s);
2. ``git checkout --force -B <branch> <sha>`` and ``git reset --hard <sha>``;

then, in the workspace:

3. clear ``OUTPUT-<branch>/debs`` (so pushpkg uploads only this build's packages);
4. ``ciel update-os`` (retried like the fetch);
5. ``ciel build -i <instance> <packages...>``, plus ``--with-topics <branch>`` when the
   job's options ask for it (see ``protocol.wants_topics``); the ACBS summary gives the
   built, failed and skipped packages and their versions;
6. if the build succeeded and ``BUILDIT_SSH_KEY`` is set, ``pushpkg`` in
   ``OUTPUT-<branch>`` with the arguments today's AOSC worker gives it (retried).

Outcomes: a step that ran and failed is a failed build (``build_success`` or
``pushpkg_success`` false). A program that cannot be started, or a tree that cannot be
brought to the job's commit (fetch failing after its retries, a sha that is not
there), is an ``{"Error": reason}`` result: nothing about the packages was learned.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from buildit.worker.config import WorkerConfig
from buildit.worker.errors import PrepareError, StepStartError
from buildit.worker.log import JobLog
from buildit.worker.protocol import Job, JobError, JobOk, JobResult, job_problem, wants_topics
from buildit.worker.retry import Backoff
from buildit.worker.steps import LineSink, StepResult, run_step
from buildit.worker.summary import BuildSummary, SummaryParser


async def build_job(job: Job, config: WorkerConfig, log: JobLog) -> JobResult:
    """Build ``job``; the log gets every command, its timing and its output."""
    begin = trio.current_time()
    problem = job_problem(job)
    if problem is not None:
        log.note(f"cannot run this job: {problem}")
        return JobError(problem)
    try:
        await prepare_tree(job, config, log)
        await clear_output(job, config, log)
        update = await _run_with_retries(
            ["ciel", "update-os"], cwd=config.ciel_path, log=log, config=config
        )
        if not update.ok:
            log.note("`ciel update-os` failed: the packages are not built")
            return _ok(begin, BuildSummary(), build_success=False, pushpkg_success=False)
        summary, build = await run_ciel_build(job, config, log)
        build_success = build.ok and summary.failed is None
        if build.ok and summary.failed is not None:
            log.note(f"ciel exited 0 but ACBS reports {summary.failed.name} as failed")
        if not summary.found:
            log.note("ciel printed no ACBS build summary")
        pushpkg_success = False
        if build_success:
            pushpkg_success = await push_packages(job, config, log)
        return _ok(begin, summary, build_success=build_success, pushpkg_success=pushpkg_success)
    except (StepStartError, PrepareError) as exc:
        log.note(f"job error: {exc}")
        return JobError(str(exc))


def _ok(
    begin: float, summary: BuildSummary, *, build_success: bool, pushpkg_success: bool
) -> JobOk:
    return JobOk(
        build_success=build_success,
        successful_packages=summary.successful_packages,
        failed_package=summary.failed_package,
        skipped_packages=summary.skipped_packages,
        elapsed_secs=round(trio.current_time() - begin),
        pushpkg_success=pushpkg_success,
        package_versions=summary.package_versions,
    )


async def _run_with_retries(
    argv: Sequence[str],
    *,
    cwd: Path,
    log: JobLog,
    config: WorkerConfig,
    env: Mapping[str, str] | None = None,
) -> StepResult:
    """Run a step that may fail for passing reasons (network) up to retry_attempts times."""
    backoff = Backoff(
        initial=config.retry_initial_delay, maximum=config.retry_max_delay, jitter=False
    )
    attempts = max(1, config.retry_attempts)
    for attempt in range(1, attempts + 1):
        result = await run_step(
            argv, cwd=cwd, log=log, env=env, kill_grace=config.kill_grace
        )
        if result.ok or attempt == attempts:
            return result
        delay = backoff.next_delay()
        log.note(
            f"attempt {attempt} of {attempts} failed ({result.describe()}); "
            f"trying again in {delay:g}s"
        )
        await trio.sleep(delay)
    raise AssertionError("unreachable")


def _git_env() -> dict[str, str]:
    # Never wait for a password prompt nobody will answer.
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


async def prepare_tree(job: Job, config: WorkerConfig, log: JobLog) -> None:
    """Bring TREE to the job's commit, on a local branch named like the job's."""
    tree = config.tree_path
    env = _git_env()
    fetch = await _run_with_retries(
        ["git", "fetch", config.git_remote, job.git_branch],
        cwd=tree, log=log, config=config, env=env,
    )
    if not fetch.ok:
        raise PrepareError(
            f"could not fetch branch {job.git_branch} from {config.git_remote}: "
            f"`git fetch` failed {max(1, config.retry_attempts)} times (last: {fetch.describe()})"
        )
    checkout = await run_step(
        ["git", "checkout", "--force", "-B", job.git_branch, job.git_sha],
        cwd=tree, log=log, env=env, kill_grace=config.kill_grace,
    )
    if not checkout.ok:
        raise PrepareError(
            f"could not check out commit {job.git_sha} as {job.git_branch} "
            f"({checkout.describe()}): is the commit on that branch?"
        )
    reset = await run_step(
        ["git", "reset", "--hard", job.git_sha],
        cwd=tree, log=log, env=env, kill_grace=config.kill_grace,
    )
    if not reset.ok:
        raise PrepareError(f"could not reset TREE to {job.git_sha} ({reset.describe()})")


async def clear_output(job: Job, config: WorkerConfig, log: JobLog) -> None:
    debs = config.output_path(job.git_branch) / "debs"
    if not debs.exists():
        return
    log.note(f"removing the packages of an earlier build: {debs}")
    try:
        await trio.to_thread.run_sync(shutil.rmtree, debs)
    except OSError as exc:
        raise PrepareError(f"could not remove {debs}: {exc.strerror or exc}") from exc


def ciel_build_argv(job: Job, config: WorkerConfig) -> list[str]:
    argv = ["ciel", "build", "-i", config.ciel_instance, *job.packages]
    if wants_topics(job.options):
        argv += ["--with-topics", job.git_branch]
    return argv


async def run_ciel_build(
    job: Job, config: WorkerConfig, log: JobLog
) -> tuple[BuildSummary, StepResult]:
    stdout_parser = SummaryParser()
    stderr_parser = SummaryParser()

    def on_line(stream: str, line: bytes) -> None:
        parser = stdout_parser if stream == "stdout" else stderr_parser
        parser.feed(line.decode("utf-8", errors="replace"))

    sink: LineSink = on_line
    result = await run_step(
        ciel_build_argv(job, config),
        cwd=config.ciel_path, log=log, on_line=sink, kill_grace=config.kill_grace,
    )
    summary = stdout_parser.summary
    if not summary.found:
        summary = stderr_parser.summary
    return summary, result


def pushpkg_argv(job: Job, config: WorkerConfig) -> list[str]:
    """The arguments today's AOSC worker (worker/src/build.rs) passes to pushpkg."""
    assert config.ssh_key is not None
    argv = ["pushpkg"]
    if job.git_branch != "stable":
        # Topic branches may overwrite noarch packages.
        argv.append("--force-push-noarch-package")
    argv += shlex.split(config.pushpkg_options)
    argv += ["--host", config.rsync_host, "-i", config.ssh_key, "maintainers", job.git_branch]
    if config.arch == "loongarch64_nosimd":
        argv.append("bsp-loongarch64-nosimd")
    return argv


async def push_packages(job: Job, config: WorkerConfig, log: JobLog) -> bool:
    if config.ssh_key is None:
        log.note("BUILDIT_SSH_KEY is not set: the packages are not uploaded")
        return False
    output = config.output_path(job.git_branch)
    if not output.is_dir():
        log.note(f"nothing to upload: {output} does not exist")
        return False
    result = await _run_with_retries(
        pushpkg_argv(job, config), cwd=output, log=log, config=config
    )
    if not result.ok:
        log.note(f"pushpkg failed ({result.describe()}): the packages are not uploaded")
    return result.ok
