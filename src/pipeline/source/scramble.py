"""`make verify`'s scramble variant: SQLite hands unordered SELECTs back in reverse.

Any code that leans on an unspecified row order then gets another order, and
the snapshot's bytes would move; the snapshot query's ORDER BY is what counts.
PostgreSQL has no such switch (and no promised order either).
"""

from __future__ import annotations

import os

import sqlalchemy as sa

from src.pipeline import config
from src.pipeline.source.url import SourceError

PRAGMA = "reverse_unordered_selects"


def requested() -> bool:
    """Whether this run should hand unordered SELECTs another order (`make verify`'s scramble variant)."""
    return os.environ.get(config.SCRAMBLE_ENV) == "1"


def effect(backend: str) -> str:
    """What the scramble does on `backend`, for the stage's log (the variant reached the stage)."""
    if backend == "sqlite":
        return "SQLite returns unordered rows in reverse"
    return f"no effect on {backend}: only SQLite can reverse unordered rows"


def scramble_engine(engine: sa.Engine) -> None:
    """Turn the scramble on for every connection `engine` makes to SQLite."""
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _reverse(connection, _record):
            connection.execute(f"PRAGMA {PRAGMA} = ON")


def scramble_arrow(connection) -> None:
    """Turn the scramble on for one ADBC SQLite connection, and check that SQLite took it."""
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA {PRAGMA} = ON")
        cursor.execute(f"PRAGMA {PRAGMA}")
        if cursor.fetchone() != (1,):
            raise SourceError(f"SQLite did not turn on {PRAGMA}: cannot scramble")
