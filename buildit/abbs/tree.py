"""The server's git checkout of the packages tree (aosc-os-abbs).

Branches are fetched into refs of our own (``refs/buildit/fetched/...``), one fetch at
a time; commits are read with ``ls-tree``, ``cat-file --batch`` and ``grep``, never
checked out, so any number of plans may read different commits at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import trio

from buildit.abbs.bashvars import parse_assignments
from buildit.abbs.git import GitFailed, grep_lines, list_tree, read_blobs, run_git
from buildit.abbs.rules import (
    AUTOBUILD_ARCH_GROUPS,
    PackageFacts,
    TreeIndex,
    TreePlan,
    build_plan,
    expand_groups,
    requested_groups,
    section_dirs,
    split_modifier,
)
from buildit.domain import validate_branch, validate_sha
from buildit.errors import BuildItError, Unprocessable

log = logging.getLogger(__name__)

_CACHE_SIZE = 16  # commits whose package index we keep (about 1 MB each for AOSC)
# Split packages live in `<section>/<name>/<NN>-<sub>/defines` (ACBS wants the number).
_SUBPACKAGE_DEFINES = ":(glob)*/*/[0-9]*/defines"
_FETCHED_REFS = "refs/buildit/fetched/"

_V = TypeVar("_V")


class AbbsError(BuildItError):
    """The packages tree could not be fetched or read; not the request's fault."""


class AbbsTree:
    def __init__(
        self,
        path: Path,
        *,
        remote: str | None = None,
        arch_groups: Mapping[str, Collection[str]] = AUTOBUILD_ARCH_GROUPS,
    ) -> None:
        self.path = path
        self.remote = remote
        self._arch_groups = arch_groups
        self._fetch_lock = trio.Lock()
        self._indexes: OrderedDict[str, TreeIndex] = OrderedDict()
        self._subpackages: OrderedDict[str, Mapping[str, str]] = OrderedDict()

    async def resolve(self, branch: str) -> str:
        """Fetch ``branch`` from the remote (else read the local branch); its commit sha.

        An unknown branch is ``Unprocessable``; a failing fetch is ``AbbsError``.
        """
        branch = validate_branch(branch)
        if self.remote is None:
            sha = await self._commit_of(f"refs/heads/{branch}")
        else:
            async with self._fetch_lock:
                ref = _FETCHED_REFS + branch.replace("/", "%2F")
                await self._fetch(self.remote, branch, ref)
                sha = await self._commit_of(ref)
        if sha is None:
            raise Unprocessable(f"branch {branch!r} does not exist in the packages tree")
        return sha

    async def plan(
        self,
        sha: str,
        packages: Sequence[str],
        archs: Sequence[str] | None,
        *,
        known_archs: Sequence[str],
    ) -> TreePlan:
        """Check ``packages`` exist at ``sha``; decide archs (when None) and requirements."""
        sha = validate_sha(sha)
        try:
            index = await self._index(sha)
            groups = requested_groups(packages)
            blobs = await read_blobs(self.path, sha, groups)
            expanded = expand_groups(packages, {g: _text(blobs[g]) for g in groups})
            lookups = list(dict.fromkeys(split_modifier(p)[0] for p in expanded))
            found, warnings = await self._find(sha, index, lookups)
        except GitFailed as exc:
            log.warning("reading commit %s of the packages tree failed: %s", sha, exc)
            raise AbbsError(f"could not read commit {sha} of the packages tree") from exc
        facts = list({f.path: f for f in found}.values())
        plan = build_plan(
            expanded, facts, archs, known_archs=known_archs, arch_groups=self._arch_groups
        )
        return dataclasses.replace(plan, warnings=[*warnings, *plan.warnings])

    # -- branches -----------------------------------------------------------------

    async def _fetch(self, remote: str, branch: str, ref: str) -> None:
        try:
            await run_git(
                self.path, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                remote, f"+refs/heads/{branch}:{ref}",
            )
        except GitFailed as exc:
            if "couldn't find remote ref" in exc.stderr:
                raise Unprocessable(
                    f"branch {branch!r} does not exist in the packages tree"
                ) from exc
            # The remote may be a URL with credentials: details go to the log only.
            log.warning("git fetch of %r failed: %s", branch, exc)
            raise AbbsError(
                f"could not fetch branch {branch!r} of the packages tree (git exited with"
                f" {exc.returncode})"
            ) from exc

    async def _commit_of(self, ref: str) -> str | None:
        try:
            status, out = await run_git(
                self.path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1)
            )
        except GitFailed as exc:
            log.warning("git rev-parse %s failed: %s", ref, exc)
            raise AbbsError("could not read the packages tree") from exc
        return out.decode().strip() if status == 0 else None

    # -- reading a commit ---------------------------------------------------------

    async def _index(self, sha: str) -> TreeIndex:
        cached = self._indexes.get(sha)
        if cached is not None:
            self._indexes.move_to_end(sha)
            return cached
        if await self._commit_of(sha) is None:
            raise Unprocessable(f"commit {sha} is not in the packages tree")
        sections = section_dirs(await list_tree(self.path, sha))
        entries = await list_tree(self.path, sha, sections) if sections else []
        index = TreeIndex.from_paths(path for kind, path in entries if kind == "tree")
        _remember(self._indexes, sha, index)
        return index

    async def _find(
        self, sha: str, index: TreeIndex, lookups: Sequence[str]
    ) -> tuple[list[PackageFacts], list[str]]:
        """The package behind each lookup name; every unknown name is in one error."""
        warnings: list[str] = []
        candidates = {name: index.candidates(name) for name in lookups}
        loaded = await self._load(sha, [p for paths in candidates.values() for p in paths])
        found: dict[str, PackageFacts] = {}
        for name, paths in candidates.items():
            hits = [facts for p in paths if (facts := loaded.get(p)) is not None]
            if hits:
                found[name] = hits[0]
            if len(hits) > 1:
                others = ", ".join(h.path for h in hits[1:])
                warnings.append(
                    f"{name}: found in several sections; using {hits[0].path}, not {others}"
                )
        # Like ACBS, a name may also be the PKGNAME of one sub-package of a split package.
        loose = [n for n in lookups if n not in found and "/" not in n]
        if loose:
            owners = await self._subpackage_owners(sha)
            owned = {n: owners[n] for n in loose if n in owners}
            more = await self._load(sha, list(owned.values()))
            found.update({n: f for n, p in owned.items() if (f := more.get(p)) is not None})
        missing = [n for n in lookups if n not in found]
        if missing:
            raise Unprocessable(
                f"unknown package(s) in the packages tree at {sha[:12]}: {', '.join(missing)}"
            )
        return [found[n] for n in lookups], warnings

    async def _load(self, sha: str, paths: Sequence[str]) -> dict[str, PackageFacts | None]:
        """Read ``defines`` and ``spec`` of package directories; None: not a package."""
        paths = list(dict.fromkeys(paths))
        if not paths:
            return {}
        subdirs: dict[str, list[str]] = {p: [] for p in paths}
        for kind, full in await list_tree(self.path, sha, paths):
            parent, _, child = full.rpartition("/")
            if kind == "tree" and parent in subdirs:
                subdirs[parent].append(child)
        defines_paths = {
            p: [f"{p}/autobuild/defines"] if "autobuild" in dirs
            else [f"{p}/{d}/defines" for d in sorted(dirs)]
            for p, dirs in subdirs.items()
        }
        wanted = [d for ds in defines_paths.values() for d in ds] + [f"{p}/spec" for p in paths]
        blobs = await read_blobs(self.path, sha, wanted)
        loaded: dict[str, PackageFacts | None] = {}
        for p in paths:
            defines = tuple(
                parse_assignments(text) for d in defines_paths[p]
                if (text := _text(blobs[d])) is not None
            )
            spec = _text(blobs[f"{p}/spec"])
            loaded[p] = PackageFacts(p, defines, parse_assignments(spec or "")) if defines else None
        return loaded

    async def _subpackage_owners(self, sha: str) -> Mapping[str, str]:
        """PKGNAME of every split sub-package -> its package directory."""
        cached = self._subpackages.get(sha)
        if cached is not None:
            return cached
        owners: dict[str, str] = {}
        for path, line in await grep_lines(
            self.path, sha, r"^[[:space:]]*PKGNAME=", _SUBPACKAGE_DEFINES
        ):
            name = parse_assignments(line).get("PKGNAME")
            if name:
                owners.setdefault(name, path.rsplit("/", 2)[0])
        _remember(self._subpackages, sha, owners)
        return owners


def _text(blob: bytes | None) -> str | None:
    return None if blob is None else blob.decode(errors="replace")


def _remember(cache: OrderedDict[str, _V], key: str, value: _V) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
