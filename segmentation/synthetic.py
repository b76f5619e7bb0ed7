"""Synthetic customers with known segments: sample data, tests and benchmarks at any size.

Each latent segment is an RFM archetype (champions, hibernating, new customers, big spenders,
...). Rows are generated in fixed blocks, each seeded from (seed, block number), so a table is
the same whether it is built in memory or written in chunks of any size.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ("Age", "Spend", "Recency", "Frequency")
CATEGORIES = ("Electronics", "Fashion", "Home & Garden", "Beauty", "Sports")
REGIONS = ("North", "South", "East", "West")
AGE_RANGE = (18, 85)
ID_DIGITS = 7

# Rows per generator block; part of the data's definition, so changing it changes every table.
_BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class Archetype:
    """One latent segment: where its customers sit on each feature and what they buy where."""

    name: str
    share: float  # relative size of the segment
    age_mean: float
    age_sd: float
    spend_median: float  # Spend is log-normal around this median
    spend_sigma: float
    recency_mean: float  # Recency is gamma distributed (days)
    recency_shape: float
    extra_orders: float  # Frequency = 1 + Poisson(extra_orders), capped at max_orders
    max_orders: int
    category_mix: tuple[float, ...]  # over CATEGORIES
    region_mix: tuple[float, ...]  # over REGIONS


# The first four are the classic RFM archetypes; `segments=k` uses the first k. Means and
# spreads are chosen so the segments stay apart both after log1p(Spend) and on raw, capped
# Spend, since the pipeline's default does not log-transform.
ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "Champions", 0.20, 36, 5, 2400, 0.20, 7, 3, 24, 10_000,
        (0.35, 0.15, 0.20, 0.10, 0.20), (0.30, 0.20, 0.25, 0.25),
    ),
    Archetype(
        "Hibernating", 0.30, 60, 6, 110, 0.35, 330, 60, 1.0, 10_000,
        (0.15, 0.20, 0.35, 0.15, 0.15), (0.20, 0.35, 0.20, 0.25),
    ),
    Archetype(
        "New customers", 0.25, 25, 4, 60, 0.35, 5, 2, 0.4, 2,
        (0.15, 0.35, 0.10, 0.30, 0.10), (0.25, 0.25, 0.30, 0.20),
    ),
    Archetype(
        "Big spenders", 0.25, 52, 5, 7000, 0.16, 75, 16, 7, 10_000,
        (0.45, 0.20, 0.25, 0.05, 0.05), (0.25, 0.15, 0.25, 0.35),
    ),
    Archetype(
        "At risk", 0.15, 45, 4, 900, 0.20, 180, 36, 12, 10_000,
        (0.20, 0.25, 0.25, 0.15, 0.15), (0.25, 0.25, 0.25, 0.25),
    ),
    Archetype(
        "Potential loyalists", 0.15, 34, 4, 400, 0.25, 35, 9, 9, 10_000,
        (0.20, 0.30, 0.10, 0.25, 0.15), (0.30, 0.20, 0.20, 0.30),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class _Params:
    """Per-segment distribution parameters as arrays, after applying `separation`."""

    cumulative_share: np.ndarray
    age_mean: np.ndarray
    age_sd: np.ndarray
    log_spend: np.ndarray
    spend_sigma: np.ndarray
    recency_shape: np.ndarray
    recency_scale: np.ndarray
    extra_orders: np.ndarray
    orders_spread: float  # 1 keeps Frequency Poisson; below 1 squeezes it around its mean
    max_orders: np.ndarray
    category_cdf: np.ndarray
    region_cdf: np.ndarray


def _params(segments: int, separation: float) -> _Params:
    """Distribution parameters of the first `segments` archetypes at this separation.

    Below 1 the segment centres move towards their common centre (all equal at 0); above 1
    the centres stay and each segment's spread shrinks by 1/separation. Moving centres apart
    instead would blow Spend up exponentially and leave it the only feature that matters.
    """
    if not 1 <= segments <= len(ARCHETYPES):
        raise ValueError(f"segments must be between 1 and {len(ARCHETYPES)}, got {segments}.")
    if separation < 0:
        raise ValueError(f"separation must be >= 0, got {separation}.")
    chosen = ARCHETYPES[:segments]
    pull, tighten = min(separation, 1.0), max(separation, 1.0)

    def column(name: str) -> np.ndarray:
        return np.array([getattr(a, name) for a in chosen], dtype=float)

    share = column("share") / column("share").sum()

    def towards_centre(location: np.ndarray) -> np.ndarray:
        centre = share @ location
        return centre + pull * (location - centre)

    # Skewed features move in log space so they stay positive. A gamma's relative spread is
    # 1/sqrt(shape), hence shape * tighten**2.
    recency_shape = column("recency_shape") * tighten**2
    recency_mean = np.exp(towards_centre(np.log(column("recency_mean"))))
    return _Params(
        cumulative_share=np.cumsum(share),
        age_mean=towards_centre(column("age_mean")),
        age_sd=column("age_sd") / tighten,
        log_spend=towards_centre(np.log(column("spend_median"))),
        spend_sigma=column("spend_sigma") / tighten,
        recency_shape=recency_shape,
        recency_scale=recency_mean / recency_shape,
        extra_orders=np.exp(towards_centre(np.log(column("extra_orders")))),
        orders_spread=1.0 / tighten,
        max_orders=column("max_orders"),
        category_cdf=np.cumsum([a.category_mix for a in chosen], axis=1),
        region_cdf=np.cumsum([a.region_mix for a in chosen], axis=1),
    )


def _pick(cdf: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one category per row, each row with its own cumulative mix."""
    codes = (uniform[:, None] >= cdf[:, :-1]).sum(axis=1)
    return codes.astype(np.int8)


def _block(index: int, seed: int, params: _Params, missing_rate: float) -> dict[str, np.ndarray]:
    """All columns of one full block; draws always happen in the same order and sizes."""
    rng = np.random.default_rng([seed, index])
    n = _BLOCK_ROWS
    segment = np.searchsorted(params.cumulative_share, rng.random(n), side="right")
    segment = np.minimum(segment, len(params.cumulative_share) - 1)

    age = params.age_mean[segment] + params.age_sd[segment] * rng.standard_normal(n)
    age = np.clip(np.rint(age), *AGE_RANGE)
    spend = np.exp(params.log_spend[segment] + params.spend_sigma[segment] * rng.standard_normal(n))
    spend = np.maximum(np.round(spend, 2), 0.01)
    recency = np.floor(rng.gamma(params.recency_shape[segment], params.recency_scale[segment]))
    extra = params.extra_orders[segment]
    extra = extra + (rng.poisson(extra) - extra) * params.orders_spread
    frequency = 1 + np.clip(np.rint(extra), 0, params.max_orders[segment] - 1)
    category = _pick(params.category_cdf[segment], rng.random(n))
    region = _pick(params.region_cdf[segment], rng.random(n))

    missing = rng.random((len(FEATURES), n)) < missing_rate
    values = dict(zip(FEATURES, (age, spend, recency, frequency), strict=True))
    for row, name in enumerate(FEATURES):
        values[name][missing[row]] = np.nan
    return {"segment": segment, **values, "Category": category, "Region": region}


def _columns(
    start: int, stop: int, seed: int, params: _Params, missing_rate: float
) -> dict[str, np.ndarray]:
    """Columns for rows [start, stop), copied out of the blocks that cover them."""
    columns: dict[str, np.ndarray] = {}
    first = start // _BLOCK_ROWS
    last = (stop - 1) // _BLOCK_ROWS if stop > start else first
    for index in range(first, last + 1):
        block = _block(index, seed, params, missing_rate)
        if not columns:  # preallocate: no second copy of a 10M-row table while concatenating
            columns = {name: np.empty(stop - start, values.dtype) for name, values in block.items()}
        lo = max(start - index * _BLOCK_ROWS, 0)
        hi = min(stop - index * _BLOCK_ROWS, _BLOCK_ROWS)
        at = index * _BLOCK_ROWS + lo - start
        for name, values in block.items():
            columns[name][at : at + hi - lo] = values[lo:hi]
    return columns


def _customer_ids(start: int, stop: int, digits: int):
    """IDs "C0000001", ... built as one Arrow buffer: no Python string per row."""
    import pyarrow as pa

    count = stop - start
    numbers = np.arange(start + 1, stop + 1, dtype=np.int64)
    width = digits + 1
    text = np.empty((count, width), dtype=np.uint8)
    text[:, 0] = ord("C")
    for place in range(digits):
        text[:, width - 1 - place] = ord("0") + (numbers // 10**place) % 10
    offsets = np.arange(0, count * width + 1, width, dtype=np.int64)
    array = pa.Array.from_buffers(
        pa.large_string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(text)]
    )
    return pd.array(array.cast(pa.string()), dtype=pd.StringDtype("pyarrow"))


def _frame(columns: dict[str, np.ndarray], ids, categorical: bool) -> pd.DataFrame:
    """The customer table the analyst sees; integer features are nullable so NaN stays empty."""
    table = pd.DataFrame(
        {
            "CustomerID": ids,
            "Age": pd.array(columns["Age"], dtype="Int64"),
            "Spend": columns["Spend"],
            "Recency": pd.array(columns["Recency"], dtype="Int64"),
            "Frequency": pd.array(columns["Frequency"], dtype="Int64"),
        },
        copy=False,
    )
    if categorical:
        table["Category"] = pd.Categorical.from_codes(columns["Category"], CATEGORIES)
        table["Region"] = pd.Categorical.from_codes(columns["Region"], REGIONS)
    return table


def _id_digits(n: int) -> int:
    return max(ID_DIGITS, len(str(n)))


def _check(n: int, missing_rate: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if not 0 <= missing_rate <= 1:
        raise ValueError(f"missing_rate must be between 0 and 1, got {missing_rate}.")


def make_customers(
    n: int,
    segments: int = 4,
    seed: int = 0,
    separation: float = 1.0,
    missing_rate: float = 0.01,
    categorical: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """A customer table with known segments, to check that segmentation finds them.

    Returns the table (CustomerID, Age, Spend, Recency, Frequency[, Category, Region]) and
    each row's latent segment (0..segments-1, in ARCHETYPES order). Age, Recency and
    Frequency are nullable Int64 so missing values stay missing rather than becoming floats.
    """
    _check(n, missing_rate)
    params = _params(segments, separation)
    columns = _columns(0, n, seed, params, missing_rate)
    table = _frame(columns, _customer_ids(0, n, _id_digits(n)), categorical)
    return table, columns["segment"]


def _options(
    separation: float = 1.0, missing_rate: float = 0.01, categorical: bool = True
) -> tuple[float, float, bool]:
    """make_customers' remaining options, so write_customers rejects a misspelt one."""
    return separation, missing_rate, categorical


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    for kind in ("parquet", "csv.gz", "csv"):
        if name.endswith("." + kind):
            return kind
    raise ValueError(f"Cannot tell the format of {path.name}: use .csv, .csv.gz or .parquet.")


@contextmanager
def _written_aside(path: Path) -> Iterator[tuple[Path, ExitStack]]:
    """Write into `path`.partial and rename it to `path` at the end, so the file appears
    complete or not at all. Closers registered on the stack run first (last one first)."""
    partial = path.with_name(path.name + ".partial")
    try:
        with ExitStack() as closing:
            yield partial, closing
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _csv_sink(partial: Path, kind: str, header: Sequence[str], closing: ExitStack):
    """An Arrow output stream for a CSV (gzipped for .csv.gz) that starts with `header`,
    written by hand: Arrow would quote the names."""
    import pyarrow as pa

    sink = pa.OSFile(str(partial), "wb")
    if kind == "csv.gz":
        sink = pa.CompressedOutputStream(sink, "gzip")
    closing.callback(sink.close)
    sink.write((",".join(header) + "\n").encode())
    return sink


def write_customers(
    path: str | os.PathLike,
    n: int,
    *,
    segments: int = 4,
    seed: int = 0,
    chunk_rows: int = 1_000_000,
    **kwargs,
) -> np.ndarray:
    """Write make_customers' table to CSV, gzip CSV or Parquet in chunks; return the segments.

    The format follows the suffix (.csv, .csv.gz, .parquet); kwargs are make_customers'
    separation, missing_rate and categorical. Only one chunk is in memory at a time, and the
    file holds exactly the rows make_customers(n, segments, seed, ...) returns, whatever
    chunk_rows is. The file appears complete or not at all (written aside, then renamed).
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    separation, missing_rate, categorical = _options(**kwargs)
    _check(n, missing_rate)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}.")
    path = Path(path)
    kind = _file_kind(path)
    params = _params(segments, separation)
    digits = _id_digits(n)

    segment_parts: list[np.ndarray] = []
    with _written_aside(path) as (partial, closing):
        writer = None
        for start in range(0, max(n, 1), chunk_rows):
            stop = min(start + chunk_rows, n)
            columns = _columns(start, stop, seed, params, missing_rate)
            segment_parts.append(columns["segment"])
            frame = _frame(columns, _customer_ids(start, stop, digits), categorical)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if kind == "parquet":
                if writer is None:
                    writer = pq.ParquetWriter(partial, table.schema)
                    closing.callback(writer.close)
            else:
                # CSV has no dictionaries: plain strings, unquoted since no value holds a comma.
                table = table.cast(
                    pa.schema(
                        pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                        for f in table.schema
                    )
                )
                if writer is None:
                    sink = _csv_sink(partial, kind, table.column_names, closing)
                    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
                    writer = pa_csv.CSVWriter(sink, table.schema, write_options=options)
                    closing.callback(writer.close)
            writer.write_table(table)
    return np.concatenate(segment_parts)


# Order logs -----------------------------------------------------------------------------------
# An order-line log like the well-known Online Retail export, generated per block of customers
# (each block seeded from (seed, block number)), with the customer table it must aggregate to.

TRANSACTION_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
TRANSACTIONS_START = np.datetime64("2023-01-01", "D")
TRANSACTIONS_DAYS = 365
TRANSACTIONS_REFERENCE = np.datetime64("2024-01-01", "D")  # the day after the last possible line
TRANSACTION_DATE_FORMATS = {
    "iso": "%Y-%m-%d %H:%M:%S",
    "month-first": "%m/%d/%Y %H:%M",
    "day-first": "%d/%m/%Y %H:%M",
    "yyyymmdd": "%Y%m%d",
}
COUNTRIES = ("United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands")
_COUNTRY_CDF = np.cumsum((0.85, 0.04, 0.04, 0.03, 0.02, 0.02))
FIRST_CUSTOMER_ID = 12346
FIRST_INVOICE = 536365
# Customers per generator block; part of the data's definition, like _BLOCK_ROWS.
_TX_BLOCK_CUSTOMERS = 1 << 12


def _catalog() -> tuple[np.ndarray, np.ndarray]:
    """Fixed stock codes ('85123A', '22423', ...) and their unit prices in cents."""
    rng = np.random.default_rng(20101201)
    size = 400
    numbers = rng.choice(np.arange(10000, 99999), size=size, replace=False)
    suffix = np.where(rng.random(size) < 0.2, rng.choice(list("ABCDEFG"), size), "")
    codes = np.char.add(numbers.astype(str), suffix)
    cents = np.maximum(np.rint(np.exp(rng.normal(5.3, 0.8, size))), 19).astype(np.int64)
    return codes, cents


@dataclass(frozen=True)
class _TxOptions:
    """make_transactions' knobs, checked once."""

    date_format: str = "iso"
    guest_rate: float = 0.03  # share of orders without a customer id
    return_rate: float = 0.06  # share of orders with a returned line
    cancel_share: float = 0.5  # of those returns, the share booked as a "C" cancellation invoice
    returns_only_rate: float = 0.01  # customers whose only lines in the log are returns

    def __post_init__(self) -> None:
        if self.date_format not in TRANSACTION_DATE_FORMATS:
            raise ValueError(
                f"date_format must be one of {', '.join(TRANSACTION_DATE_FORMATS)}, "
                f"got {self.date_format!r}."
            )
        for name in ("guest_rate", "return_rate", "cancel_share", "returns_only_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}.")


@dataclass(frozen=True)
class _Invoices:
    """Invoices of one kind (orders, returns, ...) with their lines, before they get numbers."""

    day: np.ndarray
    customer: np.ndarray  # -1 for a guest
    country: np.ndarray
    cancelled: np.ndarray
    lines: np.ndarray  # lines per invoice; the lines below come invoice by invoice
    item: np.ndarray
    quantity: np.ndarray
    minute: np.ndarray | None = None  # None: drawn after every other draw of the block


def _till_minutes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Minutes of the day within the shop's opening hours."""
    return rng.integers(8 * 60, 20 * 60, count)


def _order_days(
    rng: np.random.Generator, returns_only: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each order's customer (index) and day: a customer's first order on their first day, the
    last on their last active day, the rest in between; none for customers who only return."""
    count = len(returns_only)
    first_day = rng.integers(0, TRANSACTIONS_DAYS, count)
    last_day = first_day + np.floor(rng.random(count) * (TRANSACTIONS_DAYS - first_day))
    orders_per = np.where(returns_only, 0, 1 + rng.poisson(rng.gamma(2.0, 2.0, count)))
    owner = np.repeat(np.arange(count), orders_per)
    position = np.arange(len(owner)) - np.repeat(np.cumsum(orders_per) - orders_per, orders_per)
    first, last = first_day[owner], last_day[owner].astype(np.int64)
    middle = first + np.floor(rng.random(len(owner)) * (last - first + 1)).astype(np.int64)
    last_position = position == orders_per[owner] - 1
    return owner, np.where(position == 0, first, np.where(last_position, last, middle))


def _tx_orders(
    rng: np.random.Generator,
    customer_ids: np.ndarray,
    country: np.ndarray,
    returns_only: np.ndarray,
    guest_rate: float,
    items: int,
) -> _Invoices:
    """The customers' orders, then guest orders (no customer id), each with a few lines."""
    owner, day = _order_days(rng, returns_only)
    guests = rng.binomial(len(owner), guest_rate) if len(owner) else 0
    day = np.concatenate([day, rng.integers(0, TRANSACTIONS_DAYS, guests)])
    minute = _till_minutes(rng, len(day))
    lines = 1 + rng.poisson(2.0, len(day))
    item = rng.integers(0, items, int(lines.sum()))
    return _Invoices(
        day=day,
        customer=np.concatenate([customer_ids[owner], np.full(guests, -1)]),
        country=np.concatenate([country[owner], np.zeros(guests, dtype=np.int64)]),
        cancelled=np.zeros(len(day), dtype=bool),
        lines=lines,
        item=item,
        quantity=1 + rng.poisson(3.0, len(item)),
        minute=minute,
    )


def _tx_returns(rng: np.random.Generator, orders: _Invoices, options: _TxOptions) -> _Invoices:
    """One line of some orders comes back, partly, on the order's day or later; either as a
    cancellation invoice ("C" + number) or as a plain negative line on a new invoice."""
    returned = np.flatnonzero(rng.random(len(orders.day)) < options.return_rate)
    first_line = np.cumsum(orders.lines) - orders.lines
    which = first_line[returned] + rng.integers(0, orders.lines[returned])
    quantity = -(1 + rng.integers(0, orders.quantity[which]))
    later = orders.day[returned] + rng.geometric(0.3, len(returned)) - 1
    cancelled = rng.random(len(returned)) < options.cancel_share
    return _Invoices(
        day=np.minimum(later, TRANSACTIONS_DAYS - 1),
        customer=orders.customer[returned],
        country=orders.country[returned],
        cancelled=cancelled,
        lines=np.ones(len(returned), dtype=np.int64),
        item=orders.item[which],
        quantity=quantity,
    )


def _tx_returns_only(
    rng: np.random.Generator,
    customer_ids: np.ndarray,
    country: np.ndarray,
    returns_only: np.ndarray,
    items: int,
) -> _Invoices:
    """Customers who only return: a cancellation of goods bought before the log starts."""
    lonely = np.flatnonzero(returns_only)
    item = rng.integers(0, items, len(lonely))
    quantity = -(1 + rng.poisson(1.0, len(lonely)))
    return _Invoices(
        day=rng.integers(0, TRANSACTIONS_DAYS, len(lonely)),
        customer=customer_ids[lonely],
        country=country[lonely],
        cancelled=np.ones(len(lonely), dtype=bool),
        lines=np.ones(len(lonely), dtype=np.int64),
        item=item,
        quantity=quantity,
    )


def _invoice_times(rng: np.random.Generator, kinds: Sequence[_Invoices]) -> np.ndarray:
    """Minutes since the log's start of every invoice, kind after kind; the kinds without
    minutes get theirs here, last, so the block's earlier draws stay as they are."""
    minutes = [_till_minutes(rng, len(k.day)) if k.minute is None else k.minute for k in kinds]
    return np.concatenate([k.day for k in kinds]) * 24 * 60 + np.concatenate(minutes)


def _time_ranks(times: np.ndarray) -> np.ndarray:
    """Each invoice's place in time order (ties in invoice order), as a shop's till numbers them."""
    rank = np.empty(len(times), dtype=np.int64)
    rank[np.argsort(times, kind="stable")] = np.arange(len(times))
    return rank


def _tx_block(
    index: int, count: int, seed: int, first_invoice: int, options: _TxOptions
) -> tuple[dict[str, np.ndarray], int]:
    """Order lines of customers [index*block, index*block+count) and the next free invoice no."""
    rng = np.random.default_rng([seed, index, 1])
    codes, cents = _catalog()
    customer_ids = FIRST_CUSTOMER_ID + index * _TX_BLOCK_CUSTOMERS + np.arange(count)
    returns_only = rng.random(count) < options.returns_only_rate
    country = np.searchsorted(_COUNTRY_CDF, rng.random(count) * _COUNTRY_CDF[-1], side="right")
    orders = _tx_orders(rng, customer_ids, country, returns_only, options.guest_rate, len(codes))
    returns = _tx_returns(rng, orders, options)
    lonely = _tx_returns_only(rng, customer_ids, country, returns_only, len(codes))
    kinds = (orders, returns, lonely)
    times = _invoice_times(rng, kinds)
    number = first_invoice + _time_ranks(times)
    invoices = np.repeat(np.arange(len(times)), np.concatenate([k.lines for k in kinds]))
    item = np.concatenate([k.item for k in kinds])
    quantity = np.concatenate([k.quantity for k in kinds])
    sort = np.argsort(number[invoices], kind="stable")
    invoices, item, quantity = invoices[sort], item[sort], quantity[sort]
    columns = {
        "invoice": number[invoices],
        "cancelled": np.concatenate([k.cancelled for k in kinds])[invoices],
        "code": codes[item],
        "quantity": quantity.astype(np.int64),
        "time": times[invoices],
        "cents": cents[item],
        "customer": np.concatenate([k.customer for k in kinds])[invoices],
        "country": np.concatenate([k.country for k in kinds])[invoices],
    }
    return columns, first_invoice + len(times)


def _tx_table(columns: dict[str, np.ndarray], date_format: str):
    """The order lines as an Arrow table with the export's columns and text formats."""
    import pyarrow as pa
    import pyarrow.compute as pc

    number = pc.cast(pa.array(columns["invoice"]), pa.string())
    invoice = pc.if_else(
        pa.array(columns["cancelled"]), pc.binary_join_element_wise("C", number, ""), number
    )
    minutes = TRANSACTIONS_START.astype("datetime64[m]") + columns["time"].astype("timedelta64[m]")
    stamps = pa.array(minutes.astype("datetime64[s]"))
    dates = pc.strftime(stamps, format=TRANSACTION_DATE_FORMATS[date_format])
    customer = columns["customer"]
    return pa.table(
        {
            "InvoiceNo": invoice,
            "StockCode": pa.array(columns["code"]),
            "Quantity": pa.array(columns["quantity"]),
            "InvoiceDate": dates,
            "UnitPrice": pa.array(columns["cents"] / 100.0),
            "CustomerID": pa.array(customer, mask=customer < 0),
            "Country": pa.array(np.array(COUNTRIES)[columns["country"]]),
        }
    )


def _tx_tables(customers: int, seed: int, options: _TxOptions):
    """Arrow tables of consecutive blocks; invoice numbers run on from block to block."""
    invoice = FIRST_INVOICE
    for index in range(0, (customers + _TX_BLOCK_CUSTOMERS - 1) // _TX_BLOCK_CUSTOMERS):
        count = min(_TX_BLOCK_CUSTOMERS, customers - index * _TX_BLOCK_CUSTOMERS)
        columns, invoice = _tx_block(index, count, seed, invoice, options)
        yield _tx_table(columns, options.date_format)


def expected_customers(
    log: pd.DataFrame, date_format: str = "iso", reference=TRANSACTIONS_REFERENCE
) -> pd.DataFrame:
    """The customer table an order log must aggregate to, by plain pandas, in whole cents.

    Lines without a customer id are dropped; returns (negative quantity) and cancellations
    (invoice "C…") reduce Spend; customers with only returns are left out. Recency and Tenure
    are days from the last and first purchase to `reference`.
    """
    lines = log[log["CustomerID"].notna()].copy()
    day = pd.to_datetime(lines["InvoiceDate"], format=TRANSACTION_DATE_FORMATS[date_format])
    lines["day"] = day.dt.normalize()
    lines["cents"] = lines["Quantity"].astype("int64") * (
        (lines["UnitPrice"].astype(float) * 100).round().astype("int64")
    )
    lines["is_return"] = (lines["Quantity"] < 0) | lines["InvoiceNo"].str.upper().str.startswith(
        "C"
    )
    lines["net"] = lines["cents"].where(~lines["is_return"], -lines["cents"].abs())
    bought = lines[~lines["is_return"] & (lines["cents"] > 0)]
    per_customer = bought.groupby("CustomerID").agg(
        Frequency=("InvoiceNo", "nunique"),
        first=("day", "min"),
        last=("day", "max"),
        gross=("cents", "sum"),
    )
    net = lines.groupby("CustomerID")["net"].sum()
    # Gross cents per order, rounded half up to a whole cent in integers: no float ties.
    orders = per_customer["Frequency"]
    half_up = (2 * per_customer["gross"] + orders) // (2 * orders)
    reference = pd.Timestamp(reference)
    table = pd.DataFrame(
        {
            "CustomerID": per_customer.index.astype("int64").astype(str),
            "Recency": (reference - per_customer["last"]).dt.days.to_numpy(),
            "Frequency": per_customer["Frequency"].to_numpy(),
            "Spend": net.loc[per_customer.index].to_numpy() / 100,
            "Tenure": (reference - per_customer["first"]).dt.days.to_numpy(),
            "AvgOrderValue": half_up.to_numpy() / 100,
        }
    )
    return table.sort_values("CustomerID", ignore_index=True)


def make_transactions(
    customers: int, seed: int = 0, **options
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An order-line log and the exact customer table it aggregates to (at TRANSACTIONS_REFERENCE).

    The log has Online Retail's columns (InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice,
    CustomerID, Country), several lines per order, returns (negative quantities, some on "C"
    cancellation invoices), guest orders without a customer id and a few customers who only
    return. Options: date_format ("iso", "month-first", "day-first", "yyyymmdd"), guest_rate,
    return_rate, cancel_share, returns_only_rate. The expected table (CustomerID, Recency,
    Frequency, Spend, Tenure, AvgOrderValue) is computed from the log by `expected_customers`.
    """
    import pyarrow as pa

    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}.")
    settings = _TxOptions(**options)
    table = pa.concat_tables(_tx_tables(customers, seed, settings))
    types = {pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype("pyarrow")}
    log = table.to_pandas(types_mapper=types.get)
    log["UnitPrice"] = log["UnitPrice"].astype(float)
    return log, expected_customers(log, settings.date_format)


def write_transactions(
    path: str | os.PathLike,
    customers: int,
    *,
    seed: int = 0,
    chunk_customers: int = 200_000,
    **options,
) -> int:
    """Write make_transactions' log to CSV or gzip CSV in chunks; return the lines written.

    About 15 lines per customer: 10M lines take some 670,000 customers. Only one chunk is in
    memory at a time and the file equals make_transactions(customers, seed, ...)'s log; it
    appears complete or not at all (written aside, then renamed).
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}.")
    if chunk_customers < 1:
        raise ValueError(f"chunk_customers must be >= 1, got {chunk_customers}.")
    settings = _TxOptions(**options)
    path = Path(path)
    kind = _file_kind(path)
    if kind == "parquet":
        raise ValueError("Order logs are written as .csv or .csv.gz.")
    per_chunk = max(1, chunk_customers // _TX_BLOCK_CUSTOMERS)
    written = 0
    with _written_aside(path) as (partial, closing):
        sink = _csv_sink(partial, kind, TRANSACTION_COLUMNS, closing)
        writer = None
        tables = _tx_tables(customers, seed, settings)
        while blocks := list(itertools.islice(tables, per_chunk)):
            chunk = pa.concat_tables(blocks)
            if writer is None:
                plain = pa_csv.WriteOptions(include_header=False, quoting_style="none")
                writer = pa_csv.CSVWriter(sink, chunk.schema, write_options=plain)
                closing.callback(writer.close)
            writer.write_table(chunk)
            written += chunk.num_rows
    return written


OVERLAPPING_SHARES = (0.34, 0.22, 0.15, 0.11, 0.08, 0.06, 0.04)


def make_overlapping(
    n: int, seed: int = 0, features: int = 4, spread: float = 0.6
) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers in seven overlapping groups of unequal size, Gaussian (no skew, so nothing is
    logged or capped differently): hard data, on which Lloyd needs many iterations to settle.

    Returns the table (CustomerID, x1..x<features>) and each row's group. `spread` is how far
    apart the groups' centres lie, in units of a group's typical spread.
    """
    rng = np.random.default_rng(seed)
    groups = len(OVERLAPPING_SHARES)
    centres = rng.normal(0, spread, (groups, features))
    scales = rng.uniform(0.5, 1.5, (groups, features))
    group = rng.choice(groups, n, p=OVERLAPPING_SHARES)
    values = centres[group] + rng.normal(0, 1, (n, features)) * scales[group]
    table = pd.DataFrame(100 + 10 * values, columns=[f"x{i + 1}" for i in range(features)])
    table.insert(0, "CustomerID", [f"C{i:07d}" for i in range(n)])
    return table, group
