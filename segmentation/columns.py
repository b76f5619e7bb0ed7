"""Which column plays which role (customer id, Age, Spend, Recency, Frequency): aliases,
detection, the analyst's overrides and the closest names to offer when one is missing. Customer
tables and order logs both match their columns here."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from segmentation.errors import InputError

ROLE_LABELS = {
    "customer_id": "CustomerID",
    "age": "Age",
    "spend": "Spend",
    "recency": "Recency",
    "frequency": "Frequency",
}
DEFAULT_FEATURE_ROLES = ("age", "spend", "recency", "frequency")
# Names of a customer id column, most telling first (an order log shares them, except "id").
CUSTOMER_ID_ALIASES = (
    "customerid",
    "customer",
    "id",
    "clientid",
    "client",
    "userid",
    "custid",
    "customerno",
    "customernumber",
    "customerkey",
    "memberid",
    "accountid",
    "buyerid",
    "shopperid",
)
ALIASES = {
    "customer_id": CUSTOMER_ID_ALIASES,
    "age": ("age", "customerage", "ageyears", "years"),
    "spend": (
        "spend",
        "totalspend",
        "monetary",
        "amount",
        "totalamount",
        "revenue",
        "sales",
        "totalspent",
        "spent",
        "spending",
        "totalsales",
        "monetaryvalue",
        "totalrevenue",
        "totalpurchase",
        "purchaseamount",
        "value",
        "ltv",
        "clv",
    ),
    "recency": (
        "recency",
        "dayssincelastorder",
        "dayssincelastpurchase",
        "lastpurchasedays",
        "recencydays",
        "dayssincepurchase",
        "daysinactive",
        "lastorderdays",
    ),
    "frequency": (
        "frequency",
        "orders",
        "numpurchases",
        "purchases",
        "ordercount",
        "numorders",
        "norders",
        "nbrorders",
        "purchasecount",
        "transactions",
        "numtransactions",
        "totalorders",
        "orderfrequency",
        "visits",
    ),
}


def normalise(name: str) -> str:
    """Compare column names ignoring case, spaces and punctuation ('Total Spend' = 'total_spend')."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_roles(
    columns: Sequence[str],
    aliases: Mapping[str, Sequence[str]],
    labels: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
    kind: str = "a column",
) -> dict[str, str]:
    """Which column plays which role, from normalised aliases; the analyst's overrides win."""
    by_norm: dict[str, str] = {}
    for column in columns:
        by_norm.setdefault(normalise(column), column)
    mapping: dict[str, str] = {}
    for role, names in aliases.items():
        for alias in names:
            found = by_norm.get(alias)
            if found and found not in mapping.values():
                mapping[role] = found
                break
    for role, column in (overrides or {}).items():
        if role not in labels:
            raise InputError(f"'{role}' is not {kind} role; use one of {', '.join(labels)}.")
        if column and column not in columns:
            raise InputError(f"The column '{column}' chosen for {labels[role]} is not in the file.")
        mapping = {r: c for r, c in mapping.items() if c != column and r != role}
        if column:
            mapping[role] = column
    return mapping


def detect_mapping(
    columns: Sequence[str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Which column of a customer table plays which role (CustomerID, Age, Spend, ...)."""
    return match_roles(columns, ALIASES, ROLE_LABELS, overrides)


def closest_columns(
    wanted: str, columns: Sequence[str], n: int = 3, taken: Sequence[str] = ()
) -> list[str]:
    """Column names that look like `wanted`, to offer when a column is missing.

    Columns in `taken` (already playing another role, such as the customer id) are not offered.
    """
    norm = {normalise(c): c for c in columns if c not in taken}
    keys = list(norm)
    candidates = set(difflib.get_close_matches(normalise(wanted), keys, n=n, cutoff=0.6))
    role = next(
        (r for r, label in ROLE_LABELS.items() if normalise(label) == normalise(wanted)), ""
    )
    for alias in ALIASES.get(role, ()):
        candidates.update(difflib.get_close_matches(alias, keys, n=n, cutoff=0.75))
        candidates.update(k for k in keys if len(alias) >= 4 and alias in k)
    ranked = sorted(
        candidates,
        key=lambda k: -difflib.SequenceMatcher(None, normalise(wanted), k).ratio(),
    )
    return [norm[k] for k in ranked[:n]]
