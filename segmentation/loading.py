"""From an uploaded file to the customer table a run segments: the file itself, or the customers
built from an order log (with an attribute table joined in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

from pyspark.sql import functions as F

from segmentation.customer_attributes import join_attributes
from segmentation.errors import InputError
from segmentation.order_log import build_customer_table, detect_input_kind
from segmentation.order_report import TransactionReport
from segmentation.reading import Table, read_table

INPUT_KINDS = ("auto", "customers", "transactions")


@dataclass(frozen=True)
class LoadOptions:
    """How an input becomes a customer table: what the file is and, for an order log, how its
    dates read, the day Recency counts to (ISO) and a customer attributes table to join; and
    ids that stand for no customer (a till or guest account), read as missing like '(blank)'."""

    input_kind: str = "auto"
    date_format: str | None = None
    reference_date: str | None = None
    attributes: str | None = None
    missing_ids: tuple[str, ...] = ()

    @property
    def reference_day(self) -> date | None:
        return date.fromisoformat(self.reference_date) if self.reference_date else None


def load_customer_table(
    spark,
    source: str,
    options: LoadOptions = LoadOptions(),
    roles: Mapping[str, str] | None = None,
    *,
    cache: bool = False,
) -> tuple[Table, TransactionReport | None]:
    """The customer table of an input: the file itself, or the one built from an order log
    (with an optional attributes table joined in). The report says how it was built (None for a
    customer table); it goes into the manifest and its messages into the validation report."""
    input_kind = options.input_kind
    if input_kind not in INPUT_KINDS:
        raise InputError(
            f"Input kind '{input_kind}' is unknown; use one of {', '.join(INPUT_KINDS)}."
        )
    # A customer table is checked for ragged rows in the same pass that reads it.
    table = read_table(spark, source, keep_malformed=True)
    kind = detect_input_kind(table.columns) if input_kind == "auto" else input_kind
    if kind == "customers":
        return replace(table, missing_ids=options.missing_ids), None
    log = table.df.select(*[F.col(f"`{c}`") for c in table.columns])
    customers, report = build_customer_table(
        log,
        roles,
        options.reference_day,
        options.date_format,
        missing_ids=options.missing_ids,
        cache=cache,
    )
    report.detected = input_kind == "auto"
    if options.attributes:
        customers, report.attributes = join_attributes(
            customers, read_table(spark, options.attributes).df, missing_ids=options.missing_ids
        )
    return Table(customers, table.path, table.format, unique_ids=True), report
