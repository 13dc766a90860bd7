"""Reading the ACBS build summary out of ``ciel build`` output. Pure, no I/O.

ACBS ends a build with (``acbs/utils.py``, ``print_build_timings``)::

    ========================================
        ACBS Build Failed
    ========================================

    Failed package:
    zlib (amd64 @ 1.3.1-1)          2m 11s

    Package(s) built:
    readline (amd64 @ 8.2.13-0)     1m 10s

    Package(s) not built due to previous build failure:
    curl (amd64 @ 8.11.1-0)
    bash (amd64 @ 5.2.37-0)

Sections may or may not be separated by blank lines; a blank line ends a section.
Lines are ``name (arch @ version)`` with an optional timing column. The parser is
fed line by line as ciel prints (``SummaryParser.feed``), so a build printing
gigabytes is never held in memory; when several summaries appear, the last one wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_PACKAGE_RE = re.compile(
    r"^(?P<name>[^\s()]+)\s+\((?P<arch>[^\s()@]+)\s*@\s*(?P<version>[^\s()]+)\s*\)"
)
_BANNER = "=" * 10


@dataclass(frozen=True)
class PackageRef:
    name: str
    arch: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class BuildSummary:
    found: bool = False
    """Whether ciel printed an ACBS summary at all."""
    successful: bool | None = None
    """``ACBS Build Successful`` (True) or ``Failed`` (False), None when not found."""
    built: tuple[PackageRef, ...] = ()
    failed: PackageRef | None = None
    skipped: tuple[PackageRef, ...] = ()

    @property
    def successful_packages(self) -> list[str]:
        return [p.name for p in self.built]

    @property
    def failed_package(self) -> str | None:
        return self.failed.name if self.failed else None

    @property
    def skipped_packages(self) -> list[str]:
        return [p.name for p in self.skipped]

    @property
    def package_versions(self) -> dict[str, str]:
        """Version of every package the summary names (built, failed and not built)."""
        refs = [*self.built, *([self.failed] if self.failed else []), *self.skipped]
        return {p.name: p.version for p in refs if p.version}


class _Section(Enum):
    NONE = "none"
    FAILED = "failed"
    BUILT = "built"
    SKIPPED = "skipped"


_HEADERS = (
    ("Failed package:", _Section.FAILED),
    ("Package(s) built:", _Section.BUILT),
    ("Package(s) not built due to previous build failure:", _Section.SKIPPED),
)


@dataclass
class SummaryParser:
    """Incremental parser: ``feed`` each output line, then read ``summary``."""

    _banner_seen: bool = False
    _in_summary: bool = False
    _successful: bool | None = None
    _section: _Section = _Section.NONE
    _built: list[PackageRef] = field(default_factory=list)
    _failed: PackageRef | None = None
    _skipped: list[PackageRef] = field(default_factory=list)

    def feed(self, raw: str) -> None:
        line = _ANSI_RE.sub("", raw).rstrip("\r\n")
        stripped = line.strip()
        if stripped.startswith(_BANNER) and not stripped.strip("="):
            self._banner_seen = True
            return
        if self._banner_seen and stripped.startswith("ACBS Build"):
            # A (new) summary starts: forget anything seen before.
            self._in_summary = True
            self._successful = not stripped.endswith("Failed")
            self._section = _Section.NONE
            self._built, self._failed, self._skipped = [], None, []
            return
        if not self._in_summary:
            return
        if not stripped:
            self._section = _Section.NONE
            return
        for header, section in _HEADERS:
            if stripped.startswith(header):
                self._section = section
                return
        if self._section is _Section.NONE:
            return
        ref = parse_package_line(stripped)
        if ref is None:
            return
        if self._section is _Section.BUILT:
            self._built.append(ref)
        elif self._section is _Section.FAILED:
            self._failed = ref
        else:
            self._skipped.append(ref)

    @property
    def summary(self) -> BuildSummary:
        if not self._in_summary:
            return BuildSummary()
        return BuildSummary(
            found=True,
            successful=self._successful,
            built=tuple(self._built),
            failed=self._failed,
            skipped=tuple(self._skipped),
        )


def parse_package_line(line: str) -> PackageRef | None:
    """``bash (amd64 @ 5.2.15-0)   4m 2s`` -> PackageRef("bash", "amd64", "5.2.15-0")."""
    match = _PACKAGE_RE.match(line.strip())
    if match:
        return PackageRef(match["name"], match["arch"], match["version"])
    # Whatever the shape, today's worker takes the first word of a line with "(".
    if "(" in line:
        name = line.strip().split()[0]
        if name and "(" not in name:
            return PackageRef(name)
    return None


def parse_summary(output: str | Iterable[str]) -> BuildSummary:
    """Parse a whole output (a string or its lines)."""
    parser = SummaryParser()
    lines = output.splitlines() if isinstance(output, str) else output
    for line in lines:
        parser.feed(line)
    return parser.summary
