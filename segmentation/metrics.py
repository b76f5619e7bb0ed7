"""Cluster quality figures from per-segment aggregates: sums of squares, Calinski–Harabasz,
Davies–Bouldin.

The aggregates (count, mean vector, sum of squared norms, mean distance to the mean) come from
Spark passes over every customer (segmentation.kmeans, which also computes the silhouette), so
no table is ever pulled to the driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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
