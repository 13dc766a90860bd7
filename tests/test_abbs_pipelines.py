"""Pipelines planned from a packages tree, end to end: real git, real server, real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.abbs_tree import commit, git, init_tree, package, split_package, switch
from tests.conftest import worker_body

GIB = 2**30
GB = 10**9
ARCHS = ("amd64", "arm64", "riscv64")

TREE: dict[str, str] = {
    **package("app-utils", "hello"),
    **package("core", "bash"),
    **package("core", "zlib"),
    **package("app-doc", "docs-data", defines="ABHOST=noarch\n"),
    **package("app-doc", "manpages", defines="ABHOST=noarch\n"),
    **package("app-misc", "norv", defines='FAIL_ARCH="@(riscv64)"\n'),
    **package("app-misc", "rvonly", defines='FAIL_ARCH="!(riscv64)"\n'),
    **package("app-misc", "armonly", defines='FAIL_ARCH="!(arm64)"\n'),
    **package("app-misc", "elsewhere", defines='FAIL_ARCH="!(loongson3)"\n'),
    **package(
        "app-misc", "big",
        spec=(
            "VER=3\n"
            'ENVREQ="core=8 total_mem=16 \\\n        disk=100"\n'
            'ENVREQ__ARM64="total_mem_per_core=4"\n'
        ),
    ),
    **package("app-misc", "gpu", spec='VER=2\nENVREQ="core=2 gpu=1"\n'),
    **package("app-misc", "odd-envreq", spec='VER=1\nENVREQ="core=0 total_mem=1e12 disk=7"\n'),
    **split_package("lang-llvm", "llvm", {"llvm": "", "llvm-runtime": ""}),
    "groups/base": "# the base system\ncore/bash\n\nzlib\n",
    "README.md": "a packages tree\n",
}


@pytest.fixture
def tree_repo(tmp_path: Path) -> Path:
    """``stable`` with TREE; ``feature`` adds a package and moves hello on."""
    repo = tmp_path / "abbs"
    init_tree(repo, TREE)
    switch(repo, "feature", create_from="stable")
    commit(repo, {
        **package("app-utils", "hello", spec="VER=1.1\n"),
        **package("app-utils", "newpkg"),
    }, "hello: 1.1; newpkg: new")
    switch(repo, "stable")
    return repo


async def _start(start_server: Any, tree: Path, **overrides: Any) -> tuple[Any, str]:
    server = await start_server(abbs_path=tree, archs=ARCHS, **overrides)
    token = await server.add_user("alice")
    return server, token


async def _create(server: Any, token: str, **body: Any) -> Any:
    """POST /api/pipeline/new (no git_sha, no archs unless given); the response."""
    payload = {"git_branch": "stable", **body}
    return await server.client.post("/api/pipeline/new", json=payload,
                                    headers={"Authorization": f"Bearer {token}"})


async def _new_pipeline(server: Any, token: str, **body: Any) -> int:
    r = await _create(server, token, **body)
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


async def _pipeline(server: Any, pipeline_id: int) -> Any:
    r = await server.client.get("/api/pipeline/info", params={"pipeline_id": pipeline_id})
    assert r.status_code == 200, r.text
    return r.json()


async def _job(server: Any, job_id: int) -> Any:
    r = await server.client.get("/api/job/info", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    return r.json()


async def _jobs_by_arch(server: Any, pipeline_id: int) -> dict[str, Any]:
    info = await _pipeline(server, pipeline_id)
    return {j["arch"]: await _job(server, j["job_id"]) for j in info["jobs"]}


async def _poll(server: Any, hostname: str, arch: str, **extra: Any) -> Any:
    r = await server.client.post("/api/worker/poll", json=worker_body(hostname, arch, **extra))
    assert r.status_code == 200, r.text
    return r.json()


def _requirements(job: Any) -> tuple[Any, ...]:
    return (job["require_min_core"], job["require_min_total_mem"],
            job["require_min_total_mem_per_core"], job["require_min_disk"])


# -- branches and commits -------------------------------------------------------------


async def test_a_pipeline_records_the_sha_of_its_branch(
    start_server: Any, tree_repo: Path
) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)
        stable_sha = git(tree_repo, "rev-parse", "stable")
        feature_sha = git(tree_repo, "rev-parse", "feature")
        assert stable_sha != feature_sha

        stable = await _pipeline(server, await _new_pipeline(server, token, packages="hello"))
        feature = await _pipeline(
            server, await _new_pipeline(server, token, git_branch="feature", packages="newpkg")
        )
        assert (stable["git_branch"], stable["git_sha"]) == ("stable", stable_sha)
        assert (feature["git_branch"], feature["git_sha"]) == ("feature", feature_sha)
        # The job a worker gets names the same commit.
        job = await _poll(server, "a1", "amd64")
        assert (job["git_branch"], job["git_sha"]) == ("stable", stable_sha)

        # A package only on `feature` is unknown at stable's commit, even given explicitly.
        r = await _create(server, token, packages="newpkg", git_sha=stable_sha)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == (
            f"unknown package(s) in the packages tree at {stable_sha[:12]}: newpkg"
        )
        # A git_sha given is used as it is, not replaced by the branch head.
        pid = await _new_pipeline(server, token, git_branch="stable", git_sha=feature_sha,
                                  packages="newpkg")
        assert (await _pipeline(server, pid))["git_sha"] == feature_sha


async def test_pipelines_created_at_once_on_two_branches(
    start_server: Any, tree_repo: Path
) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)
        created: list[tuple[str, int]] = []

        async def create(branch: str, packages: str) -> None:
            pid = await _new_pipeline(server, token, git_branch=branch, packages=packages)
            created.append((branch, pid))

        async with trio.open_nursery() as nursery:
            for _ in range(3):  # several of each, all in flight together
                nursery.start_soon(create, "stable", "hello")
                nursery.start_soon(create, "feature", "hello,newpkg")
        shas = {b: git(tree_repo, "rev-parse", b) for b in ("stable", "feature")}
        assert sorted(b for b, _ in created) == ["feature"] * 3 + ["stable"] * 3
        for branch, pid in created:
            info = await _pipeline(server, pid)
            assert (info["git_branch"], info["git_sha"]) == (branch, shas[branch]), pid


async def test_branches_are_fetched_from_the_remote(
    start_server: Any, tree_repo: Path, tmp_path: Path
) -> None:
    checkout = tmp_path / "server-checkout"
    git(tmp_path, "clone", "--quiet", str(tree_repo), str(checkout))
    # Made after the clone: only a fetch from the remote can know it.
    moved = commit(tree_repo, package("app-utils", "latecomer"), "latecomer: new")
    with trio.fail_after(60):
        server, token = await _start(start_server, checkout, abbs_remote=str(tree_repo))
        pid = await _new_pipeline(server, token, packages="latecomer")
        assert (await _pipeline(server, pid))["git_sha"] == moved
        assert git(checkout, "rev-parse", "HEAD") != moved  # fetched, not checked out


# -- archs ----------------------------------------------------------------------------


async def test_archs_are_derived_from_the_tree(start_server: Any, tree_repo: Path) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)

        async def archs_of(packages: str) -> tuple[str, list[str]]:
            info = await _pipeline(server, await _new_pipeline(server, token,
                                                               packages=packages))
            return info["archs"], [j["arch"] for j in info["jobs"]]

        # Only noarch packages: one noarch job, handed to an amd64 worker.
        assert await archs_of("docs-data,manpages") == ("noarch", ["noarch"])
        assert await _poll(server, "r1", "arm64") is None
        noarch_job = await _poll(server, "a1", "amd64")
        assert (noarch_job["arch"], noarch_job["packages"]) == ("noarch", "docs-data,manpages")

        # Nothing excluded: every arch of the server.
        assert await archs_of("hello") == ("amd64,arm64,riscv64", ["amd64", "arm64", "riscv64"])
        # FAIL_ARCH of the only package drops riscv64 ...
        assert await archs_of("norv") == ("amd64,arm64", ["amd64", "arm64"])
        # ... a noarch package with it does not bring it back ...
        assert await archs_of("norv,docs-data") == ("amd64,arm64", ["amd64", "arm64"])
        # ... another package that builds on riscv64 does (ACBS skips norv there) ...
        assert await archs_of("norv,rvonly") == (
            "amd64,arm64,riscv64", ["amd64", "arm64", "riscv64"]
        )
        # ... and an arch every package excludes is dropped.
        assert await archs_of("rvonly,armonly") == ("arm64,riscv64", ["arm64", "riscv64"])
        assert await archs_of("elsewhere,armonly") == ("arm64", ["arm64"])

        # Archs given are kept, with a warning where FAIL_ARCH excludes one.
        pid = await _new_pipeline(server, token, packages="norv", archs="amd64,riscv64")
        info = await _pipeline(server, pid)
        assert [j["arch"] for j in info["jobs"]] == ["amd64", "riscv64"]
        assert info["warnings"] == ["norv: FAIL_ARCH excludes riscv64; ACBS will skip it there"]


async def test_no_arch_left_is_refused_and_nothing_created(
    start_server: Any, tree_repo: Path
) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)
        before = await server.counts()
        # elsewhere builds on loongson3 only, which this server does not know; a noarch
        # package does not make the pipeline buildable.
        r = await _create(server, token, packages="elsewhere,docs-data")
        assert r.status_code == 422, r.text
        assert r.json()["error"] == (
            "no architecture can build any of these packages (FAIL_ARCH excludes"
            " amd64: elsewhere; arm64: elsewhere; riscv64: elsewhere); name the archs"
        )
        assert await server.counts() == before


# -- packages -------------------------------------------------------------------------


async def test_groups_expand_and_modifiers_are_kept(start_server: Any, tree_repo: Path) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)
        pid = await _new_pipeline(server, token, packages=["hello:+stage2", "groups/base"],
                                  archs="amd64")
        info = await _pipeline(server, pid)
        expected = "hello:+stage2,core/bash,zlib"
        assert info["packages"] == expected
        assert [(j["arch"], j["packages"]) for j in info["jobs"]] == [("amd64", expected)]
        job = await _poll(server, "a1", "amd64")
        assert job["packages"] == expected

        # A modifier on the group goes to its entries; sub-package names find their package.
        pid = await _new_pipeline(server, token, packages="groups/base:+x,llvm-runtime",
                                  archs="arm64")
        assert (await _pipeline(server, pid))["jobs"][0]["packages"] == (
            "core/bash:+x,zlib:+x,llvm-runtime"
        )


# -- requirements ---------------------------------------------------------------------


async def test_envreq_lands_on_the_job_and_picks_the_worker(
    start_server: Any, tree_repo: Path
) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)
        pid = await _new_pipeline(server, token, packages="big,hello", archs="amd64,arm64")
        jobs = await _jobs_by_arch(server, pid)
        assert _requirements(jobs["amd64"]) == (8, 16 * GIB, None, 100 * GB)
        # ENVREQ__ARM64 replaces ENVREQ on arm64.
        assert _requirements(jobs["arm64"]) == (None, None, 4.0 * GIB, None)
        assert (await _pipeline(server, pid))["warnings"] == []

        # amd64: too few cores, too little memory, too little disk -> no job.
        for hostname, small in (
            ("few-cores", {"logical_cores": 4}),
            ("little-mem", {"memory_bytes": 8 * GIB}),
            ("little-disk", {"disk_free_space_bytes": 50 * GB}),
        ):
            assert await _poll(server, hostname, "amd64", **small) is None, hostname
        assert (await _job(server, jobs["amd64"]["job_id"]))["status"] == "created"
        got = await _poll(server, "big-amd", "amd64", logical_cores=8, memory_bytes=16 * GIB,
                          disk_free_space_bytes=100 * GB)
        assert got is not None and got["job_id"] == jobs["amd64"]["job_id"]

        # arm64: 4 GiB per core; 16 cores with 32 GiB is 2 GiB per core -> no job.
        assert await _poll(server, "thin-arm", "arm64") is None
        got = await _poll(server, "fat-arm", "arm64", logical_cores=8, memory_bytes=32 * GIB)
        assert got is not None and got["job_id"] == jobs["arm64"]["job_id"]
        assert (await _job(server, got["job_id"]))["attempts"][0]["worker_hostname"] == "fat-arm"


async def test_unknown_envreq_key_is_a_pipeline_warning(
    start_server: Any, tree_repo: Path
) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)
        pid = await _new_pipeline(server, token, packages="gpu", archs="amd64")
        info = await _pipeline(server, pid)
        assert info["warnings"] == ["gpu: ENVREQ: unknown key 'gpu'; ignored"]
        # The keys it knows still apply.
        job = await _job(server, info["jobs"][0]["job_id"])
        assert _requirements(job) == (2, None, None, None)

        # 0 is no minimum; a value the jobs table cannot hold is a warning too.
        pid = await _new_pipeline(server, token, packages="odd-envreq", archs="amd64")
        info = await _pipeline(server, pid)
        assert info["warnings"] == ["odd-envreq: ENVREQ: total_mem='1e12' is too large; ignored"]
        job = await _job(server, info["jobs"][0]["job_id"])
        assert _requirements(job) == (None, None, None, 7 * GB)


# -- refusals -------------------------------------------------------------------------


async def test_unknown_package_or_branch_creates_nothing(
    start_server: Any, tree_repo: Path
) -> None:
    with trio.fail_after(60):
        server, token = await _start(start_server, tree_repo)
        stable_sha = git(tree_repo, "rev-parse", "stable")
        before = await server.counts()

        r = await _create(server, token, packages="hello,no-such-pkg,nope:+x")
        assert r.status_code == 422, r.text
        assert r.json()["error"] == (
            f"unknown package(s) in the packages tree at {stable_sha[:12]}: no-such-pkg, nope"
        )
        r = await _create(server, token, packages="groups/nothing")
        assert r.status_code == 422, r.text
        assert "'groups/nothing'" in r.json()["error"]
        r = await _create(server, token, git_branch="no-such-branch", packages="hello")
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "branch 'no-such-branch' does not exist in the packages tree"
        r = await _create(server, token, packages="hello", git_sha="0" * 40)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == f"commit {'0' * 40} is not in the packages tree"

        assert await server.counts() == before
        assert await _poll(server, "a1", "amd64") is None
