"""The packages-tree module: pure rules first, then git on real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from buildit.abbs import AbbsTree, TreePlan
from buildit.abbs.bashvars import parse_assignments
from buildit.abbs.git import parse_cat_file_batch, parse_ls_tree
from buildit.abbs.rules import (
    FailArch,
    PackageFacts,
    TreeIndex,
    build_plan,
    expand_groups,
    max_requirements,
    parse_envreq,
    parse_fail_arch,
    parse_group_file,
    split_modifier,
)
from buildit.domain import Requirements
from buildit.errors import Unprocessable
from tests.abbs_tree import commit, git, init_tree, package, split_package, switch

KNOWN = ("amd64", "arm64", "loongarch64", "loongson3", "ppc64el", "riscv64")
GIB = 2**30
GB = 10**9


# -- the bash-like reader -------------------------------------------------------------


def test_reads_plain_and_quoted_values() -> None:
    text = """\
# a comment line
PKGNAME=hello
PKGDES="A friendly \\"greeting\\" program"   # trailing comment
PKGSEC='utils'
ABHOST=noarch
"""
    assert parse_assignments(text) == {
        "PKGNAME": "hello",
        "PKGDES": 'A friendly "greeting" program',
        "PKGSEC": "utils",
        "ABHOST": "noarch",
    }


def test_reads_values_across_lines() -> None:
    text = (
        'PKGDEP="glibc \\\n        zlib"\n'
        'BUILDDEP="cmake\n          ninja"\n'
        "PKGBREAK=a\\\nb\n"
        "ENVREQ='core=4\ntotal_mem=8'\n"
        "AFTER=yes\n"
    )
    assert parse_assignments(text) == {
        "PKGDEP": "glibc         zlib",
        "BUILDDEP": "cmake\n          ninja",
        "PKGBREAK": "ab",
        "ENVREQ": "core=4\ntotal_mem=8",
        "AFTER": "yes",
    }


def test_reads_a_spec_like_the_tree_has() -> None:
    # The shape of app-web/chromium/spec in aosc-os-abbs.
    text = (
        "VER=1.2.3\n"
        "REL=2\n"
        'SRCS="https://example.org/big-$VER.tar.xz \\\n'
        '      file::rename=big-$VER.txt::https://example.org/$VER?format=TEXT"\n'
        'CHKSUMS="sha256::aa \\\n         SKIP"\n'
        'ENVREQ__AMD64="core=96"\n'
        'ENVREQ__ARM64="total_mem_per_core=3 core=64"\n'
    )
    spec = parse_assignments(text)
    assert spec["SRCS"] == (
        "https://example.org/big-1.2.3.tar.xz       "
        "file::rename=big-1.2.3.txt::https://example.org/1.2.3?format=TEXT"
    )
    assert spec["CHKSUMS"] == "sha256::aa          SKIP"
    assert (spec["ENVREQ__AMD64"], spec["ENVREQ__ARM64"]) == (
        "core=96", "total_mem_per_core=3 core=64"
    )


def test_expands_earlier_variables_and_appends() -> None:
    text = (
        "VER=1.2\n"
        'SRCS="tbl::https://example.org/foo-$VER.tar.xz"\n'
        "NAME=${VER}-x\n"
        "DEFAULTED=${UNSET:-fallback}\n"
        "PKGDEP=a\n"
        'PKGDEP+=" b"\n'
        "export EXPORTED=1\n"
        "UNKNOWN=$NOPE.end\n"
    )
    assert parse_assignments(text) == {
        "VER": "1.2",
        "SRCS": "tbl::https://example.org/foo-1.2.tar.xz",
        "NAME": "1.2-x",
        "DEFAULTED": "fallback",
        "PKGDEP": "a b",
        "EXPORTED": "1",
        "UNKNOWN": ".end",
    }


def test_skips_what_is_not_an_assignment() -> None:
    text = (
        'if [[ "${CROSS:-$ARCH}" = "amd64" ]]; then\n'
        "    EXTRA=1\n"
        "fi\n"
        "abinfo 'say \"hi\"; X=not-this'\n"
        "STAMP=$(date +%s)\n"
        "ARRAY=(one \"two three\" # note\n four)\n"
        "A=1; B=2\n"
        "CRLF=value\r\n"
    )
    assert parse_assignments(text) == {
        "EXTRA": "1",
        "STAMP": "",
        "ARRAY": "one two three four",
        "A": "1",
        "B": "2",
        "CRLF": "value",
    }


@pytest.mark.parametrize("text", ['X="unterminated\n', "X='open", "X=${open", "X=$(open", "\\"])
def test_tolerates_broken_files(text: str) -> None:
    assert set(parse_assignments(text)) <= {"X"}


# -- names and groups -----------------------------------------------------------------


def test_modifier_is_kept_apart() -> None:
    assert split_modifier("llvm:+stage2") == ("llvm", ":+stage2")
    assert split_modifier("core/bash") == ("core/bash", "")


def test_group_file_skips_blanks_and_comments() -> None:
    text = "# base system\nbash\n\n  app-utils/hello  \nzlib # compression\n#gone\n"
    assert parse_group_file(text) == ["bash", "app-utils/hello", "zlib"]


def test_groups_expand_in_place_with_modifiers() -> None:
    groups = {"groups/base": "bash\nzlib:+x\nhello\n"}
    assert expand_groups(["hello:+stage2", "groups/base:+stage2", "vim:-y"], groups) == [
        "hello:+stage2", "bash:+stage2", "zlib:+x", "vim:-y",
    ]


def test_unknown_or_empty_group_is_refused() -> None:
    with pytest.raises(Unprocessable, match="unknown package group 'groups/nope'"):
        expand_groups(["groups/nope"], {"groups/nope": None})
    with pytest.raises(Unprocessable, match="'groups/empty' lists no packages"):
        expand_groups(["groups/empty"], {"groups/empty": "# nothing\n\n"})


def test_index_finds_by_name_or_section_and_name() -> None:
    index = TreeIndex.from_paths(["app-utils/hello", "core/bash", "extra/bash", "x/y/z"])
    assert index.candidates("hello") == ("app-utils/hello",)
    assert index.candidates("bash") == ("core/bash", "extra/bash")
    assert index.candidates("core/bash") == ("core/bash",)
    assert index.candidates("other/hello") == ()
    assert index.candidates("nope") == ()


# -- FAIL_ARCH ------------------------------------------------------------------------

GROUPS = {"mainline": ("amd64", "arm64", "riscv64"), "retro": ("i486",)}


@pytest.mark.parametrize(
    ("expr", "fails", "builds"),
    [
        ("!(amd64|arm64)", ["riscv64", "loongson3", "i486"], ["amd64", "arm64"]),
        ("@(loongson3|ppc64el)", ["loongson3", "ppc64el"], ["amd64", "riscv64"]),
        ("riscv64", ["riscv64"], ["amd64", "riscv"]),
        ("!(mainline)", ["i486", "loongson3"], ["amd64", "riscv64"]),
        ("@(retro|riscv64)", ["i486", "riscv64"], ["amd64", "arm64"]),
        ("(loongson3|ppc64el)", ["loongson3", "ppc64el"], ["amd64", "loongson"]),
        ("amd", [], ["amd64"]),  # anchored: a prefix is not a match
    ],
)
def test_fail_arch_matches_whole_names_and_groups(
    expr: str, fails: list[str], builds: list[str]
) -> None:
    pattern = parse_fail_arch(expr)
    assert [a for a in fails if not pattern.fails_on(a, GROUPS)] == []
    assert [a for a in builds if pattern.fails_on(a, GROUPS)] == []


def test_fail_arch_forms_current_acbs_rejects_are_marked() -> None:
    assert parse_fail_arch(" !(amd64) ") == FailArch(("amd64",), negated=True)
    assert parse_fail_arch("(a64|b64)") == FailArch(("a64", "b64"), negated=False, strict=False)
    assert parse_fail_arch("!riscv64") == FailArch(("riscv64",), negated=True, strict=False)
    for bad in ("", "!(amd64", "*", "amd64 arm64", "@(AMD64)", "!(a||b)"):
        with pytest.raises(ValueError, match="is not"):
            parse_fail_arch(bad)


# -- ENVREQ ---------------------------------------------------------------------------


def test_envreq_units() -> None:
    requirements, problems = parse_envreq("core=16 total_mem=1.5 total_mem_per_core=2 disk=100")
    assert problems == []
    assert requirements == Requirements(
        min_cores=16, min_total_mem=int(1.5 * GIB), min_total_mem_per_core=2.0 * GIB,
        min_disk=100 * GB,
    )


def test_envreq_problems_are_reported_not_fatal() -> None:
    requirements, problems = parse_envreq("core=4 gpu=1 disk=lots total_mem=-1 bare")
    assert requirements == Requirements(min_cores=4)
    assert problems == [
        "unknown key 'gpu'",
        "disk='lots' is not a non-negative number",
        "total_mem='-1' is not a non-negative number",
        "'bare' is not key=value",
    ]


def test_envreq_zero_is_no_minimum_and_too_large_is_reported() -> None:
    # The jobs table holds minimums > 0 in int4 (cores) and int8 (bytes) columns.
    assert parse_envreq("core=0 total_mem=0 total_mem_per_core=0 disk=0") == (Requirements(), [])
    assert parse_envreq("core=2147483647 core=0.5") == (Requirements(min_cores=2**31 - 1), [])
    requirements, problems = parse_envreq(
        "core=2147483648 total_mem=1e10 total_mem_per_core=1e308 disk=1e10 disk=5"
    )
    assert requirements == Requirements(min_disk=5 * GB)
    assert problems == [
        "core='2147483648' is too large",
        "total_mem='1e10' is too large",
        "total_mem_per_core='1e308' is too large",
        "disk='1e10' is too large",
    ]


def test_max_requirements_is_fieldwise() -> None:
    combined = max_requirements([
        Requirements(min_cores=4, min_disk=5),
        Requirements(min_cores=2, min_total_mem=7),
        Requirements(),
    ])
    assert combined == Requirements(min_cores=4, min_total_mem=7, min_disk=5)
    assert max_requirements([]) == Requirements()


# -- plans from facts -----------------------------------------------------------------


def facts(path: str, *defines: dict[str, str], spec: dict[str, str] | None = None) -> PackageFacts:
    return PackageFacts(path, tuple(defines) or ({},), spec or {})


def test_all_noarch_packages_build_once() -> None:
    docs = facts("doc/a", {"ABHOST": "noarch"})
    data = facts("doc/b", {"ABHOST": "noarch"}, {"ABHOST": "noarch"})
    plan = build_plan(["a", "b"], [docs, data], None, known_archs=KNOWN)
    assert plan.archs == ["noarch"]
    assert plan.requirements == {"noarch": Requirements()}


def test_a_split_package_is_noarch_only_when_every_subpackage_is() -> None:
    mixed = facts("fonts/pack", {"ABHOST": "noarch"}, {})
    plan = build_plan(["pack"], [mixed], None, known_archs=KNOWN)
    assert plan.archs == list(KNOWN)


def test_fail_arch_of_any_subpackage_excludes_the_whole_package() -> None:
    split = facts("b/split", {}, {"FAIL_ARCH": "@(riscv64)"})
    plan = build_plan(["split"], [split], None, known_archs=KNOWN)
    assert plan.archs == ["amd64", "arm64", "loongarch64", "loongson3", "ppc64el"]


def test_an_arch_is_kept_when_another_package_builds_there() -> None:
    # ACBS skips a package on an arch its FAIL_ARCH excludes and builds the others.
    only_main = facts("a/only", {"FAIL_ARCH": "!(amd64|arm64|riscv64)"})
    split = facts("b/split", {}, {"FAIL_ARCH": "@(riscv64)"})
    alone = build_plan(["only"], [only_main], None, known_archs=KNOWN)
    plan = build_plan(["only", "split"], [only_main, split], None, known_archs=KNOWN)
    assert alone.archs == ["amd64", "arm64", "riscv64"]
    # riscv64: only `only` builds there; loongarch64, loongson3, ppc64el: only `split`.
    assert plan.archs == list(KNOWN)
    assert plan.warnings == []


def test_an_arch_is_dropped_when_every_package_excludes_it() -> None:
    secondary = facts("a/secondary", {"FAIL_ARCH": "@(loongson3|ppc64el|riscv64)"})
    split = facts("b/split", {}, {"FAIL_ARCH": "@(arm64|riscv64)"})
    norv = facts("c/norv", {"FAIL_ARCH": "riscv64"})
    plan = build_plan(["secondary", "split"], [secondary, split], None, known_archs=KNOWN)
    # arm64 is kept (secondary builds there), loongson3 and ppc64el too (split does);
    # riscv64 is excluded by both.
    assert plan.archs == ["amd64", "arm64", "loongarch64", "loongson3", "ppc64el"]
    # A third package that excludes riscv64 as well changes nothing.
    three = build_plan(["secondary", "split", "norv"], [secondary, split, norv], None,
                       known_archs=KNOWN)
    assert three.archs == plan.archs


def test_noarch_packages_neither_keep_nor_drop_an_arch() -> None:
    docs = facts("doc/docs", {"ABHOST": "noarch"})
    docs_not_amd = facts("doc/odd", {"ABHOST": "noarch", "FAIL_ARCH": "@(amd64)"})
    norv = facts("a/norv", {"FAIL_ARCH": "@(riscv64)"})
    # A noarch package builds anywhere: it does not keep riscv64 for `norv` ...
    plan = build_plan(["docs", "norv"], [docs, norv], None, known_archs=KNOWN)
    assert plan.archs == ["amd64", "arm64", "loongarch64", "loongson3", "ppc64el"]
    # ... and its own FAIL_ARCH does not drop an arch another package builds on.
    plan = build_plan(["odd", "norv"], [docs_not_amd, norv], None, known_archs=KNOWN)
    assert plan.archs == ["amd64", "arm64", "loongarch64", "loongson3", "ppc64el"]


def test_no_arch_left_is_refused_with_reasons() -> None:
    amd = facts("a/amd", {"FAIL_ARCH": "!(amd64)"})
    arm = facts("a/arm", {"FAIL_ARCH": "!(arm64)"})
    # Each arch has one package to build: both are kept.
    plan = build_plan(["amd", "arm"], [amd, arm], None, known_archs=("amd64", "arm64"))
    assert plan.archs == ["amd64", "arm64"]
    nowhere = facts("a/nowhere", {"FAIL_ARCH": "@(amd64|arm64)"})
    rv_only = facts("a/rv", {"FAIL_ARCH": "!(riscv64)"})
    docs = facts("doc/docs", {"ABHOST": "noarch"})
    with pytest.raises(Unprocessable) as caught:
        build_plan(["nowhere", "rv", "docs"], [nowhere, rv_only, docs], None,
                   known_archs=("amd64", "arm64"))
    assert caught.value.message == (
        "no architecture can build any of these packages (FAIL_ARCH excludes"
        " amd64: nowhere, rv; arm64: nowhere, rv); name the archs"
    )


def test_given_archs_are_kept_and_exclusions_warned() -> None:
    pkg = facts("a/pkg", {"FAIL_ARCH": "@(riscv64)"})
    plan = build_plan(["pkg"], [pkg], ["amd64", "riscv64"], known_archs=KNOWN)
    assert plan.archs == ["amd64", "riscv64"]
    assert plan.warnings == ["pkg: FAIL_ARCH excludes riscv64; ACBS will skip it there"]


def test_bad_fail_arch_is_a_warning_and_excludes_nothing() -> None:
    old = facts("a/old", {"FAIL_ARCH": "(loongson3|ppc64el)"})
    bad = facts("a/bad", {"FAIL_ARCH": "amd64 arm64"})
    old_plan = build_plan(["old"], [old], None, known_archs=KNOWN)
    bad_plan = build_plan(["bad"], [bad], None, known_archs=KNOWN)
    both = build_plan(["old", "bad"], [old, bad], None, known_archs=KNOWN)
    old_warning = (
        "old: FAIL_ARCH '(loongson3|ppc64el)' is an old form current ACBS rejects;"
        " write @(…) or !(…)"
    )
    bad_warning = (
        "bad: FAIL_ARCH 'amd64 arm64' is not @(a|b), !(a|b) or a single name;"
        " ignored here, ACBS will refuse it"
    )
    # The old form is still understood; the unreadable one excludes nothing.
    assert (old_plan.archs, old_plan.warnings) == (
        ["amd64", "arm64", "loongarch64", "riscv64"], [old_warning]
    )
    assert (bad_plan.archs, bad_plan.warnings) == (list(KNOWN), [bad_warning])
    assert (both.archs, both.warnings) == (list(KNOWN), [old_warning, bad_warning])


def test_requirements_take_the_arch_override_and_the_maximum() -> None:
    big = facts("a/big", spec={"ENVREQ": "core=8 total_mem=16", "ENVREQ__AMD64": "core=32"})
    disk = facts("a/disk", spec={"ENVREQ": "disk=50 core=4 gpu=1"})
    plain = facts("a/plain")
    plan = build_plan(["big", "disk", "plain"], [big, disk, plain], ["amd64", "arm64"],
                      known_archs=KNOWN)
    assert plan.requirements == {
        # ENVREQ__AMD64 replaces ENVREQ whole: no total_mem from `big` on amd64.
        "amd64": Requirements(min_cores=32, min_disk=50 * GB),
        "arm64": Requirements(min_cores=8, min_total_mem=16 * GIB, min_disk=50 * GB),
    }
    assert plan.warnings == ["disk: ENVREQ: unknown key 'gpu'; ignored"]


# -- git output -----------------------------------------------------------------------


def test_parses_ls_tree_and_cat_file_output() -> None:
    listing = b"040000 tree aaaa\tcore/bash\x00100644 blob bbbb\tcore/README\x00"
    assert parse_ls_tree(listing) == [("tree", "core/bash"), ("blob", "core/README")]
    batch = b"x1 blob 5\nhello\nsha:gone missing\nx2 tree 3\nabc\nx3 blob 0\n\n"
    assert parse_cat_file_batch(batch, 4) == [b"hello", None, None, b""]


# -- a real tree ----------------------------------------------------------------------

TREE: dict[str, str] = {
    **package("app-utils", "hello"),
    **package("app-doc", "docs-data", defines="ABHOST=noarch\n"),
    **package("app-misc", "onlymain", defines='FAIL_ARCH="!(amd64|arm64)"\n'),
    **package("app-misc", "notsecondary", defines='FAIL_ARCH="(loongson3|ppc64el)"\n'),
    **package("app-misc", "norv", defines='FAIL_ARCH="riscv64"\n'),
    **package("app-misc", "gpu", spec="VER=2\nENVREQ=\"core=4 gpu=1\"\n"),
    **split_package(
        "lang-llvm", "llvm",
        {"llvm": "", "llvm-runtime": 'FAIL_ARCH="@(riscv64)"\n'},
        spec=(
            "VER=17\n"
            "ENVREQ=\"core=16 total_mem=32 \\\n        disk=100\"\n"
            "ENVREQ__AMD64=\"core=32 total_mem_per_core=2\"\n"
        ),
    ),
    **split_package(
        "fonts", "fontpack", {"fontpack-data": "ABHOST=noarch\n", "fontpack-tool": ""}
    ),
    "groups/docs": "# documentation\napp-doc/docs-data\n\nhello\n",
    "app-misc/not-a-package/README": "no defines here\n",
    "README.md": "a packages tree\n",
}


@pytest.fixture
def tree_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "abbs"
    init_tree(repo, TREE)
    switch(repo, "feature", create_from="stable")
    commit(repo, {
        **package("app-utils", "hello", spec='VER=1.1\nENVREQ="total_mem=8"\n'),
        **package("app-utils", "newpkg"),
    }, "hello: needs memory; new package")
    switch(repo, "stable")
    return repo


async def test_resolve_local_branches(tree_repo: Path) -> None:
    tree = AbbsTree(tree_repo)
    with trio.fail_after(30):
        stable = await tree.resolve("stable")
        feature = await tree.resolve("feature")
    assert stable == git(tree_repo, "rev-parse", "stable")
    assert feature == git(tree_repo, "rev-parse", "feature")
    assert stable != feature


async def test_unknown_branch_is_unprocessable(tree_repo: Path) -> None:
    tree = AbbsTree(tree_repo)
    with trio.fail_after(30), pytest.raises(Unprocessable) as caught:
        await tree.resolve("no-such-branch")
    assert caught.value.message == "branch 'no-such-branch' does not exist in the packages tree"


async def test_plan_derives_archs_from_the_tree(tree_repo: Path) -> None:
    tree = AbbsTree(tree_repo)
    with trio.fail_after(30):
        sha = await tree.resolve("stable")
        everywhere = await tree.plan(sha, ["hello"], None, known_archs=KNOWN)
        docs = await tree.plan(sha, ["groups/docs"], None, known_archs=KNOWN)
        main_only = await tree.plan(sha, ["onlymain"], None, known_archs=KNOWN)
        limited = await tree.plan(
            sha, ["onlymain", "app-misc/norv:+stage2"], None, known_archs=KNOWN
        )
        old_form = await tree.plan(sha, ["notsecondary"], None, known_archs=KNOWN)
        with_split = await tree.plan(sha, ["notsecondary", "fontpack"], None, known_archs=KNOWN)
    assert everywhere == TreePlan(["hello"], list(KNOWN), dict.fromkeys(KNOWN, Requirements()), [])
    assert (docs.packages, docs.archs) == (["app-doc/docs-data", "hello"], list(KNOWN))
    assert main_only.archs == ["amd64", "arm64"]
    # norv builds on loongarch64, loongson3 and ppc64el; riscv64 is excluded by both.
    assert (limited.packages, limited.archs) == (
        ["onlymain", "app-misc/norv:+stage2"],
        ["amd64", "arm64", "loongarch64", "loongson3", "ppc64el"],
    )
    old_warning = (
        "notsecondary: FAIL_ARCH '(loongson3|ppc64el)' is an old form current ACBS rejects;"
        " write @(…) or !(…)"
    )
    assert (old_form.archs, old_form.warnings) == (
        ["amd64", "arm64", "loongarch64", "riscv64"], [old_warning]
    )
    # fontpack is not noarch (one sub-package is not) and builds everywhere.
    assert (with_split.archs, with_split.warnings) == (list(KNOWN), [old_warning])


async def test_plan_noarch_only(tree_repo: Path) -> None:
    tree = AbbsTree(tree_repo)
    with trio.fail_after(30):
        sha = await tree.resolve("stable")
        plan = await tree.plan(sha, ["docs-data"], None, known_archs=KNOWN)
    assert (plan.archs, plan.requirements) == (["noarch"], {"noarch": Requirements()})


async def test_plan_split_package_requirements(tree_repo: Path) -> None:
    tree = AbbsTree(tree_repo)
    with trio.fail_after(30):
        sha = await tree.resolve("stable")
        llvm = await tree.plan(sha, ["llvm"], None, known_archs=KNOWN)
        plan = await tree.plan(sha, ["llvm", "gpu"], None, known_archs=KNOWN)
        # A sub-package's PKGNAME finds its split package, as in ACBS.
        by_subpackage = await tree.plan(sha, ["llvm-runtime"], ["arm64"], known_archs=KNOWN)
    # llvm-runtime's FAIL_ARCH drops riscv64 for llvm; gpu builds there, so it stays.
    assert llvm.archs == ["amd64", "arm64", "loongarch64", "loongson3", "ppc64el"]
    assert plan.archs == list(KNOWN)
    assert plan.requirements["amd64"] == Requirements(min_cores=32,
                                                      min_total_mem_per_core=2.0 * GIB)
    assert plan.requirements["arm64"] == Requirements(
        min_cores=16, min_total_mem=32 * GIB, min_disk=100 * GB
    )
    assert plan.warnings == ["gpu: ENVREQ: unknown key 'gpu'; ignored"]
    assert by_subpackage.requirements["arm64"] == plan.requirements["arm64"]


async def test_unknown_packages_are_named_together(tree_repo: Path) -> None:
    tree = AbbsTree(tree_repo)
    with trio.fail_after(30):
        sha = await tree.resolve("stable")
        with pytest.raises(Unprocessable) as caught:
            await tree.plan(
                sha, ["hello", "nope:+x", "not-a-package", "core/hello", "newpkg"], None,
                known_archs=KNOWN,
            )
        assert caught.value.message == (
            f"unknown package(s) in the packages tree at {sha[:12]}:"
            " nope, not-a-package, core/hello, newpkg"
        )
        with pytest.raises(Unprocessable, match="unknown package group 'groups/nope'"):
            await tree.plan(sha, ["groups/nope"], None, known_archs=KNOWN)
        with pytest.raises(Unprocessable, match="is not in the packages tree"):
            await tree.plan("0" * 40, ["hello"], None, known_archs=KNOWN)


async def test_concurrent_resolve_and_plan_on_two_branches(tree_repo: Path) -> None:
    tree = AbbsTree(tree_repo)
    results: dict[str, tuple[str, TreePlan]] = {}

    async def build(branch: str, packages: list[str]) -> None:
        sha = await tree.resolve(branch)
        results[branch] = (sha, await tree.plan(sha, packages, None, known_archs=KNOWN))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(build, "stable", ["hello"])
            nursery.start_soon(build, "feature", ["hello", "newpkg"])
    stable_sha, stable = results["stable"]
    feature_sha, feature = results["feature"]
    assert stable_sha == git(tree_repo, "rev-parse", "stable")
    assert feature_sha == git(tree_repo, "rev-parse", "feature")
    assert stable.requirements["amd64"] == Requirements()
    assert feature.requirements["amd64"] == Requirements(min_total_mem=8 * GIB)
    assert feature.packages == ["hello", "newpkg"]


async def test_resolve_fetches_from_the_remote(tree_repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "server-checkout"
    git(tmp_path, "clone", "--quiet", str(tree_repo), str(clone))
    # Made after the clone: only a fetch can know them.
    switch(tree_repo, "late", create_from="stable")
    late_sha = commit(tree_repo, package("app-utils", "latecomer"), "latecomer: new")
    switch(tree_repo, "stable")
    moved_stable = commit(tree_repo, {"README.md": "moved on\n"}, "readme")
    tree = AbbsTree(clone, remote="origin")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for branch in ("late", "stable", "feature"):
                nursery.start_soon(tree.resolve, branch)
        assert await tree.resolve("late") == late_sha
        assert await tree.resolve("stable") == moved_stable
        plan = await tree.plan(late_sha, ["latecomer"], None, known_archs=KNOWN)
        with pytest.raises(Unprocessable) as caught:
            await tree.resolve("gone")
    assert plan.archs == list(KNOWN)
    assert caught.value.message == "branch 'gone' does not exist in the packages tree"
    # The server's checkout was only fetched into: nothing checked out, no local branch.
    assert git(clone, "branch", "--format=%(refname:short)") == "stable"
    assert git(clone, "status", "--porcelain") == ""
    assert git(clone, "rev-parse", "HEAD") != moved_stable


async def test_a_deleted_remote_branch_is_unknown(tree_repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "server-checkout"
    git(tmp_path, "clone", "--quiet", str(tree_repo), str(clone))
    tree = AbbsTree(clone, remote="origin")
    with trio.fail_after(30):
        await tree.resolve("feature")
        git(tree_repo, "branch", "-D", "feature")
        with pytest.raises(Unprocessable, match="'feature' does not exist"):
            await tree.resolve("feature")
