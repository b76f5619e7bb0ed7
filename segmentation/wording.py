"""Small pieces of the sentences reports say to the analyst, shared by every report."""

from __future__ import annotations

from collections.abc import Sequence


def counted(n: int, noun: str) -> str:
    """'1 customer', '1,204 customers': a number with its noun, plural when not one."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def listed(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]
