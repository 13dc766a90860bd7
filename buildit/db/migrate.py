"""Forward-only numbered SQL migrations, applied under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from buildit.db import Database, queries

_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("buildit.db").joinpath("migrations").iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, got {versions}")
    return found


async def migrate(db: Database) -> list[str]:
    """Apply what is missing; returns the names applied. Safe to run concurrently."""
    migrations = load_migrations()
    return await db.run(
        queries.apply_migrations, [(m.version, m.name, m.sql) for m in migrations]
    )
