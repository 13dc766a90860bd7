"""The figures of a bench run: one flat JSON object, a table, and the targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Targets (issue #8). Ratios are to a ceiling measured in the same run, same server.
HEARTBEAT_VS_PING = 0.8
IDLE_POLL_VS_PING = 0.8
ASSIGN_P50_MS = 5.0
ASSIGN_P99_MS = 25.0
E2E_VS_HEALTH = 0.3
LONGPOLL_WORKERS = 2000
LONGPOLL_RSS_MB = 200.0
HISTORY_RATIO = 1.25

REQUIRED_KEYS = (
    "ping_rps",
    "health_rps",
    "heartbeat_rps",
    "idle_poll_rps",
    "assign_p50_ms",
    "assign_p99_ms",
    "e2e_jobs_per_s",
    "longpoll_workers",
    "longpoll_rss_mb",
    "history_claim_ratio",
    "history_list_ratio",
)


def targets(f: dict[str, Any]) -> dict[str, bool]:
    """Which targets the figures meet (the long-poll count is the bench's own size)."""
    return {
        "heartbeat": f["heartbeat_rps"] >= HEARTBEAT_VS_PING * f["ping_rps"],
        "idle_poll": f["idle_poll_rps"] >= IDLE_POLL_VS_PING * f["ping_rps"],
        "assign_p50": f["assign_p50_ms"] <= ASSIGN_P50_MS,
        "assign_p99": f["assign_p99_ms"] <= ASSIGN_P99_MS,
        "e2e": f["e2e_jobs_per_s"] >= E2E_VS_HEALTH * f["health_rps"],
        "longpoll": f["longpoll_workers"] >= f["longpoll_target"]
        and f["longpoll_rss_mb"] <= LONGPOLL_RSS_MB,
        "history_claim": f["history_claim_ratio"] <= HISTORY_RATIO,
        "history_list": f["history_list_ratio"] <= HISTORY_RATIO,
    }


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    ceiling: str = ""
    ratio: str = ""
    target: str = ""
    met: str = ""


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def rows(f: dict[str, Any]) -> list[Row]:
    met = {k: ("yes" if v else "NO") for k, v in f["targets"].items()}
    ping, health = f["ping_rps"], f["health_rps"]
    out = [
        Row("GET /api/ping (no database)", f"{_n(ping)} /s", _cpu(f, "ping"), "", "ceiling"),
        Row("GET /api/health (one query)", f"{_n(health)} /s", _cpu(f, "health"), "",
            "ceiling"),
        Row(f"heartbeats, {_n(f['heartbeat_workers'])} workers",
            f"{_n(f['heartbeat_rps'])} /s", f"ping {_n(ping)} /s",
            f"{f['heartbeat_rps'] / ping:.2f}", f">= {HEARTBEAT_VS_PING} x ping",
            met["heartbeat"]),
        Row("  server CPU per heartbeat", "", _cpu(f, "heartbeat"),
            _ratio(f, "ping", "heartbeat")),
        Row("  database calls / heartbeat", f"{f['heartbeat_db_calls_per_request']:.4f}",
            "", "", "no write per heartbeat"),
        Row("idle polls (nothing runnable)", f"{_n(f['idle_poll_rps'])} /s",
            f"ping {_n(ping)} /s", f"{f['idle_poll_rps'] / ping:.2f}",
            f">= {IDLE_POLL_VS_PING} x ping", met["idle_poll"]),
        Row("  server CPU per idle poll", "", _cpu(f, "idle_poll"),
            _ratio(f, "ping", "idle_poll")),
        Row("  database calls / idle poll",
            f"{f['idle_poll_db_calls_per_request']:.4f}", "", "", "no query per poll"),
        Row(f"assignment p50, {f['assign_workers']} waiting", f"{f['assign_p50_ms']:.2f} ms",
            "", "", f"<= {ASSIGN_P50_MS:g} ms", met["assign_p50"]),
        Row(f"assignment p99, {f['assign_samples']} jobs", f"{f['assign_p99_ms']:.2f} ms",
            "", "", f"<= {ASSIGN_P99_MS:g} ms", met["assign_p99"]),
        Row("  of which the create request, p50", f"{f['assign_create_p50_ms']:.2f} ms"),
        Row(f"jobs done end to end, {f['e2e_workers']} workers",
            f"{_n(f['e2e_jobs_per_s'])} /s", f"health {_n(health)} /s",
            f"{f['e2e_jobs_per_s'] / health:.2f}", f">= {E2E_VS_HEALTH} x health", met["e2e"]),
        Row("  server CPU per job", "", f"{f['e2e_cpu_us_per_job'] / 1000:.1f} ms",
            f"{f['health_cpu_us'] / f['e2e_cpu_us_per_job']:.2f}", "(health CPU / job CPU)"),
        Row("  database calls per job", f"{f['e2e_db_calls_per_job']:.2f}", "", "",
            "(create, claim, result, token)"),
        Row("workers held in long poll", _n(f["longpoll_workers"]), "", "",
            f"{_n(f['longpoll_target'])}", met["longpoll"]),
        Row("  server RSS while holding them", f"{f['longpoll_rss_mb']:.0f} MB",
            f"before {f['idle_rss_mb']:.0f}, fresh {f['fresh_rss_mb']:.0f} MB", "",
            f"<= {LONGPOLL_RSS_MB:g} MB", met["longpoll"]),
        Row(f"claim, {_n(f['history_jobs'])}-job history", f"{f['history_claim_ms']:.2f} ms",
            f"empty {f['history_empty_claim_ms']:.2f} ms", f"{f['history_claim_ratio']:.2f}",
            f"<= {HISTORY_RATIO} x empty", met["history_claim"]),
        Row("/api/pipeline/list page 1", f"{f['history_pipeline_list_ms']:.2f} ms",
            f"empty {f['history_empty_pipeline_list_ms']:.2f} ms",
            f"{f['history_pipeline_list_ratio']:.2f}", f"<= {HISTORY_RATIO} x empty",
            met["history_list"]),
        Row("/api/job/list page 1", f"{f['history_job_list_ms']:.2f} ms",
            f"empty {f['history_empty_job_list_ms']:.2f} ms",
            f"{f['history_job_list_ratio']:.2f}", f"<= {HISTORY_RATIO} x empty",
            met["history_list"]),
    ]
    return out


def _cpu(f: dict[str, Any], kind: str) -> str:
    return f"CPU {f[f'{kind}_cpu_us']:,.0f} us/req"


def _ratio(f: dict[str, Any], ceiling: str, kind: str) -> str:
    """Requests/s the CPU costs allow, as a fraction of the ceiling's."""
    return f"{f[f'{ceiling}_cpu_us'] / f[f'{kind}_cpu_us']:.2f}"


def table(f: dict[str, Any]) -> str:
    header = Row("figure", "value", "ceiling (same run)", "ratio", "target", "met")
    all_rows = [header, *rows(f)]
    widths = [max(len(getattr(r, col)) for r in all_rows)
              for col in ("figure", "value", "ceiling", "ratio", "target", "met")]
    lines = [
        f"buildit bench ({f['mode']}): server pid {f['server_pid']}, database "
        f"{f['database']}, {f['cpus']} CPUs, {f['seconds']:.0f} s",
    ]
    for i, r in enumerate(all_rows):
        cells = (r.figure.ljust(widths[0]), r.value.rjust(widths[1]), r.ceiling.ljust(widths[2]),
                 r.ratio.rjust(widths[3]), r.target.ljust(widths[4]), r.met)
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
