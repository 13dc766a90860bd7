"""Rules written twice, in Python and in SQL, agree (on a real PostgreSQL)."""

from __future__ import annotations

import itertools

import orjson

from buildit import domain
from buildit.db import dedicated_connection

STATUSES = ("created", "running", "success", "failed", "error")


async def test_pipeline_status_sql_agrees_with_python(aio_loop: None, database_url: str) -> None:
    mixes = [list(m) for n in range(0, 4) for m in itertools.product(STATUSES, repeat=n)]
    expression = domain.PIPELINE_STATUS_SQL.format(statuses="m.s")
    async with dedicated_connection(database_url) as sql:
        answers = await sql.fetchval(
            f"""SELECT array_agg({expression} ORDER BY m.i)
                FROM (SELECT i, (SELECT coalesce(array_agg(x), '{{}}'::text[])
                                 FROM jsonb_array_elements_text(j) AS x) AS s
                      FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(j, i)) AS m""",
            orjson.dumps(mixes).decode(),
        )
    expected = [domain.pipeline_status(m) for m in mixes]
    assert len(answers) == len(mixes) == 156
    assert answers == expected
    assert {"error", "failed", "success", "running"} == set(expected)
