"""Settings, job checks and the command lines the worker builds (pure, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildit.worker.build import ciel_build_argv, pushpkg_argv
from buildit.worker.config import WorkerConfig, load_worker_config
from buildit.worker.errors import ProtocolError, WorkerConfigError
from buildit.worker.protocol import Job, JobError, JobOk, job_problem, wants_topics

SHA = "0123456789abcdef0123456789abcdef01234567"
BASE_ENV = {
    "BUILDIT_SERVER": "https://buildit.example/",
    "BUILDIT_WORKER_SECRET": "s3cret",
    "BUILDIT_ARCH": "amd64",
    "BUILDIT_CIEL_PATH": "/var/lib/ciel",
}


def config(**changes: object) -> WorkerConfig:
    return load_worker_config({}, BASE_ENV).replace(**changes)


def test_environment_names_used_today_and_defaults() -> None:
    cfg = load_worker_config({}, {**BASE_ENV, "BUILDIT_HOSTNAME": "builder-7"})
    assert cfg.server == "https://buildit.example"
    assert cfg.worker_secret == "s3cret"
    assert cfg.arch == "amd64"
    assert cfg.ciel_path == Path("/var/lib/ciel")
    assert cfg.tree_path == Path("/var/lib/ciel/TREE")
    assert cfg.ciel_instance == "main"
    assert cfg.rsync_host == "repo.aosc.io"
    assert cfg.ssh_key is None and cfg.pushpkg_options == ""
    assert cfg.hostname == "builder-7"
    assert cfg.shutdown_grace == 600.0


def test_flags_win_over_the_environment() -> None:
    cfg = load_worker_config(
        {"arch": "riscv64", "ciel_instance": "alt", "heartbeat_interval": "5",
         "log_max_bytes": "2M", "ssh_key": "/root/.ssh/id", "server": None},
        {**BASE_ENV, "BUILDIT_CIEL_INSTANCE": "main", "BUILDIT_PUSHPKG_OPTIONS": "--retain"},
    )
    assert (cfg.arch, cfg.ciel_instance, cfg.heartbeat_interval) == ("riscv64", "alt", 5.0)
    assert cfg.log_max_bytes == 2 * 1024 * 1024
    assert cfg.ssh_key == "/root/.ssh/id"
    assert cfg.pushpkg_options == "--retain"
    assert cfg.server == "https://buildit.example"


def test_missing_settings_are_all_named() -> None:
    with pytest.raises(WorkerConfigError) as info:
        load_worker_config({}, {"BUILDIT_ARCH": "amd64"})
    message = str(info.value)
    for name in ("BUILDIT_SERVER", "BUILDIT_WORKER_SECRET", "BUILDIT_CIEL_PATH"):
        assert name in message
    assert "BUILDIT_ARCH" not in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"BUILDIT_SERVER": "buildit.aosc.io"}, "http:// or https://"),
        ({"BUILDIT_WORKER_SECRET": "  "}, "BUILDIT_WORKER_SECRET"),
        ({"BUILDIT_ARCH": "mainline"}, "not an architecture"),
        ({"BUILDIT_HOSTNAME": "https://buildit.aosc.io"}, "BUILDIT_SERVER"),
        ({"BUILDIT_HEARTBEAT_INTERVAL": "0"}, "positive"),
        ({"BUILDIT_HEARTBEAT_INTERVAL": "often"}, "number of seconds"),
        ({"BUILDIT_LOG_MAX_BYTES": "100"}, "at least 16 KiB"),
        ({"BUILDIT_SHUTDOWN_GRACE": "-1"}, "zero or a positive"),
        ({"BUILDIT_PUSHPKG_OPTIONS": "--x 'unbalanced"}, "cannot be split"),
        ({"BUILDIT_CONNECTIVITY_CHECK": "github.com"}, "host:port"),
    ],
)
def test_bad_settings_say_what_is_wrong(env: dict[str, str], words: str) -> None:
    with pytest.raises(WorkerConfigError, match=words):
        load_worker_config({}, {**BASE_ENV, **env})


def test_shutdown_grace_may_be_zero() -> None:
    assert load_worker_config({}, {**BASE_ENV, "BUILDIT_SHUTDOWN_GRACE": "0"}).shutdown_grace == 0


def test_job_from_poll_answer() -> None:
    job = Job.from_json({
        "job_id": 12, "git_branch": "stable", "git_sha": SHA, "packages": "bash, zlib,",
        "options": None, "attempt": 2, "attempt_token": "tok", "arch": "noarch",
        "log_url": "https://b/log", "future_field": 1,
    })
    assert job.packages == ("bash", "zlib")
    assert (job.attempt, job.attempt_token, job.arch) == (2, "tok", "noarch")
    # today's server: no extensions
    old = Job.from_json({"job_id": 1, "git_branch": "b", "git_sha": SHA, "packages": "x",
                         "options": "with-topics"})
    assert old.attempt_token is None and old.options == "with-topics"


@pytest.mark.parametrize(
    "data",
    [[], {"git_branch": "b", "git_sha": SHA, "packages": "x"},
     {"job_id": "1", "git_branch": "b", "git_sha": SHA, "packages": "x"},
     {"job_id": 1, "git_branch": "b", "git_sha": SHA, "packages": 3},
     {"job_id": 1, "git_branch": "b", "git_sha": SHA, "packages": "x", "attempt": "2"}],
)
def test_malformed_jobs_are_protocol_errors(data: object) -> None:
    with pytest.raises(ProtocolError):
        Job.from_json(data)


def job(**changes: object) -> Job:
    base = Job(job_id=1, git_branch="stable", git_sha=SHA, packages=("bash",))
    return Job(**{**base.__dict__, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"git_branch": "--upload-pack=touch /tmp/pwned"},
        {"git_branch": "a..b"},
        {"git_branch": "has space"},
        {"git_branch": ""},
        {"git_sha": "HEAD"},
        {"git_sha": "-x"},
        {"packages": ()},
        {"packages": ("-rf",)},
        {"packages": ("ok", "bad name")},
    ],
)
def test_jobs_that_must_not_reach_a_command_line(bad: dict[str, object]) -> None:
    assert job_problem(job(**bad)) is not None


def test_reasonable_jobs_pass() -> None:
    assert job_problem(job(git_branch="fix/gcc-13.2", packages=("gcc+libs", "groups/base"))) is None


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, False), ("", False), ("with-topics", True), ("--with-topics", True),
        ("foo,topic", True), ("with_topics=true", True), ("with-topics=false", False),
        ("nocheck", False), ("x-with-topics-y", True),
    ],
)
def test_topics_option(options: str | None, expected: bool) -> None:
    assert wants_topics(options) is expected


def test_ciel_build_command() -> None:
    cfg = config(ciel_instance="main")
    assert ciel_build_argv(job(packages=("bash", "zlib")), cfg) == [
        "ciel", "build", "-i", "main", "bash", "zlib",
    ]
    assert ciel_build_argv(job(git_branch="topic-x", options="with-topics"), cfg) == [
        "ciel", "build", "-i", "main", "bash", "--with-topics", "topic-x",
    ]


def test_pushpkg_command_is_the_one_todays_worker_runs() -> None:
    cfg = config(ssh_key="/k", rsync_host="repo.example", pushpkg_options="--retain")
    assert pushpkg_argv(job(), cfg) == [
        "pushpkg", "--retain", "--host", "repo.example", "-i", "/k", "maintainers", "stable",
    ]
    assert pushpkg_argv(job(git_branch="topic"), cfg.replace(pushpkg_options="")) == [
        "pushpkg", "--force-push-noarch-package",
        "--host", "repo.example", "-i", "/k", "maintainers", "topic",
    ]
    nosimd = cfg.replace(arch="loongarch64_nosimd", pushpkg_options="")
    assert pushpkg_argv(job(), nosimd)[-2:] == ["stable", "bsp-loongarch64-nosimd"]


def test_result_wire_format() -> None:
    ok = JobOk(build_success=True, successful_packages=["bash"], failed_package=None,
               skipped_packages=[], elapsed_secs=3, pushpkg_success=False,
               package_versions={"bash": "5.2-0"})
    assert ok.to_json() == {"Ok": {
        "build_success": True, "successful_packages": ["bash"], "failed_package": None,
        "skipped_packages": [], "log_url": None, "elapsed_secs": 3, "pushpkg_success": False,
        "package_versions": {"bash": "5.2-0"},
    }}
    assert JobError("boom").to_json() == {"Error": "boom"}
