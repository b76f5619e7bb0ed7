"""Order dates: which format a log's dates are in, and the Spark expression that reads them.

The format is decided on a small sample collected to the driver; ambiguous slash dates look for
one telling date (a part above 12) anywhere in the log before asking the analyst.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segmentation.errors import InputError
from segmentation.reading import customer_id_expr, quoted_column, text_expr

DATE_SAMPLE_SIZE = 1000  # raw date strings collected to decide the format


EXAMPLES = 3


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


TYPED_DATES = DateFormat("date", "a date or timestamp column")


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


def _is_typed_date(df: DataFrame, column: str) -> bool:
    return isinstance(df.schema[column].dataType, (T.DateType, T.TimestampType, T.TimestampNTZType))


def date_expr(df: DataFrame, column: str, date_format: DateFormat) -> Column:
    """The order date (a Spark date; null when it does not parse in `date_format`)."""
    if _is_typed_date(df, column):
        return F.to_date(quoted_column(column))
    text = text_expr(df, column)
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


def date_sample(df: DataFrame, roles: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Up to DATE_SAMPLE_SIZE raw dates (with their order ids) from the start of the log."""
    date_text = text_expr(df, roles["date"]).alias("d")
    order_text = (
        text_expr(df, roles["order_id"]) if "order_id" in roles else F.lit(None).cast("string")
    ).alias("o")
    rows = df.select(date_text, order_text).where(F.col("d").isNotNull())
    found = rows.limit(DATE_SAMPLE_SIZE).collect()
    return [r["d"] for r in found], [r["o"] for r in found if r["o"]]


def _telling_dates(df: DataFrame, column: str) -> list[str]:
    """A few slash dates with a part above 12, wherever they are in the log."""
    text = text_expr(df, column)
    first = F.regexp_extract(text, _SLASHED_SPARK, 1).try_cast("int")
    second = F.regexp_extract(text, _SLASHED_SPARK, 2).try_cast("int")
    telling = text.rlike(_SLASHED_SPARK) & ((first > 12) | (second > 12))
    found = df.select(text.alias("d")).where(telling).limit(EXAMPLES).collect()
    return [r["d"] for r in found]


def choose_date_format(
    df: DataFrame, roles: Mapping[str, str], date_format: str | None, sample: list[str]
) -> DateFormat:
    if _is_typed_date(df, roles["date"]):
        return TYPED_DATES
    if date_format:
        return _resolve_format(date_format)
    values = [v for v in sample if v]
    shape, day_first, month_first, _ = _survey(values) if values else ("other", [], [], [])
    if shape == "slashed" and not day_first and not month_first:
        # The first rows of a log are often a single day; look further before calling it
        # ambiguous. Only this case pays for a scan, and it stops at the first telling date.
        values += _telling_dates(df, roles["date"])
    return detect_date_format(values)


def unparseable_examples(df: DataFrame, roles: Mapping[str, str], fmt: DateFormat) -> list[str]:
    customer = customer_id_expr(df, roles["customer_id"])
    text = text_expr(df, roles["date"])
    bad = customer.isNotNull() & text.isNotNull() & date_expr(df, roles["date"], fmt).isNull()
    found = df.select(text.alias("d")).where(bad).limit(EXAMPLES).collect()
    return [f"'{r['d'][:40]}'" for r in found]
