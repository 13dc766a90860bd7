"""Pure functions of the web UI, tested without an event loop."""

from __future__ import annotations

from datetime import date

import pytest

from buildit.domain import Requirements
from buildit.errors import BadRequest
from buildit.linking import LinkTokenError, make_link_token, read_link_token
from buildit.web.ansi import AnsiConverter, ansi_to_html
from buildit.web.charts import daily_chart, durations_chart, nice_ceiling
from buildit.web.formatting import duration, github_links, http_url, safe_next, size
from buildit.web.pending import LiveWorker, QueueFacts, pending_reason

GiB = 2**30


def facts(arch: str = "riscv64", *, ahead: int = 0, workers: tuple[LiveWorker, ...] = (),
          **req: int) -> QueueFacts:
    return QueueFacts(arch=arch, requirements=Requirements(**req), jobs_ahead=ahead,
                      workers=workers)


def idle(cores: int = 16, memory: int = 32 * GiB, disk: int = 500 * 10**9) -> LiveWorker:
    return LiveWorker(cores, memory, disk, busy=False)


def busy(cores: int = 16, memory: int = 32 * GiB) -> LiveWorker:
    return LiveWorker(cores, memory, 500 * 10**9, busy=True)


def test_pending_reason_no_live_worker() -> None:
    assert pending_reason(facts("riscv64")) == "no live worker for riscv64"
    assert pending_reason(facts("noarch")) == (
        "no live worker for amd64 (noarch jobs are built by amd64 workers)")


def test_pending_reason_requirements_nobody_meets() -> None:
    reason = pending_reason(facts(workers=(idle(16), busy(8)), min_cores=32))
    assert reason == ("waiting for a worker with at least 32 cores "
                      "(2 live riscv64 workers, none qualifies)")
    reason = pending_reason(facts(workers=(idle(64, 16 * GiB), idle(8, 128 * GiB)),
                                  min_cores=32, min_total_mem=64 * GiB))
    assert reason.startswith(
        "waiting for a worker with at least 32 cores and at least 64 GiB of memory (2 live")
    reason = pending_reason(facts(workers=(idle(disk=10**9),), min_disk=100 * 10**9))
    assert "at least 100 GB of free disk" in reason and "1 live riscv64 worker," in reason


def test_pending_reason_queue_and_busy_workers() -> None:
    assert pending_reason(facts(ahead=3, workers=(idle(),))) == (
        "3 jobs ahead in the riscv64 queue")
    assert pending_reason(facts(ahead=1, workers=(busy(), busy()))) == (
        "1 job ahead in the riscv64 queue; all 2 suitable riscv64 workers are busy")
    assert pending_reason(facts(workers=(busy(),))) == (
        "the only suitable riscv64 worker is busy")
    # a busy big worker and an idle small one: the job needs the big one
    assert pending_reason(facts(workers=(busy(64), idle(4)), min_cores=32)) == (
        "the only suitable riscv64 worker is busy")
    assert pending_reason(facts(workers=(idle(),))).startswith("next in line")


def test_ansi_to_html_escapes_and_colours() -> None:
    html = ansi_to_html("\x1b[1;31m<b>error</b>\x1b[0m & done\r\n")
    assert html == '<span class="fg1 b">&lt;b&gt;error&lt;/b&gt;</span> &amp; done\n'
    # 256 colours and truecolour map to the 16 basic ones; other escapes vanish
    assert ansi_to_html("\x1b[38;5;196mred\x1b[39m") == '<span class="fg1">red</span>'
    assert ansi_to_html("\x1b[38;2;0;0;0mk\x1b[m") == '<span class="fg0">k</span>'
    assert ansi_to_html("a\x1b[2Kb\x1b]0;title\x07c\x07\x00") == "abc"
    # the style carries over chunks
    conv = AnsiConverter()
    assert conv.convert("\x1b[32mgreen") == '<span class="fg2">green</span>'
    assert conv.convert(" still\x1b[0m no") == '<span class="fg2"> still</span> no'


def test_link_tokens() -> None:
    token = make_link_token("s3cret", 12345, now=1_000_000.0)
    assert read_link_token("s3cret", token, now=1_000_100.0) == 12345
    assert make_link_token("s3cret", -100123, 5.0) != token
    assert read_link_token("s3cret", make_link_token("s3cret", -100123, 5.0), 6.0) == -100123
    with pytest.raises(LinkTokenError) as expired:
        read_link_token("s3cret", token, now=1_000_901.0)
    assert expired.value.expired and isinstance(expired.value, BadRequest)
    assert read_link_token("s3cret", token, now=1_000_000.0 + 1800, max_age=3600) == 12345
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "", "x" * 600, "abc.def"):
        with pytest.raises(LinkTokenError) as forged:
            read_link_token("s3cret", bad, now=1_000_000.0)
        assert not forged.value.expired
    with pytest.raises(LinkTokenError):
        read_link_token("other", token, now=1_000_000.0)
    with pytest.raises(LinkTokenError):  # from the future
        read_link_token("s3cret", token, now=1_000_000.0 - 3600)


def test_formatting() -> None:
    assert duration(5) == "5 s" and duration(125) == "2 min 5 s" and duration(3600) == "1 h"
    assert duration(90061) == "1 d 1 h" and duration(None) == "\u2013"
    assert size(512) == "512 B" and size(32 * GiB) == "32.0 GiB" and size(500 * 10**9) \
        == "466 GiB"
    for evil in ("javascript:alert(1)", " javascript:alert(1)", "\tJaVaScRiPt:x", "data:x,1"):
        assert http_url(evil) is None, evil
    assert http_url("https://x/log") == "https://x/log"
    assert safe_next("//evil.example/") == "/" and safe_next("https://evil") == "/"
    assert safe_next("/\\evil") == "/" and safe_next("/jobs/3?x=1") == "/jobs/3?x=1"
    links = github_links("https://github.com", "AOSC-Dev/aosc-os-abbs", "topic/a b", "a" * 40, 7)
    assert links == {
        "branch": "https://github.com/AOSC-Dev/aosc-os-abbs/tree/topic/a%20b",
        "commit": "https://github.com/AOSC-Dev/aosc-os-abbs/commit/" + "a" * 40,
        "pr": "https://github.com/AOSC-Dev/aosc-os-abbs/pull/7",
    }


def test_charts() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 250)] == [1, 1, 5, 10, 20, 500]
    days = [date(2024, 1, d) for d in range(1, 15)]
    chart = daily_chart(days, [(days[0], "amd64", 3), (days[0], "arm64", 1),
                               (days[13], "<evil>", 2)], ("amd64", "arm64"))
    assert not chart.empty and len(chart.rects) == 3
    assert chart.legend[:2] == [("series0", "amd64"), ("series1", "arm64")]
    assert chart.table_rows[0] == ["2024-01-01", "3", "1", "0", "4"]
    # the stacked bars of one day sit on each other, the tallest day fills the plot
    first, second = chart.rects[0], chart.rects[1]
    assert first.y == pytest.approx(second.y + second.height)
    assert daily_chart(days, [], ("amd64",)).empty
    bars = durations_chart([("amd64", 10, 60.0, 600.0)], ("amd64",))
    assert bars.table_rows == [["amd64", "10", "1 min", "10 min"]]
    assert durations_chart([], ("amd64",)).empty
