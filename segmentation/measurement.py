"""Exact figures of fitted segmentations over every customer, several k in each Spark pass.

Every customer is labelled with its nearest centre for each k of a batch. A pass then groups
customers by the combination of their labels: segmentations of one table at neighbouring k
overlap, so there are a few hundred combinations at most, and one pass costs about the same for
ten k as for one. Everything per (k, segment) is summed up again from those groups.

- `memberships`: per (k, cluster) the size, the mean and the sum of squared norms of the
  standardized features; how the clusters of k split at k+1; the count of each categorical
  value.
- `profiles` (needs the memberships): per (k, cluster) the sum of the squared-Euclidean
  silhouette and the mean distance to the cluster's mean (Davies–Bouldin), and per feature in
  real units its mean, minimum, maximum and median. The median comes from KLL sketches (rank
  error about 0.05%), which merge exactly across groups; every other figure is exact.
- `supplement`: customers of clusters a driver sample holds too few of, for the charts.

Labels are Spark SQL expressions (segmentation.kmeans.cluster_of), one definition for every pass
and output. The per-row silhouette is a mapInArrow of vectorised numpy that carries no project
code: a cluster's executors and a Spark Connect server need only PySpark's own numpy and pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from segmentation.kmeans import cluster_of
from segmentation.metrics import ClusterStats
from segmentation.sql import number, quoted

SKETCH_K = 8192  # KLL sketch size per group and feature: median rank error about 0.05%
MISSING_VALUE = "(missing)"


def label(k: int) -> str:
    """The column holding each customer's cluster id at k."""
    return f"__c{k}"


def _squared_norm(columns: Sequence[str]) -> str:
    return " + ".join(f"{quoted(c)} * {quoted(c)}" for c in columns)


def _labels(columns: Sequence[str], centres: Mapping[int, np.ndarray]) -> list[Column]:
    return [cluster_of(columns, points).alias(label(k)) for k, points in sorted(centres.items())]


def category_text(column: str) -> Column:
    """A categorical column's value as the profiles count it (trimmed text, or '(missing)')."""
    return F.coalesce(F.trim(F.col(f"`{column}`").cast("string")), F.lit(MISSING_VALUE))


@dataclass
class Memberships:
    """Per k: its clusters with members, how they split at k+1, their categorical mix."""

    stats: dict[int, list[ClusterStats]]
    splits: dict[int, pd.DataFrame] = field(default_factory=dict)  # k -> source, target, count
    mix: dict[int, pd.DataFrame] = field(default_factory=dict)  # k -> cluster, column, value, count
    rfm: dict[int, pd.DataFrame] = field(default_factory=dict)  # k -> cluster, rfm_segment, count


def memberships(
    df: DataFrame,
    columns: Sequence[str],
    centres: Mapping[int, np.ndarray],
    categorical: Sequence[str] = (),
    rfm_segment: Column | None = None,
) -> Memberships:
    """One pass: sizes, means and squared norms per (k, cluster), splits between consecutive k
    of `centres`, counts of each value of the `categorical` columns and, given each customer's
    `rfm_segment`, how each cluster's customers fall into the RFM segments."""
    ks = sorted(centres)
    labels = [label(k) for k in ks]
    picked: list[str | Column] = [
        *_labels(columns, centres),
        *columns,
        F.expr(_squared_norm(columns)).alias("__q"),
    ]
    keys = list(labels)
    if rfm_segment is not None:
        picked.append(rfm_segment.alias("rfm_segment"))
        keys.append("rfm_segment")
    if categorical:
        # Each customer once per categorical column: counts per value come out of the same pass.
        pairs = [
            F.struct(F.lit(c).alias("column"), category_text(c).alias("value")) for c in categorical
        ]
        picked.append(F.explode(F.array(*pairs)).alias("__pair"))
        keys += ["__pair.column", "__pair.value"]
    groups: pd.DataFrame = (
        df.select(*picked)
        .groupBy(*keys)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("__q").alias("q"),
            *[F.sum(c).alias(f"s{i}") for i, c in enumerate(columns)],
        )
        .toPandas()
    )
    once = groups[groups["column"] == categorical[0]] if categorical else groups
    result = Memberships(stats={k: _cluster_stats(once, label(k), len(columns)) for k in ks})
    for k in ks:
        if k + 1 in centres:
            counted = once.groupby([label(k), label(k + 1)], as_index=False)["n"].sum()
            result.splits[k] = counted.set_axis(["source", "target", "count"], axis=1)
        if categorical:
            mix = groups.groupby([label(k), "column", "value"], as_index=False)["n"].sum()
            result.mix[k] = mix.set_axis(["cluster", "column", "value", "count"], axis=1)
        if rfm_segment is not None:
            cells = once.groupby([label(k), "rfm_segment"], as_index=False)["n"].sum()
            result.rfm[k] = cells.rename(columns={label(k): "cluster", "n": "count"})
    return result


def _cluster_stats(groups: pd.DataFrame, key: str, dims: int) -> list[ClusterStats]:
    summed = groups.groupby(key)[["n", "q", *[f"s{i}" for i in range(dims)]]].sum()
    return [
        ClusterStats(
            cluster=int(cluster),
            size=int(row["n"]),
            mean=np.array([row[f"s{i}"] for i in range(dims)], dtype=float) / row["n"],
            sum_sq_norm=float(row["q"]),
        )
        for cluster, row in summed.sort_index().iterrows()
    ]


@dataclass
class ClusterProfile:
    """One cluster's silhouette sum and, per feature in real units, mean, median, min and max."""

    silhouette_sum: float
    values: dict[str, dict[str, float]]


def profiles(
    df: DataFrame,
    columns: Sequence[str],
    value_columns: Mapping[str, str],
    centres: Mapping[int, np.ndarray],
    stats: Mapping[int, list[ClusterStats]],
) -> dict[int, dict[int, ClusterProfile]]:
    """One pass: per (k, cluster) the silhouette sum and the features' statistics; stores each
    cluster's mean distance to its mean on its ClusterStats (`spread`, for Davies–Bouldin).

    `value_columns` maps each feature to the column holding it in real units.

    The mean squared distance of x to the members of C is |x|² - 2 x·mean_C + sumsq_C / n_C, so
    the silhouette costs O(n·k), not O(n²). A customer alone in its cluster scores 0.
    """
    ks = sorted(centres)
    rows = _scored_rows(df, columns, list(value_columns.values()), centres, stats)
    groups = _label_groups(rows, ks, len(value_columns))
    per_cluster = _per_cluster(groups, ks, len(value_columns))
    return _cluster_profiles(per_cluster, ks, list(value_columns), stats)


def _scored_rows(
    df: DataFrame,
    columns: Sequence[str],
    values: Sequence[str],
    centres: Mapping[int, np.ndarray],
    stats: Mapping[int, list[ClusterStats]],
) -> DataFrame:
    """Each customer's cluster ids, real-unit `values` (`__v<i>`) and, per k, silhouette
    (`__s<k>`) and distance to its cluster's mean (`__r<k>`): all the pass needs per row."""
    ks = sorted(centres)
    labels = [label(k) for k in ks]
    kept = [*labels, *[f"__v{i}" for i in range(len(values))]]
    labelled = df.select(
        *_labels(columns, centres),
        *[F.col(v).cast("double").alias(f"__v{i}") for i, v in enumerate(values)],
        *[F.col(f"`{c}`").alias(f"__x{i}") for i, c in enumerate(columns)],
    )
    members = {k: _member_arrays(stats[k], len(centres[k]), len(columns)) for k in ks}
    schema = [f"{c} INT" for c in labels] + [
        f"{c} DOUBLE" for c in [*kept[len(labels) :], *[f"__{n}{k}" for k in ks for n in "sr"]]
    ]
    return labelled.mapInArrow(
        _silhouettes_and_spreads(members, dict(zip(ks, labels, strict=True)), kept, len(columns)),
        ", ".join(schema),
    )


def _label_groups(rows: DataFrame, ks: Sequence[int], features: int) -> DataFrame:
    """Per combination of cluster ids: sums, extremes and median sketches, which merge exactly
    per (k, cluster) afterwards; a few hundred groups at most, however many customers."""
    values = [F.col(f"__v{i}") for i in range(features)]
    return rows.groupBy(*[label(k) for k in ks]).agg(
        F.count(F.lit(1)).alias("n"),
        *[F.sum(f"__s{k}").alias(f"s{k}") for k in ks],
        *[F.sum(f"__r{k}").alias(f"r{k}") for k in ks],
        *[F.sum(v).alias(f"sum{i}") for i, v in enumerate(values)],
        *[F.min(v).alias(f"min{i}") for i, v in enumerate(values)],
        *[F.max(v).alias(f"max{i}") for i, v in enumerate(values)],
        *[F.kll_sketch_agg_double(v, SKETCH_K).alias(f"kll{i}") for i, v in enumerate(values)],
    )


def _each_k(ks: Sequence[int]) -> Column:
    """Each group once per k, under that k's cluster id, so one groupBy sums every k at once."""
    return F.explode(
        F.array(
            *[
                F.struct(
                    F.lit(k).alias("k"),
                    F.col(label(k)).alias("cluster"),
                    F.col(f"s{k}").alias("silhouette"),
                    F.col(f"r{k}").alias("spread"),
                )
                for k in ks
            ]
        )
    ).alias("__k")


def _per_cluster(groups: DataFrame, ks: Sequence[int], features: int) -> list[Row]:
    """The groups summed up per (k, cluster), each feature's median read off the merged sketch."""
    kept = ["n", *[f"{stat}{i}" for stat in ("sum", "min", "max", "kll") for i in range(features)]]
    return (
        groups.select(_each_k(ks), *kept)
        .groupBy("__k.k", "__k.cluster")
        .agg(
            F.sum("n").alias("n"),
            F.sum("__k.silhouette").alias("silhouette"),
            F.sum("__k.spread").alias("spread"),
            *[F.sum(f"sum{i}").alias(f"sum{i}") for i in range(features)],
            *[F.min(f"min{i}").alias(f"min{i}") for i in range(features)],
            *[F.max(f"max{i}").alias(f"max{i}") for i in range(features)],
            *[F.kll_merge_agg_double(f"kll{i}").alias(f"kll{i}") for i in range(features)],
        )
        .select(
            "k",
            "cluster",
            "n",
            "silhouette",
            "spread",
            *[F.col(f"{stat}{i}") for stat in ("sum", "min", "max") for i in range(features)],
            *[
                F.kll_sketch_get_quantile_double(f"kll{i}", F.lit(0.5)).alias(f"median{i}")
                for i in range(features)
            ],
        )
        .collect()
    )


def _cluster_profiles(
    per_cluster: Sequence[Row],
    ks: Sequence[int],
    features: Sequence[str],
    stats: Mapping[int, list[ClusterStats]],
) -> dict[int, dict[int, ClusterProfile]]:
    """The profiles out of the per-(k, cluster) rows; each cluster's spread goes on its stats."""
    by_cluster = {(k, s.cluster): s for k in ks for s in stats[k]}
    result: dict[int, dict[int, ClusterProfile]] = {k: {} for k in ks}
    for r in per_cluster:
        n = r["n"]
        by_cluster[(r["k"], r["cluster"])].spread = r["spread"] / n
        result[r["k"]][r["cluster"]] = ClusterProfile(
            silhouette_sum=r["silhouette"],
            values={
                feature: {
                    "mean": r[f"sum{i}"] / n,
                    "median": r[f"median{i}"],
                    "min": r[f"min{i}"],
                    "max": r[f"max{i}"],
                }
                for i, feature in enumerate(features)
            },
        )
    return result


def _member_arrays(stats: Sequence[ClusterStats], k: int, dims: int) -> dict[str, np.ndarray]:
    """Per cluster id of one k: its mean, its members' mean squared norm, n / (n - 1) and
    sumsq / n - |mean|² (NaN for a cluster without members or, for n / (n - 1), alone)."""
    arrays = {
        "mean": np.zeros((k, dims)),
        "norm": np.full(k, np.nan),
        "shrink": np.full(k, np.nan),
        "offset": np.full(k, np.nan),
    }
    for s in stats:
        arrays["mean"][s.cluster] = s.mean
        arrays["norm"][s.cluster] = s.sum_sq_norm / s.size
        arrays["shrink"][s.cluster] = s.size / (s.size - 1) if s.size > 1 else np.nan
        arrays["offset"][s.cluster] = s.sum_sq_norm / s.size - float(s.mean @ s.mean)
    return arrays


def _silhouettes_and_spreads(
    members: Mapping[int, dict[str, np.ndarray]],
    labels: Mapping[int, str],
    kept: Sequence[str],
    dims: int,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function of a mapInArrow over rows of `dims` standardized features (`__x<i>`) and each k's
    cluster id (`labels`) that returns the `kept` columns and, per k, each row's
    squared-Euclidean silhouette (`__s<k>`) and distance to its cluster's mean (`__r<k>`).

    Vectorised numpy over Arrow batches: per row and k it is a few dozen operations, which
    Spark's generated code ran tens of times slower (arrays of boxed numbers, and methods too
    big for the JIT). Self-contained (numpy and pyarrow only), so executors need no project
    code. The mean squared distance of x to the members of C is |x|² - 2 x·mean_C + sumsq_C /
    n_C; the nearest other cluster is the smallest of those over the clusters other than the
    row's own that have members. A customer alone in its cluster, or in the only cluster with
    members, scores 0.
    """

    def compute(batches):
        import numpy as np
        import pyarrow as pa

        for batch in batches:
            x = np.column_stack(
                [batch.column(f"__x{i}").to_numpy(zero_copy_only=False) for i in range(dims)]
            )
            squared = np.einsum("ij,ij->i", x, x)
            rows = np.arange(len(x))
            out = {name: batch.column(name) for name in kept}
            for k, m in members.items():
                own_id = batch.column(labels[k]).to_numpy(zero_copy_only=False)
                to_members = squared[:, None] - 2 * (x @ m["mean"].T) + m["norm"]
                own = to_members[rows, own_id]
                inside = own * m["shrink"][own_id]
                others = np.where(np.isnan(to_members), np.inf, to_members)
                others[rows, own_id] = np.inf
                nearest = others.min(axis=1)
                larger = np.fmax(nearest, inside)
                with np.errstate(invalid="ignore", divide="ignore"):
                    score = (nearest - inside) / larger
                valid = np.isfinite(nearest) & ~np.isnan(inside) & (larger > 0)
                out[f"__s{k}"] = pa.array(np.where(valid, score, 0.0))
                out[f"__r{k}"] = pa.array(np.sqrt(np.maximum(own - m["offset"][own_id], 0.0)))
            yield pa.RecordBatch.from_pydict(out)

    return compute


def supplement(
    df: DataFrame,
    columns: Sequence[str],
    centres: Mapping[int, np.ndarray],
    fractions: Mapping[int, Mapping[int, float]],
    keep: Sequence[Column],
    seed: int,
) -> pd.DataFrame:
    """Customers of the clusters that a driver sample holds too few of: each cluster c of k
    drawn with probability fractions[k][c]. Returns the `keep` columns, the standardized
    `columns`, each k's cluster id and whether the row was drawn for it (`__take<k>`)."""
    ks = sorted(fractions)
    draws = [
        F.expr(
            f"element_at(array({', '.join(number(fractions[k].get(c, 0.0)) for c in range(len(centres[k])))}), `{label(k)}` + 1) > `__u`"
        ).alias(f"__take{k}")
        for k in ks
    ]
    found: pd.DataFrame = (
        df.select(*keep, *columns, *_labels(columns, {k: centres[k] for k in ks}))
        .withColumn("__u", F.rand(seed))
        .select("*", *draws)
        .where(" OR ".join(f"`__take{k}`" for k in ks))
        .toPandas()
    )
    found.attrs = {}  # Spark Connect keeps query metrics here; not JSON
    return found


def agreement(
    df: DataFrame,
    columns: Sequence[str],
    first: Mapping[int, np.ndarray],
    second: Mapping[int, np.ndarray],
) -> dict[int, pd.DataFrame]:
    """Per k, how many customers each pair of clusters (a from `first`, b from `second`) shares:
    the contingency table the adjusted Rand index is computed from. One pass for every k."""
    ks = sorted(first)
    other = [cluster_of(columns, second[k]).alias(f"__d{k}") for k in ks]
    keys = [*[label(k) for k in ks], *[f"__d{k}" for k in ks]]
    groups: pd.DataFrame = (
        df.select(*_labels(columns, first), *other)
        .groupBy(*keys)
        .agg(F.count(F.lit(1)).alias("n"))
        .toPandas()
    )
    return {
        k: groups.groupby([label(k), f"__d{k}"], as_index=False)["n"]
        .sum()
        .set_axis(["a", "b", "n"], axis=1)
        for k in ks
    }
