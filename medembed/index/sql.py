"""The one SQL-literal helper of the index layer (Lance / LanceDB filter strings).

As LanceDB's ``lancedb.util.value_to_sql``: a string literal is single-quoted with every ``'`` doubled.
Filters on ids are built here and nowhere else (``index.sync``, ``index.search``, ``index.writer``).
"""

from __future__ import annotations

from collections.abc import Iterable


def sql_literal(value: str | int | float | bool | None) -> str:
    """``value`` as a SQL literal: strings quoted (``it's`` -> ``'it''s'``), numbers as written, None as NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def in_filter(column: str, values: Iterable[str]) -> str:
    """``column IN ('a', 'b''c', ...)``."""
    return f"{column} IN (" + ", ".join(sql_literal(v) for v in values) + ")"
