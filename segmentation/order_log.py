"""From an order log (one row per order line) to the customer table the pipeline segments.

Most shops export orders, not customers. This module finds the order log's columns, parses its
dates, nets returns and cancellations, and aggregates per customer in Spark: Recency,
Frequency, Spend, Tenure and AvgOrderValue. Only small aggregates (a sample of dates, the
report's counts) ever reach the driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from segmentation.columns import CUSTOMER_ID_ALIASES, detect_mapping, match_roles, normalise
from segmentation.errors import InputError
from segmentation.order_dates import (
    TYPED_DATES,
    DateFormat,
    choose_date_format,
    date_expr,
    date_sample,
    unparseable_examples,
)
from segmentation.order_report import DominantId, TransactionReport
from segmentation.reading import (
    customer_id_expr,
    id_as_written,
    number_expr,
    text_expr,
)
from segmentation.spark_engine import unpersist
from segmentation.wording import listed

AMOUNT_ENDINGS = ("amount", "value", "total", "revenue", "sales")


ROLE_LABELS = {
    "customer_id": "customer id",
    "order_id": "order id",
    "date": "order date",
    "amount": "line amount",
    "quantity": "quantity",
    "unit_price": "unit price",
}


ALIASES = {
    # No bare "id": in an order log that is usually the line's or the order's own id.
    "customer_id": tuple(name for name in CUSTOMER_ID_ALIASES if name != "id"),
    "order_id": (
        "invoiceno",
        "invoice",
        "invoiceid",
        "invoicenumber",
        "orderid",
        "order",
        "orderno",
        "ordernumber",
        "transactionid",
        "transactionno",
        "receiptid",
        "receiptno",
        "receipt",
        "billno",
    ),
    "date": (
        "invoicedate",
        "orderdate",
        "date",
        "timestamp",
        "datetime",
        "transactiondate",
        "purchasedate",
        "saledate",
        "invoicedatetime",
        "orderdatetime",
        "createdat",
        "orderedat",
        "purchasedat",
        "time",
    ),
    "amount": (
        "amount",
        "total",
        "revenue",
        "linetotal",
        "lineamount",
        "totalprice",
        "totalamount",
        "netamount",
        "sales",
        "subtotal",
        "value",
    ),
    "quantity": ("quantity", "qty", "units", "quantityordered", "numitems", "itemcount"),
    "unit_price": ("unitprice", "price", "priceeach", "itemprice", "priceperunit", "unitcost"),
}


CANCELLED_PREFIX_SHARE = 0.5  # above this share of "C…" order ids, "C" is a naming scheme
# One id is named as probably no customer at all when it holds this share of the lines or the
# spend and this many times the next customer's, among at least this many customers.
DOMINANT_SHARE = 0.05
DOMINANT_TIMES = 5.0
DOMINANT_MIN_CUSTOMERS = 20
# Text columns of a log that describe the product, not the customer: never carried to customers.
PRODUCT_COLUMNS = (
    "description",
    "stockcode",
    "productcode",
    "product",
    "productname",
    "productid",
    "item",
    "itemname",
    "itemcode",
    "itemid",
    "sku",
    "barcode",
    "ean",
    "upc",
)
MAX_LINE_ATTRIBUTE_VALUES = 50  # as many as a category to profile segments by
CUSTOMER_COLUMNS = ("CustomerID", "Recency", "Frequency", "Spend", "Tenure", "AvgOrderValue")


def detect_roles(
    columns: Sequence[str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Which column of an order log plays which role, from aliases; the analyst's overrides win.

    Without an exact alias, a column whose name ends in an amount word ('dollar_value',
    'order_total', 'net_sales') is the line amount.
    """
    roles = match_roles(columns, ALIASES, ROLE_LABELS, overrides, kind="an order-log")
    if "amount" not in roles and not {"quantity", "unit_price"} <= roles.keys():
        taken = set(roles.values())
        found = [c for c in columns if c not in taken and normalise(c).endswith(AMOUNT_ENDINGS)]
        if len(found) == 1:
            roles["amount"] = found[0]
    return roles


def _is_order_log(roles: Mapping[str, str]) -> bool:
    has_amount = "amount" in roles or {"quantity", "unit_price"} <= roles.keys()
    return "customer_id" in roles and "date" in roles and has_amount


def detect_input_kind(columns: Sequence[str]) -> str:
    """'transactions' for an order log (customer id, date, amount), else 'customers'.

    A table that already has Recency or Frequency columns is a customer table even if it also
    holds a date and an amount (a last-order date, a total).
    """
    customer_roles = detect_mapping(columns)
    if "recency" in customer_roles or "frequency" in customer_roles:
        return "customers"
    return "transactions" if _is_order_log(detect_roles(columns)) else "customers"


def _require_roles(roles: Mapping[str, str], columns: Sequence[str]) -> None:
    shown = ", ".join(columns[:12]) + (" …" if len(columns) > 12 else "")
    needs = []
    if "customer_id" not in roles:
        needs.append("a customer id (e.g. CustomerID)")
    if "date" not in roles:
        needs.append("an order date (e.g. InvoiceDate)")
    if "amount" not in roles and not {"quantity", "unit_price"} <= roles.keys():
        needs.append("a line amount (e.g. Amount) or a quantity and a unit price")
    if needs:
        raise InputError(
            f"The order log needs {', '.join(needs)}; none was recognised among: {shown}.",
            hint="Rename the columns or map them to these roles "
            "(command line: --map customer_id=..., date=..., amount=...).",
        )


def _cancelled_by_prefix(orders: Sequence[str]) -> bool:
    if not orders:
        return True
    prefixed = sum(1 for o in orders if o[:1] in ("C", "c"))
    return prefixed <= CANCELLED_PREFIX_SHARE * len(orders)


def _order_lines(
    df: DataFrame,
    roles: Mapping[str, str],
    date_format: DateFormat,
    by_prefix: bool,
    missing_ids: Sequence[str] = (),
) -> DataFrame:
    """One row per order line with the columns the aggregation needs, flags included.

    A line without a real customer id keeps its id as written (`missing_id`: '(blank)', 'N/A',
    '' …) and its value, so the report can say what was left out and how much it was worth.
    """
    customer = customer_id_expr(df, roles["customer_id"], missing_ids)
    order = text_expr(df, roles["order_id"]) if "order_id" in roles else F.lit(None).cast("string")
    day = date_expr(df, roles["date"], date_format)
    quantity = number_expr(df, roles["quantity"]) if "quantity" in roles else F.lit(None)
    if "amount" in roles:
        amount = number_expr(df, roles["amount"])
    else:
        amount = quantity * number_expr(df, roles["unit_price"])
    lines = df.select(
        customer.alias("customer"),
        F.when(customer.isNull(), id_as_written(df, roles["customer_id"])).alias("missing_id"),
        order.alias("order"),
        day.alias("day"),
        amount.cast("double").alias("amount"),
        quantity.cast("double").alias("quantity"),
    )
    cancelled = F.upper(F.substring("order", 1, 1)) == "C" if by_prefix else F.lit(False)
    cancelled = F.coalesce(cancelled, F.lit(False))
    is_return = cancelled | (F.col("amount") < 0) | F.coalesce(F.col("quantity") < 0, F.lit(False))
    has_customer = F.col("customer").isNotNull()
    readable = F.col("day").isNotNull() & F.col("amount").isNotNull()
    usable = has_customer & readable
    return lines.select(
        "customer",
        "missing_id",
        # Lines without an order id count as one order per customer and day.
        F.coalesce("order", F.col("day").cast("string")).alias("order"),
        "day",
        "amount",
        (has_customer & F.col("day").isNull()).alias("bad_date"),
        (has_customer & F.col("day").isNotNull() & F.col("amount").isNull()).alias("bad_amount"),
        usable.alias("usable"),
        (usable & is_return).alias("is_return"),
        (usable & cancelled).alias("cancelled"),
        # A line is a return or cancellation only when it says so: a free or fully discounted
        # item (amount 0) is a purchase with no spend.
        (usable & ~is_return).alias("purchase"),
        # What the line adds to spend: returns and cancellations subtract.
        F.when(readable, F.when(is_return, -F.abs("amount")).otherwise(F.col("amount"))).alias(
            "value"
        ),
    )


def _int_sum(flag: str) -> Column:
    return F.sum(F.col(flag).cast("int"))


def _per_customer(lines: DataFrame) -> DataFrame:
    """Aggregate order lines to orders, then orders to customers; lines without a real id form
    one row per id as written (customer null)."""
    orders = lines.groupBy("customer", "missing_id", "order").agg(
        F.count(F.lit(1)).alias("lines"),
        _int_sum("bad_date").alias("bad_dates"),
        _int_sum("bad_amount").alias("bad_amounts"),
        _int_sum("usable").alias("usable_lines"),
        _int_sum("is_return").alias("return_lines"),
        F.sum(F.when(F.col("is_return"), F.abs("amount"))).alias("return_value"),
        F.max(F.col("cancelled").cast("int")).alias("cancelled"),
        F.max(F.col("purchase").cast("int")).alias("purchased"),
        F.sum("value").alias("net"),
        F.sum(F.when(F.col("purchase"), F.col("amount"))).alias("gross"),
        F.min(F.when(F.col("purchase"), F.col("day"))).alias("first_purchase"),
        F.max(F.when(F.col("purchase"), F.col("day"))).alias("last_purchase"),
        F.min(F.when(F.col("usable"), F.col("day"))).alias("first_line"),
        F.max(F.when(F.col("usable"), F.col("day"))).alias("last_line"),
    )
    sums = ("lines", "bad_dates", "bad_amounts", "usable_lines", "return_lines", "return_value")
    return orders.groupBy("customer", "missing_id").agg(
        *[F.sum(c).alias(c) for c in sums],
        F.sum("cancelled").alias("cancelled_invoices"),
        F.sum("purchased").alias("frequency"),
        F.sum("net").alias("net"),
        F.sum("gross").alias("gross"),
        F.min("first_purchase").alias("first_purchase"),
        F.max("last_purchase").alias("last_purchase"),
        F.min("first_line").alias("first_line"),
        F.max("last_line").alias("last_line"),
    )


def _summary(per_customer: DataFrame) -> dict:
    """The report's counts in one small aggregate over the per-customer table."""
    known = F.col("customer").isNotNull()
    active = known & (F.col("usable_lines") > 0)
    buyer = active & (F.col("frequency") > 0)
    returns_only = active & (F.col("frequency") == 0)

    def total(column: str, where: Column = known) -> Column:
        return F.coalesce(F.sum(F.when(where, F.col(column))), F.lit(0))

    row = per_customer.agg(
        total("lines", F.lit(True)).alias("rows_in"),
        total("lines", ~known).alias("rows_without_customer"),
        total("bad_dates").alias("unparseable_dates"),
        total("bad_amounts").alias("unreadable_amounts"),
        total("return_lines").alias("return_lines"),
        total("return_value").alias("return_value"),
        total("cancelled_invoices").alias("cancelled_invoices"),
        F.count_if(buyer).alias("customers"),
        F.count_if(returns_only).alias("returns_only_customers"),
        total("net", returns_only).alias("returns_only_value"),
        F.min(F.when(known, F.col("first_line"))).alias("first_date"),
        F.max(F.when(known, F.col("last_line"))).alias("last_date"),
        total("net", F.lit(True)).alias("spend_in"),
        F.collect_list(F.when(~known, F.struct("missing_id", "lines", "net"))).alias("missing"),
        F.count_if(known).alias("ids"),
        *_largest(known, "lines"),
        *_largest(known, "net"),
    ).collect()[0]
    return row.asDict()


def _largest(known: Column, column: str) -> list[Column]:
    """The id with the largest `column` (lines or net spend) and that value."""
    value = F.when(known, F.col(column))
    return [
        F.max_by("customer", value).alias(f"top_{column}_id"),
        F.max(value).alias(f"top_{column}"),
    ]


def _dominant_id(per_customer: DataFrame, summary: dict) -> DominantId | None:
    """The id holding an implausible share of the lines or the spend, if any: at least
    DOMINANT_SHARE of them and DOMINANT_TIMES the next customer's, among at least
    DOMINANT_MIN_CUSTOMERS customers. A real shop's best customer is a few times the next one and
    a fraction of a percent of the total; a till or guest account holds a large part of it."""
    if summary["ids"] < DOMINANT_MIN_CUSTOMERS:
        return None
    totals = {
        "lines": summary["rows_in"] - summary["rows_without_customer"],
        "net": summary["spend_in"] - _missing_spend(summary),
    }
    known = F.col("customer").isNotNull()
    for column, total in totals.items():
        top, largest = summary[f"top_{column}_id"], summary[f"top_{column}"]
        if top is None or _share(largest, total) < DOMINANT_SHARE:
            continue
        others = per_customer.where(known & (F.col("customer") != top))
        second = others.agg(F.max(column)).collect()[0][0] or 0
        if second <= 0 or largest >= DOMINANT_TIMES * second:
            row = per_customer.where(F.col("customer") == top).select("lines", "net").first()
            assert row is not None  # the id was found in this table
            return DominantId(
                customer_id=str(top),
                lines=int(row["lines"]),
                line_share=_share(row["lines"], totals["lines"]),
                spend_share=_share(row["net"], totals["net"]),
                times_next=round(largest / second, 1) if second > 0 else None,
                basis="order lines" if column == "lines" else "spend",
            )
    return None


def _share(part: float | None, total: float) -> float:
    """`part` as a share of `total` (0 when the total is not positive)."""
    return round(float(part or 0) / total, 4) if total > 0 else 0.0


def _missing_spend(summary: dict) -> float:
    """The net spend of the lines without a real customer id."""
    return sum(float(m["net"] or 0) for m in summary["missing"])


def _missing_ids(missing: Sequence[Row]) -> dict[str, int]:
    """Order lines per id as written that was read as missing, the most frequent first."""
    counts: dict[str, int] = {}
    for row in missing:
        counts[row["missing_id"]] = counts.get(row["missing_id"], 0) + int(row["lines"])
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _report(
    df: DataFrame, roles: Mapping[str, str], fmt: DateFormat, by_prefix: bool, summary: dict
) -> TransactionReport:
    """The report from the summary counts; refuses a log with no usable purchase."""
    examples = (
        unparseable_examples(df, roles, fmt)
        if summary["unparseable_dates"] and fmt is not TYPED_DATES
        else []
    )
    report = TransactionReport(
        rows_in=int(summary["rows_in"]),
        rows_without_customer=int(summary["rows_without_customer"]),
        missing_ids=_missing_ids(summary["missing"]),
        missing_id_spend_share=_share(_missing_spend(summary), float(summary["spend_in"])),
        unparseable_dates=int(summary["unparseable_dates"]),
        unparseable_examples=examples,
        unreadable_amounts=int(summary["unreadable_amounts"]),
        return_lines=int(summary["return_lines"]),
        return_value=round(float(summary["return_value"]), 2),
        cancelled_invoices=int(summary["cancelled_invoices"]),
        returns_only_customers=int(summary["returns_only_customers"]),
        returns_only_value=round(abs(float(summary["returns_only_value"])), 2),
        customers=int(summary["customers"]),
        first_date=summary["first_date"],
        last_date=summary["last_date"],
        reference_date=None,
        date_format=fmt.name,
        roles=dict(roles),
        frequency_basis="orders" if "order_id" in roles else "days",
        cancellations_by_prefix=by_prefix or "order_id" not in roles,
    )
    if report.customers == 0:
        problems = " ".join(report.messages())
        raise InputError(
            "No customer has a purchase with a readable date and amount in this order log. "
            + problems
        )
    return report


def _reference_day(report: TransactionReport, chosen: date | None) -> date:
    """The day Recency counts to: the analyst's, never before the last order, else the day
    after the last order."""
    last = report.last_date
    assert last is not None  # some customer has a purchase with a readable date
    reference = chosen or last + timedelta(days=1)
    if reference < last:
        raise InputError(
            f"The reference date {reference.isoformat()} is before the last order in the "
            f"log ({last.isoformat()}); recency would be negative.",
            hint=f"Choose {last.isoformat()} or later, or leave it empty for the day after "
            "the last order.",
        )
    return reference


def _line_attributes(df: DataFrame, roles: Mapping[str, str]) -> list[str]:
    """The log's columns that describe the customer's lines (Country, channel, store): text
    (mostly not numbers) with 2 to MAX_LINE_ATTRIBUTE_VALUES distinct values, not a role and not
    the product (its description or stock code). One pass over the log."""
    taken = {c.lower() for c in (*roles.values(), *CUSTOMER_COLUMNS)}
    candidates = [
        c
        for c in df.columns
        if c.lower() not in taken and not normalise(c).endswith(PRODUCT_COLUMNS)
    ]
    if not candidates:
        return []
    counts = df.agg(
        *[
            aggregate
            for i, column in enumerate(candidates)
            for aggregate in (
                F.approx_count_distinct(text_expr(df, column)).alias(f"d{i}"),
                F.count(text_expr(df, column)).alias(f"t{i}"),
                F.count(number_expr(df, column)).alias(f"n{i}"),
            )
        ]
    ).first()
    assert counts is not None  # an aggregate has one row
    return [
        column
        for i, column in enumerate(candidates)
        if 1 < counts[f"d{i}"] <= MAX_LINE_ATTRIBUTE_VALUES
        and counts[f"n{i}"] * 2 < counts[f"t{i}"]
    ]


def _with_line_attributes(
    customers: DataFrame, df: DataFrame, customer: Column, attributes: Sequence[str]
) -> DataFrame:
    """Each customer's most frequent value of each line attribute, ties broken by the
    alphabetically first value, so a run gives the same answer every time."""
    for column in attributes:
        value = text_expr(df, column)
        counted = (
            df.select(customer.alias("__customer"), value.alias("__value"))
            .where("__customer IS NOT NULL AND __value IS NOT NULL")
            .groupBy("__customer", "__value")
            .count()
        )
        # The smallest (-count, value): the most lines, then the first value alphabetically.
        mode = counted.groupBy("__customer").agg(
            F.min_by("__value", F.struct(-F.col("count"), F.col("__value"))).alias(column)
        )
        customers = customers.join(
            mode, customers["CustomerID"] == mode["__customer"], "left"
        ).drop("__customer")
    return customers


def _customers(per_customer: DataFrame, reference: date) -> DataFrame:
    """One row per buying customer with the RFM figures, tenure and average order value."""
    at = F.lit(reference)
    # In cents as a decimal, so an average ending in half a cent always rounds up.
    cents = F.round("gross", 2).cast("decimal(24,2)")
    average = F.round(F.try_divide(cents, F.col("frequency")), 2).cast("double")
    return per_customer.where(
        F.col("customer").isNotNull() & (F.col("usable_lines") > 0) & (F.col("frequency") > 0)
    ).select(
        F.col("customer").alias("CustomerID"),
        F.datediff(at, "last_purchase").cast("int").alias("Recency"),
        F.col("frequency").cast("int").alias("Frequency"),
        F.round("net", 2).alias("Spend"),
        F.datediff(at, "first_purchase").cast("int").alias("Tenure"),
        average.alias("AvgOrderValue"),
    )


def build_customer_table(
    df: DataFrame,
    roles: Mapping[str, str] | None = None,
    reference_date: date | None = None,
    date_format: str | None = None,
    *,
    missing_ids: Sequence[str] = (),
    cache: bool = False,
) -> tuple[DataFrame, TransactionReport]:
    """Turn an order log into one row per customer: CustomerID, Recency, Frequency, Spend,
    Tenure, AvgOrderValue; and a report of what was dropped, netted and assumed.

    `roles` overrides the detected columns (see detect_roles). Returns and cancellations (a
    negative amount or quantity, or an order id starting with "C") are netted: they reduce
    Spend but never count as purchases. Recency and Tenure are days from the last and first
    purchase to `reference_date` (default: the day after the latest date in the log).
    Frequency counts distinct order ids with a purchase (distinct purchase days without an
    order id); AvgOrderValue is the gross purchase amount per order. Customers with only
    returns are left out and counted in the report. Lines whose id is missing, a placeholder
    ('(blank)', 'N/A', 'guest', …) or one of `missing_ids` are left out and counted by id as
    written; one id holding an implausible share of the log is named (report.dominant_id).

    With `cache=True` the returned table is cached (the caller unpersists it), so the log is
    read once for both the report and everything after it; otherwise it stays lazy.
    """
    roles = detect_roles(df.columns, roles)
    _require_roles(roles, df.columns)
    if isinstance(reference_date, datetime):
        reference_date = reference_date.date()

    sample, orders = date_sample(df, roles)
    fmt = choose_date_format(df, roles, date_format, sample)
    by_prefix = "order_id" in roles and _cancelled_by_prefix(orders)
    per_customer = _per_customer(_order_lines(df, roles, fmt, by_prefix, missing_ids))
    if cache:
        per_customer = per_customer.cache()
    try:
        summary = _summary(per_customer)
        report = _report(df, roles, fmt, by_prefix, summary)
        report.dominant_id = _dominant_id(per_customer, summary)
        report.reference_date = _reference_day(report, reference_date)
        attributes = _line_attributes(df, roles)
        customers = _with_line_attributes(
            _customers(per_customer, report.reference_date),
            df,
            customer_id_expr(df, roles["customer_id"], missing_ids),
            attributes,
        )
        if attributes:
            named = listed([f"'{c}'" for c in attributes])
            report.notes.append(
                f"Carried from the order lines to each customer: {named}, as the "
                "customer's most frequent value (on a tie, the alphabetically first)."
            )
        if cache:
            # Cache the small result, fill it from the per-customer cache, then free that.
            customers = customers.cache()
            customers.count()
    finally:
        if cache:
            unpersist([per_customer])
    return customers, report


TRANSACTION_FEATURES = ("Recency", "Frequency", "Spend")
