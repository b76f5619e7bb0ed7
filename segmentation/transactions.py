"""From an order log (one row per order line) to the customer table the pipeline segments.

Most shops export orders, not customers. This module finds the order log's columns, parses its
dates, nets returns and cancellations, and aggregates per customer in Spark: Recency,
Frequency, Spend, Tenure and AvgOrderValue. Only small aggregates (a sample of dates, the
report's counts) ever reach the driver.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segmentation.columns import CUSTOMER_ID_ALIASES, detect_mapping, match_roles, normalise
from segmentation.errors import InputError
from segmentation.reading import Table, missing_expr, number_expr, read_table
from segmentation.spark_engine import unpersist

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
DATE_SAMPLE_SIZE = 1000  # raw date strings collected to decide the format
EXAMPLES = 3
CANCELLED_PREFIX_SHARE = 0.5  # above this share of "C…" order ids, "C" is a naming scheme

_ISO = re.compile(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:$|[ T])")
_COMPACT = re.compile(r"^\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
_SLASHED = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})(?:$|[ T])")
_SLASHED_SPARK = r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})($|[ T])"
# Spark datetime patterns, after separators were unified to "/" (2-digit years read as 20xx).
_SPARK_PATTERNS = {
    "day-first": ("d/M/[yyyy][yy][ H:mm[:ss]]", "d/M/[yyyy][yy] h:mm[:ss] a"),
    "month-first": ("M/d/[yyyy][yy][ H:mm[:ss]]", "M/d/[yyyy][yy] h:mm[:ss] a"),
}


@dataclass(frozen=True)
class DateFormat:
    """How the order dates are written, as an analyst would name it."""

    name: str  # "iso", "yyyymmdd", "day-first", "month-first", or "date" (a typed column)
    example: str

    def describe(self) -> str:
        return f"{self.name} (e.g. {self.example})"


DATE_FORMATS = {
    "iso": DateFormat("iso", "2024-12-31 or 2024-12-31 18:05:00"),
    "yyyymmdd": DateFormat("yyyymmdd", "20241231"),
    "day-first": DateFormat("day-first", "31/12/2024, 31.12.2024 or 31-12-2024"),
    "month-first": DateFormat("month-first", "12/31/2024 or 12/31/2024 6:05 PM"),
}
_TYPED_DATES = DateFormat("date", "a date or timestamp column")


@dataclass
class TransactionReport:
    """What building the customer table did to the order lines, for the analyst and the manifest.

    Customers whose only lines in the log are returns or cancellations are left out and
    counted (`returns_only_customers`): with no purchase there is no recency, frequency or
    order value to segment on, and their negative spend would form a segment of its own.
    """

    rows_in: int
    rows_without_customer: int
    unparseable_dates: int
    unparseable_examples: list[str]
    unreadable_amounts: int
    return_lines: int
    return_value: float
    cancelled_invoices: int
    returns_only_customers: int
    returns_only_value: float
    customers: int
    first_date: date | None
    last_date: date | None
    reference_date: date | None
    date_format: str
    roles: dict[str, str]
    frequency_basis: str  # "orders" (distinct order ids) or "days" (distinct purchase days)
    cancellations_by_prefix: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form for the manifest."""
        data = asdict(self)
        for key in ("first_date", "last_date", "reference_date"):
            data[key] = data[key].isoformat() if data[key] else None
        data["messages"] = self.messages()
        return data

    def messages(self) -> list[str]:
        """Warnings and notes an analyst should read before trusting the customer table."""
        lines: list[str] = []
        if self.rows_without_customer:
            lines.append(
                f"{_count(self.rows_without_customer, 'order line')} "
                f"{_has(self.rows_without_customer)} no customer id (guest orders?) and "
                f"{_were(self.rows_without_customer)} left out."
            )
        if self.unparseable_dates:
            examples = ", ".join(self.unparseable_examples) or "empty values"
            column = self.roles.get("date", "date")
            lines.append(
                f"{_count(self.unparseable_dates, 'order line')} {_has(self.unparseable_dates)} "
                f"no readable date in '{column}' as {self.date_format} dates (e.g. {examples}); "
                f"{'they were' if self.unparseable_dates != 1 else 'it was'} left out. "
                "If most dates look like this, choose the date format yourself."
            )
        if self.unreadable_amounts:
            where = self.roles.get("amount") or (
                f"{self.roles.get('quantity')} × {self.roles.get('unit_price')}"
            )
            lines.append(
                f"{_count(self.unreadable_amounts, 'order line')} {_has(self.unreadable_amounts)} "
                f"no number in '{where}'; {_were(self.unreadable_amounts, 'they were', 'it was')} "
                "left out."
            )
        if self.return_lines:
            cancelled = (
                f", including {_count(self.cancelled_invoices, 'cancelled invoice')}"
                if self.cancelled_invoices
                else ""
            )
            lines.append(
                f"{_count(self.return_lines, 'return line')}{cancelled}, worth "
                f"{_money(self.return_value)} in total, {_were(self.return_lines)} subtracted "
                "from the customers' spend."
            )
        if self.returns_only_customers:
            lines.append(
                f"{_count(self.returns_only_customers, 'customer')} only returned or cancelled "
                f"goods in this period (worth {_money(self.returns_only_value)}) and "
                f"{_were(self.returns_only_customers)} left out: with no purchase there is no "
                "recency, frequency or order value to segment on."
            )
        if self.frequency_basis == "days":
            lines.append(
                "The log has no order id column, so Frequency counts the distinct days a customer "
                "bought something."
            )
        if not self.cancellations_by_prefix:
            lines.append(
                f"Most order ids in '{self.roles.get('order_id')}' start with 'C', so that prefix "
                "was not read as a cancellation; only negative quantities or amounts count as "
                "returns."
            )
        lines.extend(self.notes)
        if self.reference_date:
            lines.append(
                f"Recency and Tenure are days to {self.reference_date.isoformat()}; the orders run "
                f"from {_iso(self.first_date)} to {_iso(self.last_date)}."
            )
        return lines


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def _has(n: int) -> str:
    return "have" if n != 1 else "has"


def _were(n: int, plural: str = "were", singular: str = "was") -> str:
    return plural if n != 1 else singular


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _iso(day: date | None) -> str:
    return day.isoformat() if day else "–"


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


def _survey(values: Sequence[str]) -> tuple[str, list[str], list[str], list[str]]:
    """The most common date shape in `values`, plus day-first and month-first evidence."""
    shapes = {"iso": 0, "yyyymmdd": 0, "slashed": 0, "other": 0}
    day_first, month_first, others = [], [], []
    for value in values:
        if _ISO.match(value):
            shapes["iso"] += 1
        elif _COMPACT.match(value):
            shapes["yyyymmdd"] += 1
        elif found := _SLASHED.match(value):
            first, second = int(found.group(1)), int(found.group(2))
            if first > 31 or second > 31 or (first > 12 and second > 12):
                shapes["other"] += 1
                others.append(value)
                continue
            shapes["slashed"] += 1
            if first > 12:
                day_first.append(value)
            elif second > 12:
                month_first.append(value)
        else:
            shapes["other"] += 1
            others.append(value)
    shape = max(shapes, key=lambda s: shapes[s])
    return shape, day_first, month_first, others


def _choose_format_hint() -> str:
    return (
        "Choose the date format: day-first (31/12/2024) or month-first (12/31/2024); on the "
        "command line --date-format day-first or --date-format month-first."
    )


def detect_date_format(sample_values: Sequence[str]) -> DateFormat:
    """Decide how the dates are written from a sample of raw values; never guess day vs month.

    Slash (or dot, dash) dates whose day and month parts are all at most 12 could be either
    way round: that raises InputError asking the analyst to choose.
    """
    values = [str(v).strip() for v in sample_values if v is not None and str(v).strip()]
    if not values:
        raise InputError("The order date column has no values.")
    shape, day_first, month_first, others = _survey(values)
    if shape == "other":
        raise InputError(
            f"The order dates are not in a format this app reads (e.g. '{others[0][:40]}').",
            hint="Use ISO dates (2024-12-31), YYYYMMDD, day-first (31/12/2024) or month-first "
            "(12/31/2024) dates.",
        )
    if shape != "slashed":
        return DATE_FORMATS[shape]
    if day_first and month_first:
        raise InputError(
            f"The order dates mix day-first and month-first values (e.g. '{day_first[0]}' and "
            f"'{month_first[0]}').",
            hint=_choose_format_hint() + " Lines in the other format will be left out and counted.",
        )
    if day_first:
        return DATE_FORMATS["day-first"]
    if month_first:
        return DATE_FORMATS["month-first"]
    example = next(v for v in values if _SLASHED.match(v))
    raise InputError(
        f"The date format is ambiguous: in dates like '{example}' the day and the month could "
        "be either way round, and no date in the data has a part above 12 to tell.",
        hint=_choose_format_hint(),
    )


def _resolve_format(name: str) -> DateFormat:
    key = name.strip().lower().replace("_", "-")
    if key not in DATE_FORMATS:
        raise InputError(
            f"'{name}' is not a date format; use one of {', '.join(DATE_FORMATS)}.",
        )
    return DATE_FORMATS[key]


def _quoted(column: str) -> Column:
    return F.col(f"`{column}`")


def _is_typed_date(df: DataFrame, column: str) -> bool:
    return isinstance(df.schema[column].dataType, (T.DateType, T.TimestampType, T.TimestampNTZType))


def _text(df: DataFrame, column: str) -> Column:
    """The value as trimmed text, null when missing; whole numbers lose a trailing '.0'."""
    col = _quoted(column)
    data_type = df.schema[column].dataType
    if isinstance(data_type, (T.FloatType, T.DoubleType, T.DecimalType)):
        whole = col == F.floor(col)
        text = F.when(whole, col.try_cast("bigint").cast("string")).otherwise(col.cast("string"))
    else:
        text = F.trim(col.cast("string"))
    # Spreadsheets and pandas turn id 17850 into "17850.0"; it is the same customer. The
    # cheap test first: most values have no dot and skip the regular expression.
    text = F.when(text.contains("."), F.regexp_replace(text, r"^(\d+)\.0+$", "$1")).otherwise(text)
    return F.when(~missing_expr(df, column), text)


def customer_id_expr(df: DataFrame, column: str) -> Column:
    """A customer id as clean text (null when missing), the same in order logs and attributes."""
    return _text(df, column)


def date_expr(df: DataFrame, column: str, date_format: DateFormat) -> Column:
    """The order date (a Spark date; null when it does not parse in `date_format`)."""
    if _is_typed_date(df, column):
        return F.to_date(_quoted(column))
    text = _text(df, column)
    if date_format.name == "iso":
        stamp = F.try_to_timestamp(F.translate(text, "/", "-"))
    elif date_format.name == "yyyymmdd":
        stamp = F.try_to_timestamp(text, F.lit("yyyyMMdd[ HH:mm[:ss]]"))
    elif date_format.name in _SPARK_PATTERNS:
        clock24, clock12 = _SPARK_PATTERNS[date_format.name]
        unified = F.translate(text, ".-", "//")
        stamp = F.when(
            F.upper(unified).endswith("M"), F.try_to_timestamp(unified, F.lit(clock12))
        ).otherwise(F.try_to_timestamp(unified, F.lit(clock24)))
    else:
        raise ValueError(f"unknown date format {date_format.name!r}")
    return F.to_date(stamp)


def _date_sample(df: DataFrame, roles: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Up to DATE_SAMPLE_SIZE raw dates (with their order ids) from the start of the log."""
    date_text = _text(df, roles["date"]).alias("d")
    order_text = (
        _text(df, roles["order_id"]) if "order_id" in roles else F.lit(None).cast("string")
    ).alias("o")
    rows = df.select(date_text, order_text).where(F.col("d").isNotNull())
    found = rows.limit(DATE_SAMPLE_SIZE).collect()
    return [r["d"] for r in found], [r["o"] for r in found if r["o"]]


def _telling_dates(df: DataFrame, column: str) -> list[str]:
    """A few slash dates with a part above 12, wherever they are in the log."""
    text = _text(df, column)
    first = F.regexp_extract(text, _SLASHED_SPARK, 1).try_cast("int")
    second = F.regexp_extract(text, _SLASHED_SPARK, 2).try_cast("int")
    telling = text.rlike(_SLASHED_SPARK) & ((first > 12) | (second > 12))
    found = df.select(text.alias("d")).where(telling).limit(EXAMPLES).collect()
    return [r["d"] for r in found]


def _choose_date_format(
    df: DataFrame, roles: Mapping[str, str], date_format: str | None, sample: list[str]
) -> DateFormat:
    if _is_typed_date(df, roles["date"]):
        return _TYPED_DATES
    if date_format:
        return _resolve_format(date_format)
    values = [v for v in sample if v]
    shape, day_first, month_first, _ = _survey(values) if values else ("other", [], [], [])
    if shape == "slashed" and not day_first and not month_first:
        # The first rows of a log are often a single day; look further before calling it
        # ambiguous. Only this case pays for a scan, and it stops at the first telling date.
        values += _telling_dates(df, roles["date"])
    return detect_date_format(values)


def _cancelled_by_prefix(orders: Sequence[str]) -> bool:
    if not orders:
        return True
    prefixed = sum(1 for o in orders if o[:1] in ("C", "c"))
    return prefixed <= CANCELLED_PREFIX_SHARE * len(orders)


def _order_lines(
    df: DataFrame, roles: Mapping[str, str], date_format: DateFormat, by_prefix: bool
) -> DataFrame:
    """One row per order line with the columns the aggregation needs, flags included."""
    customer = customer_id_expr(df, roles["customer_id"])
    order = _text(df, roles["order_id"]) if "order_id" in roles else F.lit(None).cast("string")
    day = date_expr(df, roles["date"], date_format)
    quantity = number_expr(df, roles["quantity"]) if "quantity" in roles else F.lit(None)
    if "amount" in roles:
        amount = number_expr(df, roles["amount"])
    else:
        amount = quantity * number_expr(df, roles["unit_price"])
    lines = df.select(
        customer.alias("customer"),
        order.alias("order"),
        day.alias("day"),
        amount.cast("double").alias("amount"),
        quantity.cast("double").alias("quantity"),
    )
    cancelled = F.upper(F.substring("order", 1, 1)) == "C" if by_prefix else F.lit(False)
    cancelled = F.coalesce(cancelled, F.lit(False))
    is_return = cancelled | (F.col("amount") < 0) | F.coalesce(F.col("quantity") < 0, F.lit(False))
    has_customer = F.col("customer").isNotNull()
    usable = has_customer & F.col("day").isNotNull() & F.col("amount").isNotNull()
    return lines.select(
        "customer",
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
    )


def _int_sum(flag: str) -> Column:
    return F.sum(F.col(flag).cast("int"))


def _per_customer(lines: DataFrame) -> DataFrame:
    """Aggregate order lines to orders, then orders to customers (the null customer included)."""
    value = F.when(F.col("is_return"), -F.abs("amount")).otherwise(F.col("amount"))
    orders = lines.groupBy("customer", "order").agg(
        F.count(F.lit(1)).alias("lines"),
        _int_sum("bad_date").alias("bad_dates"),
        _int_sum("bad_amount").alias("bad_amounts"),
        _int_sum("usable").alias("usable_lines"),
        _int_sum("is_return").alias("return_lines"),
        F.sum(F.when(F.col("is_return"), F.abs("amount"))).alias("return_value"),
        F.max(F.col("cancelled").cast("int")).alias("cancelled"),
        F.max(F.col("purchase").cast("int")).alias("purchased"),
        F.sum(F.when(F.col("usable"), value)).alias("net"),
        F.sum(F.when(F.col("purchase"), F.col("amount"))).alias("gross"),
        F.min(F.when(F.col("purchase"), F.col("day"))).alias("first_purchase"),
        F.max(F.when(F.col("purchase"), F.col("day"))).alias("last_purchase"),
        F.min(F.when(F.col("usable"), F.col("day"))).alias("first_line"),
        F.max(F.when(F.col("usable"), F.col("day"))).alias("last_line"),
    )
    sums = ("lines", "bad_dates", "bad_amounts", "usable_lines", "return_lines", "return_value")
    return orders.groupBy("customer").agg(
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
    ).collect()[0]
    return row.asDict()


def _unparseable_examples(df: DataFrame, roles: Mapping[str, str], fmt: DateFormat) -> list[str]:
    customer = customer_id_expr(df, roles["customer_id"])
    text = _text(df, roles["date"])
    bad = customer.isNotNull() & text.isNotNull() & date_expr(df, roles["date"], fmt).isNull()
    found = df.select(text.alias("d")).where(bad).limit(EXAMPLES).collect()
    return [f"'{r['d'][:40]}'" for r in found]


def build_customer_table(
    df: DataFrame,
    roles: Mapping[str, str] | None = None,
    reference_date: date | None = None,
    date_format: str | None = None,
    *,
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
    returns are left out and counted in the report.

    With `cache=True` the returned table is cached (the caller unpersists it), so the log is
    read once for both the report and everything after it; otherwise it stays lazy.
    """
    roles = detect_roles(df.columns, roles)
    _require_roles(roles, df.columns)
    if isinstance(reference_date, datetime):
        reference_date = reference_date.date()

    sample, orders = _date_sample(df, roles)
    fmt = _choose_date_format(df, roles, date_format, sample)
    by_prefix = "order_id" in roles and _cancelled_by_prefix(orders)
    per_customer = _per_customer(_order_lines(df, roles, fmt, by_prefix))
    if cache:
        per_customer = per_customer.cache()
    try:
        summary = _summary(per_customer)
        examples = (
            _unparseable_examples(df, roles, fmt)
            if summary["unparseable_dates"] and fmt is not _TYPED_DATES
            else []
        )
        report = TransactionReport(
            rows_in=int(summary["rows_in"]),
            rows_without_customer=int(summary["rows_without_customer"]),
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
        last = report.last_date
        assert last is not None  # some customer has a purchase with a readable date
        reference = reference_date or last + timedelta(days=1)
        if reference < last:
            raise InputError(
                f"The reference date {reference.isoformat()} is before the last order in the "
                f"log ({last.isoformat()}); recency would be negative.",
                hint=f"Choose {last.isoformat()} or later, or leave it empty for the day after "
                "the last order.",
            )
        report.reference_date = reference

        at = F.lit(reference)
        # In cents as a decimal, so an average ending in half a cent always rounds up.
        cents = F.round("gross", 2).cast("decimal(24,2)")
        average = F.round(F.try_divide(cents, F.col("frequency")), 2).cast("double")
        customers = per_customer.where(
            F.col("customer").isNotNull() & (F.col("usable_lines") > 0) & (F.col("frequency") > 0)
        ).select(
            F.col("customer").alias("CustomerID"),
            F.datediff(at, "last_purchase").cast("int").alias("Recency"),
            F.col("frequency").cast("int").alias("Frequency"),
            F.round("net", 2).alias("Spend"),
            F.datediff(at, "first_purchase").cast("int").alias("Tenure"),
            average.alias("AvgOrderValue"),
        )
        if cache:
            # Cache the small result, fill it from the per-customer cache, then free that.
            customers = customers.cache()
            customers.count()
    finally:
        if cache:
            unpersist([per_customer])
    return customers, report


def join_attributes(
    customers: DataFrame, attributes: DataFrame, id_column: str | None = None
) -> tuple[DataFrame, dict]:
    """Add a second table's columns (Age, Region, …) to the customers by customer id.

    A left join: every customer stays, with empty attributes when the second table lacks them.
    Repeated ids in the attribute table keep one row, so no customer is counted twice.
    Returns the joined table and a report of missing and unmatched ids.
    """
    own_id = detect_mapping(customers.columns).get("customer_id", "CustomerID")
    if id_column is None:
        id_column = detect_mapping(attributes.columns).get("customer_id")
        if id_column is None:
            raise InputError(
                "The attribute table has no customer id column that could be recognised "
                f"(it has: {', '.join(attributes.columns[:12])}).",
                hint="Name it CustomerID, or choose its id column.",
            )
    elif id_column not in attributes.columns:
        raise InputError(f"The attribute table has no column '{id_column}'.")

    taken = {c.lower() for c in customers.columns}
    renamed, picked = {}, []
    for column in attributes.columns:
        if column == id_column:
            continue
        name = column
        while name.lower() in taken:
            name = f"{name}_attr"
        if name != column:
            renamed[column] = name
        taken.add(name.lower())
        picked.append(F.first(_quoted(column), ignorenulls=True).alias(name))
    key = "__attribute_id"
    by_id = attributes.groupBy(customer_id_expr(attributes, id_column).alias(key)).agg(
        F.count(F.lit(1)).alias("__rows"), *picked
    )
    joined = customers.join(
        by_id.where(F.col(key).isNotNull()).drop("__rows"),
        customer_id_expr(customers, own_id) == F.col(key),
        "left",
    ).drop(key)

    own = customers.select(customer_id_expr(customers, own_id).alias(key), F.lit(1).alias("c"))
    theirs = by_id.select(key, "__rows", F.lit(1).alias("a"))
    matched = own.join(theirs, key, "full_outer")
    has_own, has_theirs = F.col("c").isNotNull(), F.col("a").isNotNull()
    with_id = F.col(key).isNotNull()
    counts = matched.agg(
        F.count_if(has_own).alias("customers"),
        F.count_if(has_own & has_theirs & with_id).alias("matched"),
        F.count_if(has_own & ~(has_theirs & with_id)).alias("customers_missing"),
        F.count_if(~has_own & has_theirs & with_id).alias("unmatched_ids"),
        F.count_if(has_theirs & with_id & (F.col("__rows") > 1)).alias("duplicate_ids"),
        F.coalesce(F.sum(F.when(has_theirs & ~with_id, F.col("__rows"))), F.lit(0)).alias(
            "rows_without_id"
        ),
    ).collect()[0]

    report = {
        "id_column": id_column,
        "columns": [renamed.get(c, c) for c in attributes.columns if c != id_column],
        "renamed": renamed,
        **{k: int(v) for k, v in counts.asDict().items()},
    }
    report["messages"] = _attribute_messages(report)
    return joined, report


def _attribute_messages(report: Mapping) -> list[str]:
    lines = []
    if report["customers_missing"]:
        lines.append(
            f"{_count(report['customers_missing'], 'customer')} of {report['customers']:,} "
            f"{_has(report['customers_missing'])} no row in the attribute table; their "
            "attributes are empty (numeric ones are filled with the median)."
        )
    if report["unmatched_ids"]:
        lines.append(
            f"{_count(report['unmatched_ids'], 'customer id')} in the attribute table "
            f"{'match' if report['unmatched_ids'] != 1 else 'matches'} no customer in the order "
            "log; those rows are not used."
        )
    if report["duplicate_ids"]:
        lines.append(
            f"{_count(report['duplicate_ids'], 'customer id')} appear more than once in the "
            "attribute table; one row of each was used."
        )
    if report["rows_without_id"]:
        lines.append(
            f"{_count(report['rows_without_id'], 'attribute row')} {_has(report['rows_without_id'])} "
            "no customer id and were ignored."
        )
    for old, new in report["renamed"].items():
        lines.append(f"The attribute column '{old}' is called '{new}' to keep it apart.")
    return lines


TRANSACTION_FEATURES = ("Recency", "Frequency", "Spend")
INPUT_KINDS = ("auto", "customers", "transactions")


@dataclass(frozen=True)
class LoadOptions:
    """How an input becomes a customer table: what the file is and, for an order log, how its
    dates read, the day Recency counts to (ISO) and a customer attributes table to join."""

    input_kind: str = "auto"
    date_format: str | None = None
    reference_date: str | None = None
    attributes: str | None = None

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
) -> tuple[Table, dict | None]:
    """The customer table of an input: the file itself, or the one built from an order log
    (with an optional attributes table joined in). The dict says how it was built (None for a
    customer table); it goes into the manifest and its messages into the report."""
    input_kind = options.input_kind
    if input_kind not in INPUT_KINDS:
        raise InputError(
            f"Input kind '{input_kind}' is unknown; use one of {', '.join(INPUT_KINDS)}."
        )
    # A customer table is checked for ragged rows in the same pass that reads it.
    table = read_table(spark, source, keep_malformed=True)
    kind = detect_input_kind(table.columns) if input_kind == "auto" else input_kind
    if kind == "customers":
        return table, None
    log = table.df.select(*[F.col(f"`{c}`") for c in table.columns])
    customers, report = build_customer_table(
        log, roles, options.reference_day, options.date_format, cache=cache
    )
    origin = {"kind": "transactions", "detected": input_kind == "auto", **report.to_dict()}
    if options.attributes:
        customers, joined = join_attributes(customers, read_table(spark, options.attributes).df)
        origin["attributes"] = joined
    return Table(customers, table.path, table.format, unique_ids=True), origin


def origin_messages(origin: Mapping | None) -> list[str]:
    """What building the customer table dropped, netted or assumed, for the analyst."""
    if not origin:
        return []
    return list(origin.get("messages", [])) + list(origin.get("attributes", {}).get("messages", []))
