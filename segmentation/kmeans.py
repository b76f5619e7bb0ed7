"""KMeans centres for the segments, fitted on the driver on a random sample of customers.

Why not `pyspark.ml` KMeans: each fit costs a Spark job per Lloyd iteration and per start, at
about 40 ms a job whatever the size, so a sweep of nine k with three starts ran hundreds of
small jobs. Here scikit-learn fits the centres (k-means++, the best of STARTS starts, Lloyd to
convergence) on at most SAMPLE_ROWS customers collected to the driver, all of them when the
table is smaller: milliseconds, bounded however large the table. Spark then labels every
customer with its nearest centre (`cluster_of`, DataFrame expressions only, so a cluster and
Spark Connect run it alike) and segmentation.measurement computes every figure over all of
them; only the centres come from the sample, and the manifest says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segmentation.sql import number, quoted

SAMPLE_ROWS = 50_000  # customers the driver holds to fit centres
STARTS = 4  # k-means++ starts per k on the sample; the lowest sample cost is kept


def squared_distances(columns: Sequence[str], points: np.ndarray) -> list[str]:
    """Per row, the squared Euclidean distance to each point, as Spark SQL text."""
    return [
        " + ".join(
            f"({quoted(c)} - {number(p)}) * ({quoted(c)} - {number(p)})"
            for c, p in zip(columns, point, strict=True)
        )
        for point in points
    ]


def cluster_of(columns: Sequence[str], centres: np.ndarray) -> Column:
    """The nearest centre's id of each row (ties to the lowest id): the column a fitted k labels
    customers with."""
    if len(centres) == 1:
        return F.lit(0)
    to_each = f"array({', '.join(squared_distances(columns, centres))})"
    return F.expr(f"CAST(array_position({to_each}, array_min({to_each})) - 1 AS INT)")


def sample_rows(
    df: DataFrame, columns: Sequence[str | Column], total: int, rows: int, seed: int
) -> pd.DataFrame:
    """Up to `rows` of the `total` rows, `columns` only, collected to the driver (all of them
    when there are fewer)."""
    picked = df.select(*columns)
    if total > rows:
        picked = picked.sample(fraction=min(1.0, 1.1 * rows / total), seed=seed).limit(rows)
    found: pd.DataFrame = picked.toPandas()
    found.attrs = {}  # Spark Connect keeps query metrics here; not JSON
    return found


def nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The cluster_of of each row of `x`, computed on the driver: the same sums in the same order
    as Spark's, so the same ids (ties to the lowest id)."""
    distances = np.empty((len(x), len(centres)))
    for i, point in enumerate(centres):
        total = (x[:, 0] - point[0]) * (x[:, 0] - point[0])
        for j in range(1, x.shape[1]):
            total = total + (x[:, j] - point[j]) * (x[:, j] - point[j])
        distances[:, i] = total
    return distances.argmin(axis=1)


def fit_centres(sample: np.ndarray, k: int, seed: int, max_iter: int) -> np.ndarray:
    """Centres of k segments fitted on the driver's sample by scikit-learn's KMeans (k-means++,
    the best of STARTS starts, Lloyd to convergence): milliseconds for what costs Spark a job
    per iteration. With fewer distinct customers than k, the extra centres repeat the last one
    and stay empty (ties go to the lowest id)."""
    from sklearn.cluster import KMeans

    distinct = len(np.unique(sample, axis=0))
    fitted = KMeans(
        n_clusters=max(1, min(k, distinct)), n_init=STARTS, max_iter=max_iter, random_state=seed
    ).fit(sample)
    centres = fitted.cluster_centers_
    if len(centres) < k:
        centres = np.vstack([centres, np.repeat(centres[-1:], k - len(centres), axis=0)])
    return centres


def principal_axes(sample: np.ndarray, count: int) -> np.ndarray:
    """The `count` principal axes (columns) of the standardized sample, for the customer-space
    charts; each axis signed so that its largest loading is positive (the same every run)."""
    centred = sample - sample.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, ::-1][:, :count]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    return axes * np.where(signs == 0, 1, signs)
