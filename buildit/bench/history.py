"""Seeding a long history straight in SQL (``INSERT ... SELECT generate_series``).

The rows look like real finished work: pipelines of five archs, one job per arch
(one in twenty pipelines has a failed job), one attempt per job. Statuses obey the
schema's checks and the pipeline status rules, so the server reads them as it reads
its own.
"""

from __future__ import annotations

from buildit.db import DedicatedConnection

ARCHS_PER_PIPELINE = 5

_PIPELINES = """
INSERT INTO pipelines (git_branch, git_sha, packages, archs, source, github_pr, status,
                       created_at, finished_at)
SELECT CASE WHEN g % 10 = 0 THEN 'stable' ELSE 'topic-' || (g % 997) END,
       '0123456789abcdef0123456789abcdef01234567',
       'pkg-' || (g % 5000),
       'amd64,arm64,loongarch64,ppc64el,riscv64',
       CASE WHEN g % 7 = 0 THEN 'github' ELSE 'api' END,
       CASE WHEN g % 7 = 0 THEN g END,
       CASE WHEN g % 20 = 0 THEN 'failed' ELSE 'success' END,
       now() - make_interval(secs => (($1::int - g) * 60 + 600)::float8),
       now() - make_interval(secs => (($1::int - g) * 60)::float8)
FROM generate_series(1, $1::int) AS g
"""

_JOBS = """
INSERT INTO jobs (pipeline_id, arch, packages, status, attempt, build_success,
                  pushpkg_success, successful_packages, failed_package, skipped_packages,
                  log_url, elapsed_secs, created_at, finished_at)
SELECT p.id, a.arch, p.packages,
       CASE WHEN p.status = 'failed' AND a.n = 1 THEN 'failed' ELSE 'success' END,
       1,
       NOT (p.status = 'failed' AND a.n = 1),
       true,
       CASE WHEN p.status = 'failed' AND a.n = 1 THEN '{}'::text[] ELSE ARRAY[p.packages] END,
       CASE WHEN p.status = 'failed' AND a.n = 1 THEN p.packages END,
       '{}'::text[],
       'https://buildit.example/logs/' || p.id || '/' || a.arch,
       600,
       p.created_at,
       p.finished_at
FROM pipelines p
CROSS JOIN (VALUES (1, 'amd64'), (2, 'arm64'), (3, 'loongarch64'), (4, 'ppc64el'),
                   (5, 'riscv64')) AS a (n, arch)
WHERE p.id > $1::int8
ORDER BY p.id, a.n
"""

_ATTEMPTS = """
INSERT INTO job_attempts (job_id, attempt, token, started_at, ended_at, outcome, log_size)
SELECT id, 1, gen_random_uuid(), created_at, finished_at, status, 4096
FROM jobs WHERE id > $1::int8 ORDER BY id
"""


async def seed(sql: DedicatedConnection, pipelines: int) -> int:
    """Add ``pipelines`` finished pipelines (and 5 jobs each); returns the jobs added."""
    last_pipeline = int(await sql.fetchval("SELECT coalesce(max(id), 0) FROM pipelines"))
    last_job = int(await sql.fetchval("SELECT coalesce(max(id), 0) FROM jobs"))
    await sql.fetchval(_PIPELINES, pipelines)
    await sql.fetchval(_JOBS, last_pipeline)
    await sql.fetchval(_ATTEMPTS, last_job)
    return int(await sql.fetchval("SELECT count(*) FROM jobs WHERE id > $1::int8", last_job))


async def forget(sql: DedicatedConnection) -> None:
    """An empty history: no pipelines, jobs or attempts (workers and users stay)."""
    await sql.fetchval("TRUNCATE pipelines, jobs, job_attempts, packages CASCADE")


async def settle(sql: DedicatedConnection) -> None:
    """Statistics and visibility maps up to date, as autovacuum leaves them in time."""
    await sql.fetchval("VACUUM ANALYZE pipelines")
    await sql.fetchval("VACUUM ANALYZE jobs")
    await sql.fetchval("VACUUM ANALYZE job_attempts")
