"""Decisions about a packages tree, free of I/O.

Given what the tree says about the requested packages (their ``defines`` and ``spec``
variables), decide which architectures to build and what each job needs. The git side
lives in :mod:`buildit.abbs.tree`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from buildit.domain import NOARCH, Requirements
from buildit.errors import Unprocessable

# Autobuild4's sets/arch_groups.json: FAIL_ARCH may name these groups as well as
# architectures (`!(mainline)` builds on the mainline architectures only).
AUTOBUILD_ARCH_GROUPS: Mapping[str, tuple[str, ...]] = {
    "mainline": ("amd64", "arm64", "loongarch64", "loongarch64_nosimd", "loongson3",
                 "ppc64el", "riscv64"),
    "mainline_tier1": ("amd64", "arm64", "loongarch64", "loongarch64_nosimd"),
    "mainline_tier2": ("loongson3", "ppc64el", "riscv64"),
    "arm": ("armv4", "armv5te", "armv6hf", "armv7hf", "arm64"),
    "ocaml_native": ("amd64", "arm64", "ppc64el"),
    "retro": ("alpha", "armv4", "armv5te", "armv6hf", "armv7hf", "i486", "ia64",
              "loongson2f", "m68k", "powerpc", "ppc64"),
    "optenv": ("optenv32",),
    "64bit": ("alpha", "amd64", "arm64", "ia64", "loongarch64", "loongarch64_nosimd",
              "loongson3", "mips64r6el", "ppc64el", "riscv64", "loongson2f", "ppc64"),
    "32bit": ("armv4", "armv6hf", "armv7hf", "i486", "m68k", "powerpc"),
}

GROUPS_DIR = "groups"

_Number = TypeVar("_Number", int, float)


@dataclass(frozen=True)
class TreePlan:
    """What a pipeline builds, decided from the tree at one commit."""

    packages: list[str]  # requested packages, groups expanded, `:modifier` suffixes kept
    archs: list[str]  # the archs given, or derived from the tree
    requirements: dict[str, Requirements]  # per arch: the maximum over the packages
    warnings: list[str] = field(default_factory=list)  # shown on the pipeline page


@dataclass(frozen=True)
class PackageFacts:
    """What the tree says about one package directory ``<section>/<name>``."""

    path: str
    defines: tuple[Mapping[str, str], ...]  # one per (sub-)package
    spec: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


# -- requested names ------------------------------------------------------------------


def split_modifier(package: str) -> tuple[str, str]:
    """``"llvm:+stage2"`` -> ``("llvm", ":+stage2")``; the modifier is kept for the build."""
    name, colon, modifier = package.partition(":")
    return name, colon + modifier


def requested_groups(packages: Iterable[str]) -> list[str]:
    """The ``groups/<name>`` files a request needs, as tree paths."""
    out: list[str] = []
    for package in packages:
        name, _ = split_modifier(package)
        if name.startswith(GROUPS_DIR + "/") and name not in out:
            out.append(name)
    return out


def parse_group_file(text: str) -> list[str]:
    """One package per line (``name`` or ``section/name``); blanks and ``#`` comments skipped."""
    entries: list[str] = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.append(entry)
    return entries


def expand_groups(packages: Sequence[str], groups: Mapping[str, str | None]) -> list[str]:
    """Replace each ``groups/<name>`` by the lines of that file (``None``: no such file).

    A modifier on a group (``groups/x:+stage2``) is carried to the entries that have none.
    Duplicates are dropped, first occurrence kept.
    """
    out: list[str] = []
    for package in packages:
        name, modifier = split_modifier(package)
        if not name.startswith(GROUPS_DIR + "/"):
            entries = [package]
        else:
            text = groups.get(name)
            if text is None:
                raise Unprocessable(f"unknown package group {name!r}: no such file in the tree")
            entries = parse_group_file(text)
            if not entries:
                raise Unprocessable(f"package group {name!r} lists no packages")
            entries = [e if ":" in e else e + modifier for e in entries]
        out.extend(e for e in entries if e not in out)
    return out


@dataclass(frozen=True)
class TreeIndex:
    """The package directories ``<section>/<name>`` of one commit, by name."""

    by_name: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> TreeIndex:
        by_name: dict[str, list[str]] = {}
        for path in paths:
            section, _, name = path.partition("/")
            if section and name and "/" not in name:
                by_name.setdefault(name, []).append(path)
        return cls({name: tuple(sorted(found)) for name, found in by_name.items()})

    def candidates(self, lookup: str) -> tuple[str, ...]:
        """Directories that may hold the package ``name`` or ``section/name``."""
        section, slash, name = lookup.rpartition("/")
        if not slash:
            return self.by_name.get(lookup, ())
        return (lookup,) if lookup in self.by_name.get(name, ()) and section else ()


def section_dirs(top_level: Iterable[tuple[str, str]]) -> list[str]:
    """From ``(type, name)`` entries of the root tree: the directories that hold packages."""
    return sorted(
        name for kind, name in top_level
        if kind == "tree" and name != GROUPS_DIR and not name.startswith(".")
    )


# -- FAIL_ARCH ------------------------------------------------------------------------

_ARCH_NAME = r"[0-9a-z_-]+"
_STRICT_RE = re.compile(rf"(?P<op>[!@])\((?P<names>{_ARCH_NAME}(?:\|{_ARCH_NAME})*)\)")
_LEGACY_GROUP_RE = re.compile(rf"\((?P<names>{_ARCH_NAME}(?:\|{_ARCH_NAME})*)\)")
_LEGACY_NEGATION_RE = re.compile(rf"!(?P<names>{_ARCH_NAME})")
_BARE_RE = re.compile(_ARCH_NAME)


@dataclass(frozen=True)
class FailArch:
    """A parsed ``FAIL_ARCH`` (bash extglob, as ACBS reads it).

    ``@(a|b)`` and a bare ``a`` fail on the names listed; ``!(a|b)`` fails everywhere
    but there. A name is an architecture or an Autobuild arch group; the whole name
    must match. ``strict`` is False for forms older ACBS took but the current one
    rejects (``(a|b)``, ``!a``).
    """

    names: tuple[str, ...]
    negated: bool
    strict: bool = True

    def fails_on(self, arch: str, arch_groups: Mapping[str, Collection[str]]) -> bool:
        known_as = {arch} | {group for group, members in arch_groups.items() if arch in members}
        listed = any(name in known_as for name in self.names)
        return listed != self.negated


def parse_fail_arch(expr: str) -> FailArch:
    """Raise ``ValueError`` for an expression ACBS cannot read."""
    expr = expr.strip()
    if match := _STRICT_RE.fullmatch(expr):
        return FailArch(tuple(match["names"].split("|")), negated=match["op"] == "!")
    if _BARE_RE.fullmatch(expr):
        return FailArch((expr,), negated=False)
    if match := _LEGACY_GROUP_RE.fullmatch(expr):
        return FailArch(tuple(match["names"].split("|")), negated=False, strict=False)
    if match := _LEGACY_NEGATION_RE.fullmatch(expr):
        return FailArch((match["names"],), negated=True, strict=False)
    raise ValueError(f"FAIL_ARCH {expr!r} is not @(a|b), !(a|b) or a single name")


# -- ENVREQ ---------------------------------------------------------------------------

_GIB = 2**30
_GB = 10**9
_INT4_MAX = 2**31 - 1
_INT8_MAX = 2**63 - 1
# key -> (unit, whole number?, largest value the jobs table holds)
_ENVREQ_KEYS: Mapping[str, tuple[int, bool, float]] = {
    "core": (1, True, _INT4_MAX),
    "total_mem": (_GIB, True, _INT8_MAX),
    "total_mem_per_core": (_GIB, False, math.inf),
    "disk": (_GB, True, _INT8_MAX),
}


def parse_envreq(value: str) -> tuple[Requirements, list[str]]:
    """``"core=16 total_mem=32 disk=100"`` -> requirements, and problems found.

    Keys: ``core`` (cores), ``total_mem`` and ``total_mem_per_core`` (GiB), ``disk``
    (GB, 10^9 bytes). A key given twice takes the larger value; 0 is no minimum.
    Unknown keys and bad or too large values are reported, not fatal.
    """
    found: dict[str, float] = {}
    problems: list[str] = []
    for item in value.split():
        key, eq, raw = item.partition("=")
        if not eq:
            problems.append(f"{item!r} is not key=value")
            continue
        if key not in _ENVREQ_KEYS:
            problems.append(f"unknown key {key!r}")
            continue
        unit, whole, maximum = _ENVREQ_KEYS[key]
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            problems.append(f"{key}={raw!r} is not a non-negative number")
            continue
        scaled = number * unit
        if math.isfinite(scaled) and whole:
            scaled = math.ceil(scaled)
        if not math.isfinite(scaled) or scaled > maximum:
            problems.append(f"{key}={raw!r} is too large")
            continue
        found[key] = max(found.get(key, 0), scaled)

    def minimum(key: str) -> float | None:
        return found.get(key) or None  # 0: no minimum (the jobs table wants > 0)

    cores, mem, disk = minimum("core"), minimum("total_mem"), minimum("disk")
    requirements = Requirements(
        min_cores=int(cores) if cores is not None else None,
        min_total_mem=int(mem) if mem is not None else None,
        min_total_mem_per_core=minimum("total_mem_per_core"),
        min_disk=int(disk) if disk is not None else None,
    )
    return requirements, problems


def envreq_variable(spec: Mapping[str, str], arch: str) -> str | None:
    """``ENVREQ__<ARCH>`` overrides ``ENVREQ`` for that arch."""
    specific = f"ENVREQ__{arch.upper()}"
    if specific in spec:
        return specific
    return "ENVREQ" if "ENVREQ" in spec else None


def max_requirements(requirements: Iterable[Requirements]) -> Requirements:
    """The field-wise maximum; ``None`` where no package sets a minimum."""
    items = list(requirements)
    return Requirements(
        min_cores=_biggest(r.min_cores for r in items),
        min_total_mem=_biggest(r.min_total_mem for r in items),
        min_total_mem_per_core=_biggest(r.min_total_mem_per_core for r in items),
        min_disk=_biggest(r.min_disk for r in items),
    )


def _biggest(values: Iterable[_Number | None]) -> _Number | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


# -- the plan -------------------------------------------------------------------------


def build_plan(
    packages: Sequence[str],
    facts: Sequence[PackageFacts],
    archs: Sequence[str] | None,
    *,
    known_archs: Sequence[str],
    arch_groups: Mapping[str, Collection[str]] = AUTOBUILD_ARCH_GROUPS,
) -> TreePlan:
    """Decide archs and requirements for ``packages`` (already expanded and found)."""
    warnings: list[str] = []
    fail_archs = {f.path: _fail_archs(f, warnings) for f in facts}
    if archs is None:
        chosen = _derive_archs(facts, fail_archs, known_archs, arch_groups)
    else:
        chosen = list(archs)
        for f in facts:
            for arch in chosen:
                if arch != NOARCH and _excludes(fail_archs[f.path], arch, arch_groups):
                    warnings.append(f"{f.name}: FAIL_ARCH excludes {arch}; ACBS will skip it there")
    requirements = _requirements(facts, chosen, warnings)
    return TreePlan(list(packages), chosen, requirements, list(dict.fromkeys(warnings)))


def _fail_archs(package: PackageFacts, warnings: list[str]) -> list[FailArch]:
    out: list[FailArch] = []
    for defines in package.defines:
        expr = defines.get("FAIL_ARCH", "").strip()
        if not expr:
            continue
        try:
            pattern = parse_fail_arch(expr)
        except ValueError as exc:
            warnings.append(f"{package.name}: {exc}; ignored here, ACBS will refuse it")
            continue
        if not pattern.strict:
            warnings.append(
                f"{package.name}: FAIL_ARCH {expr!r} is an old form current ACBS rejects;"
                " write @(…) or !(…)"
            )
        out.append(pattern)
    return out


def _excludes(
    patterns: Iterable[FailArch], arch: str, arch_groups: Mapping[str, Collection[str]]
) -> bool:
    """FAIL_ARCH of any (sub-)package excludes the whole package."""
    return any(p.fails_on(arch, arch_groups) for p in patterns)


def is_noarch(package: PackageFacts) -> bool:
    """Noarch only when every (sub-)package says ``ABHOST=noarch``."""
    return bool(package.defines) and all(d.get("ABHOST") == NOARCH for d in package.defines)


def _derive_archs(
    facts: Sequence[PackageFacts],
    fail_archs: Mapping[str, Sequence[FailArch]],
    known_archs: Sequence[str],
    arch_groups: Mapping[str, Collection[str]],
) -> list[str]:
    """The known archs where at least one package can be built; ``noarch`` alone if all are.

    Like today's BuildIt: an arch is built when FAIL_ARCH leaves at least one of the
    (not noarch) packages to build there, since ACBS skips a package whose FAIL_ARCH
    excludes the arch it runs on; it is dropped only when FAIL_ARCH excludes it for
    every such package. Noarch packages build on any arch and do not count.
    """
    if facts and all(is_noarch(f) for f in facts):
        return [NOARCH]
    buildable = [f for f in facts if not is_noarch(f)]
    excluded: dict[str, list[str]] = {
        arch: [f.name for f in buildable if _excludes(fail_archs[f.path], arch, arch_groups)]
        for arch in known_archs
    }
    archs = [a for a in known_archs if len(excluded[a]) < len(buildable)]
    if not archs:
        reasons = "; ".join(f"{arch}: {', '.join(excluded[arch])}" for arch in known_archs)
        raise Unprocessable(
            f"no architecture can build any of these packages (FAIL_ARCH excludes {reasons});"
            " name the archs"
        )
    return archs


def _requirements(
    facts: Sequence[PackageFacts], archs: Sequence[str], warnings: list[str]
) -> dict[str, Requirements]:
    per_package: list[dict[str, Requirements]] = []
    for f in facts:
        parsed: dict[str, Requirements] = {}
        for key, value in f.spec.items():
            if key == "ENVREQ" or key.startswith("ENVREQ__"):
                parsed[key], problems = parse_envreq(value)
                warnings.extend(f"{f.name}: {key}: {p}; ignored" for p in problems)
        chosen: dict[str, Requirements] = {}
        for arch in archs:
            variable = envreq_variable(f.spec, arch)
            chosen[arch] = parsed[variable] if variable else Requirements()
        per_package.append(chosen)
    return {arch: max_requirements(p[arch] for p in per_package) for arch in archs}
