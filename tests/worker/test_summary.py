"""The ACBS summary parser, on our own samples and (when present) on real ciel output."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildit.worker.summary import (
    PackageRef,
    SummaryParser,
    parse_package_line,
    parse_summary,
)

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ciel"


def shared_fixture(name: str) -> str:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared ciel fixtures not available ({path} is missing on a fresh clone)")
    return path.read_text()


def test_successful_build_from_our_sample() -> None:
    summary = parse_summary((DATA / "ciel-success.txt").read_text())
    assert summary.found and summary.successful is True
    assert summary.successful_packages == ["libfoo", "foo-utils"]
    assert summary.failed_package is None
    assert summary.skipped_packages == []
    assert summary.package_versions == {"libfoo": "2.4.1-2", "foo-utils": "1:0.9-0"}


def test_failed_build_from_our_sample() -> None:
    summary = parse_summary((DATA / "ciel-failed.txt").read_text())
    assert summary.found and summary.successful is False
    assert summary.failed == PackageRef("foo-core", "arm64", "3.0-1")
    assert summary.successful_packages == ["libfoo"]
    assert summary.skipped_packages == ["foo-utils", "foo-docs"]
    assert summary.skipped[1] == PackageRef("foo-docs", "noarch", "3.0-0")
    assert summary.package_versions == {
        "libfoo": "2.4.1-2", "foo-core": "3.0-1", "foo-utils": "1:0.9-0", "foo-docs": "3.0-0",
    }


def test_real_ciel_success_output() -> None:
    summary = parse_summary(shared_fixture("build-success.txt"))
    assert summary.found and summary.successful is True
    assert summary.successful_packages == ["readline", "bash"]
    assert summary.failed_package is None
    assert summary.skipped_packages == []
    assert summary.package_versions == {"readline": "8.2.13-0", "bash": "5.2.37-0"}


def test_real_ciel_failed_output() -> None:
    summary = parse_summary(shared_fixture("build-failed.txt"))
    assert summary.found and summary.successful is False
    assert summary.failed_package == "zlib"
    assert summary.successful_packages == ["readline"]
    assert summary.skipped_packages == ["curl", "bash"]
    assert summary.package_versions["zlib"] == "1.3.1-1"
    assert summary.package_versions["curl"] == "8.11.1-0"


def test_acbs_layout_with_tabs_blank_lines_colours_and_crlf() -> None:
    # print_build_timings: format_column pads with spaces and joins columns with tabs,
    # and print() adds a blank line after each section.
    text = (
        "\x1b[32m[INFO]:\x1b[0m    Build finished: a (amd64 @ 1.0-0)\r\n"
        "\r\n"
        "========================================\r\n"
        "    ACBS Build Failed\r\n"
        "========================================\r\n"
        "\r\n"
        "Failed package:\r\n"
        "b (amd64 @ 2.0-1)  \t1m 3s    \r\n"
        "\r\n"
        "Package(s) built:\r\n"
        "a (amd64 @ 1.0-0)  \t0m 2s    \r\n"
        "\r\n"
        "Package(s) not built due to previous build failure:\r\n"
        "c (amd64 @ 3.0-0)\r\n"
        "\r\n"
    )
    summary = parse_summary(text)
    assert (summary.successful_packages, summary.failed_package, summary.skipped_packages) == (
        ["a"], "b", ["c"],
    )
    assert summary.package_versions == {"a": "1.0-0", "b": "2.0-1", "c": "3.0-0"}


def test_no_summary_is_reported_as_not_found() -> None:
    summary = parse_summary("[ERROR]:   could not start container\nbash (amd64 @ 1-0)\n")
    assert not summary.found
    assert summary.successful is None
    assert summary.successful_packages == [] and summary.failed_package is None


def test_package_lines_outside_sections_and_before_the_banner_are_ignored() -> None:
    text = (
        "Package(s) built:\nbogus (amd64 @ 0-0)\n\n"
        "========================================\n    ACBS Build Successful\n"
        "========================================\n\nsome note (not a package)\n"
        "Package(s) built:\nreal (amd64 @ 1-0)\n\nafter (amd64 @ 9-9)\n"
    )
    summary = parse_summary(text)
    assert summary.successful_packages == ["real"]


def test_the_last_summary_wins_and_feeding_line_by_line_matches() -> None:
    first = (DATA / "ciel-failed.txt").read_text()
    second = (DATA / "ciel-success.txt").read_text()
    parser = SummaryParser()
    for line in (first + "\n" + second).splitlines(keepends=True):
        parser.feed(line)
    assert parser.summary == parse_summary(second)
    assert parser.summary.failed_package is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("bash (amd64 @ 5.2.15-0)", PackageRef("bash", "amd64", "5.2.15-0")),
        ("bash (amd64 @ 5.2.15-0)     4m 2s", PackageRef("bash", "amd64", "5.2.15-0")),
        ("gcc+libs (loongarch64_nosimd @ 1:13.2.0-3)",
         PackageRef("gcc+libs", "loongarch64_nosimd", "1:13.2.0-3")),
        ("odd (shape)", PackageRef("odd")),
        ("no parenthesis here", None),
    ],
)
def test_package_lines(line: str, expected: PackageRef | None) -> None:
    assert parse_package_line(line) == expected
