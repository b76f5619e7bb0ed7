"""Cluster quality figures computed in Spark: silhouette, sums of squares, Calinski–Harabasz, Davies–Bouldin.

Spark ships only the silhouette; the others come from per-segment aggregates (count, mean vector,
sum of squared norms, mean distance to the centre), so no table is ever pulled to the driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass
class ClusterStats:
    """Aggregates of one cluster in the standardized feature space."""

    cluster: int
    size: int
    mean: np.ndarray
    sum_sq_norm: float
    spread: float = 0.0  # mean Euclidean distance of members to the cluster mean

    @property
    def within_ss(self) -> float:
        """Sum of squared distances to the cluster mean, from sum(|x|^2) - n|mean|^2."""
        return max(self.sum_sq_norm - self.size * float(self.mean @ self.mean), 0.0)


def cluster_stats(
    df: DataFrame, vector_col: str, cluster_col: str, dims: int
) -> list[ClusterStats]:
    """One pass: size, mean vector and sum of squared norms per cluster, then one for spreads."""
    arr = vector_to_array(F.col(vector_col))
    values = [arr[i] for i in range(dims)]
    sq_norm = sum((v * v for v in values[1:]), values[0] * values[0])
    rows = (
        df.groupBy(cluster_col)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(sq_norm).alias("ss"),
            *[F.avg(v).alias(f"m{i}") for i, v in enumerate(values)],
        )
        .collect()
    )
    stats = {
        r[cluster_col]: ClusterStats(
            cluster=r[cluster_col],
            size=r["n"],
            mean=np.array([r[f"m{i}"] for i in range(dims)], dtype=float),
            sum_sq_norm=r["ss"],
        )
        for r in rows
    }
    # Mean Euclidean distance to the cluster's own mean, for Davies–Bouldin.
    cluster = F.col(cluster_col)
    center = [F.lit(None).cast("double")] * dims
    for c, s in stats.items():
        center = [F.when(cluster == c, float(s.mean[i])).otherwise(center[i]) for i in range(dims)]
    dist = F.sqrt(
        sum(((values[i] - center[i]) ** 2 for i in range(1, dims)), (values[0] - center[0]) ** 2)
    )
    for r in df.groupBy(cluster_col).agg(F.avg(dist).alias("spread")).collect():
        stats[r[cluster_col]].spread = r["spread"]
    return [stats[c] for c in sorted(stats)]


def within_ss(stats: list[ClusterStats]) -> float:
    """Within-cluster sum of squares (the elbow criterion)."""
    return float(sum(s.within_ss for s in stats))


def calinski_harabasz(stats: list[ClusterStats]) -> float | None:
    """Between- over within-cluster dispersion, each per degree of freedom; higher is better."""
    n = sum(s.size for s in stats)
    k = len(stats)
    if k < 2 or n <= k:
        return None
    overall = sum(s.size * s.mean for s in stats) / n
    between = sum(s.size * float((s.mean - overall) @ (s.mean - overall)) for s in stats)
    within = within_ss(stats)
    if within == 0:
        return math.inf
    return between * (n - k) / (within * (k - 1))


def davies_bouldin(stats: list[ClusterStats]) -> float | None:
    """Mean over clusters of the worst (spread_i + spread_j) / centre distance; lower is better."""
    if len(stats) < 2:
        return None
    worst = []
    for a in stats:
        ratios = []
        for b in stats:
            if a is b:
                continue
            gap = float(np.linalg.norm(a.mean - b.mean))
            ratios.append(math.inf if gap == 0 else (a.spread + b.spread) / gap)
        worst.append(max(ratios))
    return float(np.mean(worst))


def silhouette(df: DataFrame, vector_col: str, cluster_col: str, clusters: int) -> float | None:
    """Spark's silhouette with squared Euclidean distance, over every customer (None for 1 cluster)."""
    if clusters < 2:
        return None
    evaluator = ClusteringEvaluator(
        featuresCol=vector_col,
        predictionCol=cluster_col,
        metricName="silhouette",
        distanceMeasure="squaredEuclidean",
    )
    return float(evaluator.evaluate(df))
