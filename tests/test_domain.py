"""Pure decisions, tested without an event loop."""

from __future__ import annotations

import pytest

from buildit import domain
from buildit.errors import Unprocessable

ARCHS = ("amd64", "arm64", "riscv64")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["success", "success"], "success"),
        (["success", "running"], "running"),
        (["created", "created"], "running"),
        (["failed", "running"], "failed"),
        (["failed", "error"], "error"),
        (["success", "error"], "error"),
        (["success", "failed"], "failed"),
        ([], "running"),
    ],
)
def test_pipeline_status_follows_the_rules(statuses: list[str], expected: str) -> None:
    assert domain.pipeline_status(statuses) == expected


def test_job_status_from_result() -> None:
    assert domain.job_status_from_result(True, True) == "success"
    assert domain.job_status_from_result(True, False) == "failed"
    assert domain.job_status_from_result(False, True) == "failed"


def test_archs_expand_mainline_and_keep_order() -> None:
    assert domain.validate_archs("mainline", ARCHS) == list(ARCHS)
    assert domain.validate_archs("riscv64,amd64,amd64", ARCHS) == ["riscv64", "amd64"]
    assert domain.validate_archs(["arm64"], ARCHS) == ["arm64"]
    assert domain.validate_archs("noarch", ARCHS) == ["noarch"]


@pytest.mark.parametrize("archs", ["", "mips", "noarch,amd64", "amd64,sparc"])
def test_bad_archs(archs: str) -> None:
    with pytest.raises(Unprocessable):
        domain.validate_archs(archs, ARCHS)


def test_packages() -> None:
    assert domain.validate_packages("bash,zlib") == ["bash", "zlib"]
    assert domain.validate_packages("bash zlib, groups/kde") == ["bash", "zlib", "groups/kde"]
    assert domain.validate_packages(["gcc:+stage2"]) == ["gcc:+stage2"]
    for bad in ("", "<script>", "../etc", "a;b", "Bash"):
        with pytest.raises(Unprocessable):
            domain.validate_packages(bad)


@pytest.mark.parametrize("branch", ["stable", "bash-5.2", "topic/foo", "retro-2024.1"])
def test_good_branches(branch: str) -> None:
    assert domain.validate_branch(branch) == branch


@pytest.mark.parametrize("branch", ["", "..", "-x", "a b", "x..y", "a/", "x.lock", "a@{1}"])
def test_bad_branches(branch: str) -> None:
    with pytest.raises(Unprocessable):
        domain.validate_branch(branch)


def test_sha() -> None:
    assert domain.validate_sha("A" * 40) == "a" * 40
    with pytest.raises(Unprocessable):
        domain.validate_sha("abc")


def test_requirements() -> None:
    req = domain.Requirements(min_cores=32, min_total_mem=64 * 2**30)
    assert req.met_by(32, 64 * 2**30, 0)
    assert not req.met_by(16, 64 * 2**30, 0)
    assert not req.met_by(64, 32 * 2**30, 0)
    per_core = domain.Requirements(min_total_mem_per_core=2 * 2**30)
    assert per_core.met_by(8, 16 * 2**30, 0)
    assert not per_core.met_by(16, 16 * 2**30, 0)
    assert domain.Requirements(min_disk=10**11).met_by(1, 1, 10**11)
    assert "32 cores" in req.describe()


def test_noarch_goes_to_amd64() -> None:
    assert domain.claimable_archs("amd64") == ["amd64", "noarch"]
    assert domain.claimable_archs("arm64") == ["arm64"]
    assert domain.scheduler_arch("noarch") == "amd64"
