"""KMeans for the segments: centres fitted on a driver-side sample, figures exact over everyone.

Why not `pyspark.ml` KMeans: each fit costs a Spark job per Lloyd iteration and per start, at
about 40 ms a job whatever the size, so a sweep of nine k with three starts ran hundreds of small
jobs. Here:

- centres are fitted by scikit-learn (k-means++, the best of STARTS starts, Lloyd to
  convergence) on a random sample of at most SAMPLE_ROWS customers collected to the driver, all
  of them when the table is smaller; milliseconds, and bounded however large the table;
- then two passes over the whole cached table, written with DataFrame expressions only (no
  Python on executors, so a cluster and Spark Connect run them alike): every customer is
  assigned to its nearest centre and each segment's size, mean and sum of squared norms are
  summed; then the squared-Euclidean silhouette and each segment's spread. Every figure the app
  shows is exact over every customer; only the centres come from the sample, and the manifest
  says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segmentation.metrics import ClusterStats

SAMPLE_ROWS = 50_000  # customers the driver holds to choose starts
STARTS = 4  # k-means++ starts per k on the sample; the lowest sample cost is kept


@dataclass
class Fit:
    """One fitted k: its centres, exact per-cluster figures and how it got there."""

    k: int
    centres: np.ndarray  # k x dims, in the standardized space
    stats: list[ClusterStats]  # clusters with members, by cluster id
    silhouette: float | None
    fitted_on: int  # customers the centres were fitted on


def distances(columns: Sequence[str], points: np.ndarray) -> Column:
    """Per row, the array of squared distances to each centre."""
    values = [F.col(c) for c in columns]
    return F.array(
        *[
            sum(
                (
                    (v - float(p)) * (v - float(p))
                    for v, p in zip(values[1:], point[1:], strict=True)
                ),
                (values[0] - float(point[0])) * (values[0] - float(point[0])),
            )
            for point in points
        ]
    )


def cluster_of(columns: Sequence[str], centres: np.ndarray) -> Column:
    """The nearest centre's id of each row (ties to the lowest id): the column a fitted k labels
    customers with. Array functions keep the generated code small for many k at once."""
    if len(centres) == 1:
        return F.lit(0)
    to_each = distances(columns, centres)
    return (F.array_position(to_each, F.array_min(to_each)) - 1).cast("int")


def sample_matrix(
    df: DataFrame, columns: Sequence[str], total: int, rows: int, seed: int
) -> np.ndarray:
    """Up to `rows` of the `total` rows, `columns` only, as a numpy matrix (all when few)."""
    picked = df.select(*columns)
    if total > rows:
        picked = picked.sample(fraction=min(1.0, 1.1 * rows / total), seed=seed).limit(rows)
    return picked.toPandas().to_numpy(dtype=float)


def starting_centres(x: np.ndarray, k: int, seed: int, max_iter: int) -> np.ndarray:
    """Centres of k segments fitted on the driver's sample by scikit-learn's KMeans (k-means++,
    the best of STARTS starts, Lloyd to convergence): milliseconds for what costs Spark a job per
    iteration."""
    from sklearn.cluster import KMeans

    fitted = KMeans(
        n_clusters=min(k, len(x)), n_init=STARTS, max_iter=max_iter, random_state=seed
    ).fit(x)
    centres = fitted.cluster_centers_
    if len(centres) < k:  # fewer sampled customers than segments: the extra ones stay empty
        centres = np.vstack([centres, np.repeat(centres[-1:], k - len(centres), axis=0)])
    return centres


def _members(df: DataFrame, columns: Sequence[str], centres: np.ndarray) -> list[ClusterStats]:
    """One pass: per cluster, its members, the mean of their vectors and their squared norms."""
    squared = sum((F.col(c) * F.col(c) for c in columns[1:]), F.col(columns[0]) * F.col(columns[0]))
    rows = (
        df.groupBy(cluster_of(columns, centres).alias("c"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(squared).alias("q"),
            *[F.avg(c).alias(f"m{i}") for i, c in enumerate(columns)],
        )
        .collect()
    )
    return [
        ClusterStats(
            cluster=r["c"],
            size=r["n"],
            mean=np.array([r[f"m{i}"] for i in range(len(columns))], dtype=float),
            sum_sq_norm=float(r["q"]),
        )
        for r in sorted(rows, key=lambda r: r["c"])
    ]


def fit(
    df: DataFrame, columns: Sequence[str], sample: np.ndarray, k: int, seed: int, max_iter: int
) -> Fit:
    """Fit k segments: centres on the driver's `sample`, then two exact passes over `df` (the
    cached table of standardized `columns`). One k per Spark query: the generated code of many k
    in one query grows past what the JVM compiles well."""
    centres = starting_centres(sample, k, seed, max_iter)
    stats = _members(df, columns, centres)
    silhouette = _silhouette_and_spreads(df, columns, centres, stats)
    return Fit(k, centres, stats, silhouette, len(sample))


def _silhouette_and_spreads(
    df: DataFrame, columns: Sequence[str], centres: np.ndarray, stats: list[ClusterStats]
) -> float | None:
    """One pass over every row: the squared-Euclidean silhouette (as scikit-learn's
    `silhouette_score(metric='sqeuclidean')` and Spark's ClusteringEvaluator), and each
    cluster's mean Euclidean distance to its mean, stored on its ClusterStats for Davies–Bouldin.

    The mean squared distance of x to the members of C is |x|² - 2 x·mean_C + sumsq_C / n_C, so
    the silhouette costs O(n·k), not O(n²). A customer alone in its cluster scores 0.
    """
    values = [F.col(c) for c in columns]
    squared = sum((v * v for v in values[1:]), values[0] * values[0])
    label = F.col("__label")
    to_members = {
        s.cluster: squared
        - 2 * sum(v * float(m) for v, m in zip(values, s.mean, strict=True))
        + s.sum_sq_norm / s.size
        for s in stats
    }
    inside = nearest_other = spread = None
    for s in stats:
        mine = label == s.cluster
        alone = s.size < 2
        within = F.lit(None) if alone else to_members[s.cluster] * (s.size / (s.size - 1))
        to_centre = F.sqrt(
            sum(((v - float(m)) * (v - float(m)) for v, m in zip(values, s.mean, strict=True)))
        )
        inside = F.when(mine, within) if inside is None else inside.when(mine, within)
        spread = F.when(mine, to_centre) if spread is None else spread.when(mine, to_centre)
        other = F.when(mine, float("inf")).otherwise(to_members[s.cluster])
        nearest_other = other if nearest_other is None else F.least(nearest_other, other)
    larger = F.greatest(nearest_other, inside)
    score = F.coalesce(F.when(larger > 0, (nearest_other - inside) / larger), F.lit(0.0))
    rows = (
        df.select(*values, cluster_of(columns, centres).alias("__label"))
        .groupBy(label)
        .agg(F.sum(score).alias("s"), F.avg(spread).alias("r"))
        .collect()
    )
    by_cluster = {s.cluster: s for s in stats}
    for r in rows:
        by_cluster[r["__label"]].spread = float(r["r"])
    if len(stats) < 2:
        return None
    return sum(r["s"] for r in rows) / sum(s.size for s in stats)
