"""Spark SQL text: names and literals, for expressions written as text.

Expressions are written as SQL text where they are large: the JVM parses a whole expression in
one call, where building it from Column objects costs a Python-to-JVM call per operation (a
second and more for a sweep's batch or a wide table's validation).
"""

from __future__ import annotations


def quoted(column: str) -> str:
    """A column name."""
    return "`" + column.replace("`", "``") + "`"


def number(value: float | None) -> str:
    """A double that reads back as the same double (NULL for None)."""
    return "CAST(NULL AS DOUBLE)" if value is None else f"({float(value)!r}D)"


def string(value: str) -> str:
    """A string literal holding exactly `value`."""
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 32 else {"\\": "\\\\", "'": "\\'"}.get(ch, ch)
        for ch in value
    )
    return f"'{escaped}'"
