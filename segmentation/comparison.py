"""Two segmentations of the same customers side by side: who stayed, who moved, who came, who left.

Customers are matched by id (as trimmed text) in a full outer join of the two runs'
customers.csv, read with Spark so that a table of millions never reaches the driver: only the
migration table (one row per pair of segments) does. Segment names come from each results
folder, so names the analyst edited are the ones the comparison speaks of.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from segmentation.charts import segment_label
from segmentation.errors import InputError
from segmentation.fitting import segment_columns
from segmentation.reading import customer_id_expr, number_expr, read_table
from segmentation.results import (
    FORMULA_START,
    Results,
    load_results,
    load_sweep,
    write_single_csv,
)

NEW, GONE = "new", "gone"  # where customers come from / go to when only one run has them
MIGRATION = "migration.csv"
MOVERS = "movers.csv"
SUMMARY = "comparison.json"
MIGRATION_COLUMNS = [
    "from_segment",
    "from_name",
    "to_segment",
    "to_name",
    "customers",
    "spend_before",
    "spend_after",
]


@dataclass(frozen=True)
class _Run:
    """One side of a comparison: its label, segment names and customers (id, segment, spend)."""

    folder: Path
    label: str
    names: dict[int, str]
    has_spend: bool
    customers: DataFrame


@dataclass(frozen=True)
class Comparison:
    """Where the customers of one segmentation (before) are in another (after)."""

    before: str  # how the analyst knows each run: its folder's name
    after: str
    before_folder: Path
    after_folder: Path
    migration: pd.DataFrame  # MIGRATION_COLUMNS, one row per pair of segments with customers
    customers: DataFrame  # Spark: customer_id, before, after, spend_before, spend_after

    @property
    def new_customers(self) -> int:
        """Customers only the later run has."""
        return self._customers(self.migration["from_segment"] == NEW)

    @property
    def lost_customers(self) -> int:
        """Customers only the earlier run has."""
        return self._customers(self.migration["to_segment"] == GONE)

    @property
    def same_customers(self) -> int:
        """Customers in both runs, in the segment of the same number."""
        return self._customers(
            self._in_both & (self.migration["from_segment"] == self.migration["to_segment"])
        )

    @property
    def moved_customers(self) -> int:
        """Customers in both runs whose segment number changed."""
        return self._customers(
            self._in_both & (self.migration["from_segment"] != self.migration["to_segment"])
        )

    @property
    def _in_both(self) -> pd.Series:
        return (self.migration["from_segment"] != NEW) & (self.migration["to_segment"] != GONE)

    def _customers(self, cells: pd.Series) -> int:
        return int(self.migration.loc[cells, "customers"].sum())

    @property
    def movers(self) -> DataFrame:
        """Every customer whose segment changed, who arrived or who left (Spark, not collected)."""
        changed = self.customers.where(F.col("before") != F.col("after"))
        return changed.select(_id_as_text(), "before", "after")

    def movements(self, top: int = 5) -> list[str]:
        """The `top` largest moves between segments, then arrivals and departures, in the words
        a marketer reads."""
        table = self.migration
        between = table[self._in_both & (table["from_segment"] != table["to_segment"])]
        largest = between.sort_values("customers", ascending=False, kind="stable").head(top)
        sentences = [_movement(row) for _, row in largest.iterrows()]
        return sentences + _arrivals(table) + _departures(table)

    def cell(self, from_segment: str, to_segment: str) -> DataFrame:
        """The customers behind one cell of the migration table, to download and act on (Spark;
        empty when the cell has none)."""
        table = self.migration
        before_names = dict(zip(table["from_segment"], table["from_name"], strict=True))
        after_names = dict(zip(table["to_segment"], table["to_name"], strict=True))
        chosen = self.customers.where(
            (F.col("before") == from_segment) & (F.col("after") == to_segment)
        )
        return chosen.select(
            _id_as_text(),
            F.col("before").alias("before_segment"),
            F.lit(before_names.get(from_segment)).cast("string").alias("before_name"),
            F.col("after").alias("after_segment"),
            F.lit(after_names.get(to_segment)).cast("string").alias("after_name"),
            "spend_before",
            "spend_after",
        )

    def summary(self) -> dict[str, object]:
        """The counts, the two folders and the movements, as comparison.json keeps them."""
        return {
            "before": self.before,
            "after": self.after,
            "before_folder": str(self.before_folder.absolute()),
            "after_folder": str(self.after_folder.absolute()),
            "new_customers": self.new_customers,
            "lost_customers": self.lost_customers,
            "same_customers": self.same_customers,
            "moved_customers": self.moved_customers,
            "movements": self.movements(),
        }


def compare(spark: SparkSession, before: Path, after: Path) -> Comparison:
    """Match the customers of two results folders by id and count where each segment's went.

    Customers without an id cannot be matched and are left out.
    """
    first, second = _read_run(spark, Path(before)), _read_run(spark, Path(after))
    customers = _joined(first, second)
    migration = _migration(customers, first, second)
    if migration.empty:
        raise InputError("Neither segmentation has a customer with an id to match.")
    return Comparison(
        before=first.label,
        after=second.label,
        before_folder=first.folder,
        after_folder=second.folder,
        migration=migration,
        customers=customers,
    )


def write_comparison(comparison: Comparison, out_dir: Path) -> None:
    """Write migration.csv, movers.csv and comparison.json into `out_dir` (which must not exist),
    through a hidden folder renamed at the end, so a half-written comparison is never read."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; comparisons are never overwritten.")
    # Absolute: a Spark Connect server resolves relative paths against its own working folder.
    partial = out_dir.absolute().parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    try:
        comparison.migration.to_csv(partial / MIGRATION, index=False)
        write_single_csv(comparison.movers, partial / MOVERS)
        (partial / SUMMARY).write_text(json.dumps(comparison.summary(), indent=2))
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _read_run(spark: SparkSession, folder: Path) -> _Run:
    """A results folder's customers as id, segment number (text) and spend, ids checked unique."""
    sweep = load_sweep(folder)
    if sweep is not None:
        example = sweep.folder(sweep.suggested_k or sweep.ks[0])
        raise InputError(
            f"{folder} holds a sweep of k = {', '.join(map(str, sweep.ks))}; compare one of its "
            f"segmentations, e.g. {example}."
        )
    results = load_results(folder)
    label = _label(results)
    mapping = results.manifest.input.mapping
    if "customer_id" not in mapping:
        raise InputError(
            f"'{label}' has no customer id column; comparing two segmentations needs one to "
            "match their customers.",
            hint="Segment the customers again with a customer id column (e.g. CustomerID).",
        )
    if not results.customers_ready:
        raise InputError(f"The customers of '{label}' are not written yet; try again shortly.")
    columns = results.manifest.customer_columns or segment_columns(None)
    table = read_table(spark, str(folder / results.manifest.files.customers)).df
    spend = mapping.get("spend")
    customers = table.select(
        # As runs read them: '17850.0' is customer 17850, '$1,550.00' is 1550.
        customer_id_expr(table, mapping["customer_id"], results.manifest.params.missing_ids).alias(
            "customer_id"
        ),
        F.trim(F.col(f"`{columns['segment']}`")).alias("segment"),
        (number_expr(table, spend) if spend else F.lit(None)).cast("double").alias("spend"),
    ).where(F.length("customer_id") > 0)
    _refuse_repeated_ids(customers, label)
    segments = results.segments
    names = {int(s): str(n) for s, n in zip(segments["segment"], segments["name"], strict=True)}
    return _Run(folder, label, names, spend is not None, customers)


def _label(results: Results) -> str:
    """A single run by its folder's name; a k of a sweep by the sweep's, with the k."""
    folder = results.out_dir.absolute()
    if results.manifest.sweep_k is None:
        return folder.name
    return f"{folder.parent.name} ({folder.name})"


def _refuse_repeated_ids(customers: DataFrame, label: str) -> None:
    """A customer twice in one run cannot be matched one to one with the other run."""
    repeated = customers.groupBy("customer_id").count().where("count > 1").limit(1).collect()
    if repeated:
        raise InputError(
            f"Customer id '{repeated[0]['customer_id']}' appears {repeated[0]['count']} times "
            f"in '{label}', so its customers cannot be matched one to one.",
            hint="Compare segmentations of tables with one row per customer.",
        )


def _joined(first: _Run, second: _Run) -> DataFrame:
    """Every customer of either run with its segment in each ("new" or "gone" when only one run
    has it) and its spend in each."""
    before = first.customers.select(
        "customer_id",
        F.col("segment").alias("before"),
        F.col("spend").alias("spend_before"),
        F.lit(True).alias("in_before"),
    )
    after = second.customers.select(
        "customer_id",
        F.col("segment").alias("after"),
        F.col("spend").alias("spend_after"),
        F.lit(True).alias("in_after"),
    )
    return before.join(after, "customer_id", "full_outer").select(
        "customer_id",
        F.when(F.col("in_before").isNull(), F.lit(NEW)).otherwise(F.col("before")).alias("before"),
        F.when(F.col("in_after").isNull(), F.lit(GONE)).otherwise(F.col("after")).alias("after"),
        "spend_before",
        "spend_after",
    )


def _migration(customers: DataFrame, first: _Run, second: _Run) -> pd.DataFrame:
    """Customers and spend per pair of segments, named, sorted by segment number."""
    cells: pd.DataFrame = (
        customers.groupBy(F.col("before").alias("from_segment"), F.col("after").alias("to_segment"))
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum("spend_before").alias("spend_before"),
            F.sum("spend_after").alias("spend_after"),
        )
        .toPandas()
    )
    cells["from_name"] = [first.names[int(s)] if s != NEW else NEW for s in cells["from_segment"]]
    cells["to_name"] = [second.names[int(s)] if s != GONE else GONE for s in cells["to_segment"]]
    for column, run in (("spend_before", first), ("spend_after", second)):
        # Customers absent from a run spent nothing in it; a run without spend has no figure.
        spend = cells[column].astype(float)
        cells[column] = spend.fillna(0).round(2) if run.has_spend else np.nan
    order = sorted(
        range(len(cells)),
        key=lambda i: (_rank(cells["from_segment"].iat[i]), _rank(cells["to_segment"].iat[i])),
    )
    return cells.iloc[order].reset_index(drop=True)[MIGRATION_COLUMNS]


def _rank(segment: str) -> tuple[int, int]:
    """Segment numbers in numeric order, then "new" or "gone"."""
    return (1, 0) if segment in (NEW, GONE) else (0, int(segment))


def _movement(row: pd.Series) -> str:
    """One move in words: "412 Champions are now At risk, worth 38,200.00 in spend last period"."""
    source, target = row["from_name"], row["to_name"]
    if source == target:  # two segments of the same name: only their numbers tell them apart
        source = segment_label(int(row["from_segment"]), source)
        target = segment_label(int(row["to_segment"]), target)
    worth = (
        ""
        if pd.isna(row["spend_before"])
        else f", worth {row['spend_before']:,.2f} in spend last period"
    )
    return f"{row['customers']:,} {source} are now {target}{worth}"


def _arrivals(migration: pd.DataFrame) -> list[str]:
    arrived = migration[migration["from_segment"] == NEW]
    if arrived.empty:
        return []
    total, most = int(arrived["customers"].sum()), arrived.loc[arrived["customers"].idxmax()]
    where = segment_label(int(most["to_segment"]), most["to_name"])
    return [
        f"{total:,} new customer{'s' * (total != 1)} arrived, most in {where} "
        f"({most['customers']:,})"
    ]


def _departures(migration: pd.DataFrame) -> list[str]:
    left = migration[migration["to_segment"] == GONE]
    if left.empty:
        return []
    total, most = int(left["customers"].sum()), left.loc[left["customers"].idxmax()]
    where = segment_label(int(most["from_segment"]), most["from_name"])
    verb = "customers are" if total != 1 else "customer is"
    return [f"{total:,} {verb} gone, most from {where} ({most['customers']:,})"]


def _id_as_text() -> Column:
    """The customer id, with a leading apostrophe where trimming uncovered text a spreadsheet
    would run as a formula (customers.csv neutralised it only with its spaces)."""
    ids = F.col("customer_id")
    return (
        F.when(ids.rlike(FORMULA_START), F.concat(F.lit("'"), ids))
        .otherwise(ids)
        .alias("customer_id")
    )
