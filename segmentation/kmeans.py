"""KMeans centres for the segments: by default fitted on the driver on a random sample of
customers, or by Spark ML's KMeans on every customer.

Why a sample by default: `pyspark.ml` KMeans costs a Spark job per Lloyd iteration, per start
and per k, so a sweep of nine k ran hundreds of small jobs. scikit-learn fits the centres
(k-means++, the best of STARTS starts, Lloyd to convergence) on at most SAMPLE_ROWS customers
collected to the driver, all of them when the table is smaller: seconds, bounded however large
the table. `fit_every_customer` is the other choice, for what a sample can miss (tiny segments,
many features, a table far larger than the sample). Either way Spark then labels every customer
with its nearest centre (`cluster_of`, DataFrame expressions only, so a cluster and Spark
Connect run it alike) and segmentation.measurement computes every figure over all of them; the
manifest says how the centres were fitted and whether the fit converged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segmentation.sql import number, quoted

if TYPE_CHECKING:  # Spark ML is loaded only by a fit on every customer
    from pyspark.ml.clustering import KMeansModel

SAMPLE_ROWS = 50_000  # customers the driver holds to fit centres
STARTS = 4  # k-means++ starts per k on the sample; the lowest sample cost is kept
# Lloyd stops when the centres' total squared shift falls below TOL times the features' mean
# variance (scikit-learn's rule; the features are standardized, so about TOL itself).
TOL = 1e-4


@dataclass(frozen=True)
class Fit:
    """The centres of one k and how their fit ended: whether Lloyd converged is reported, never
    assumed (a fit cut off by the iteration cap can be measurably worse)."""

    centres: np.ndarray  # k x features, standardized
    iterations: int
    converged: bool  # stopped by the tolerance, before the iteration cap
    model: KMeansModel | None = None  # Spark ML's model, when fitted on every customer


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


def fit_centres(sample: np.ndarray, k: int, seed: int, max_iter: int) -> Fit:
    """Centres of k segments fitted on the driver's sample by scikit-learn's KMeans (k-means++,
    the best of STARTS starts, Lloyd to TOL or `max_iter`): milliseconds for what costs Spark a
    job per iteration."""
    from sklearn.cluster import KMeans

    distinct = len(np.unique(sample, axis=0))
    fitted = KMeans(
        n_clusters=max(1, min(k, distinct)),
        n_init=STARTS,
        max_iter=max_iter,
        tol=TOL,
        random_state=seed,
    ).fit(sample)
    iterations = int(fitted.n_iter_)  # of the start kept
    return Fit(_padded(fitted.cluster_centers_, k), iterations, iterations < max_iter)


def _padded(centres: np.ndarray, k: int) -> np.ndarray:
    """k centres: with fewer distinct customers than k a fit finds fewer, and the extra centres
    repeat the last one and stay empty (ties go to the lowest id)."""
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


def fit_every_customer(
    table: DataFrame, columns: Sequence[str], k: int, seed: int, max_iter: int
) -> Fit:
    """Centres of k segments fitted by Spark ML's KMeans on every customer (k-means||, seeded,
    one start), for tables whose sample would miss tiny segments or blur many features.

    The vector KMeans sees holds exactly the standardized `columns`, in order, so its centres
    are in the same space as a sample fit's and the saved model places customers alike.
    Spark stops when every centre moved less than its `tol`; sqrt(TOL / k) makes that at least
    as strict as the sample fit's rule.
    """
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import VectorAssembler

    # Plain names: VectorAssembler reads a name with a dot as a nested field.
    plain = [f"x{i}" for i in range(len(columns))]
    features = VectorAssembler(inputCols=plain, outputCol="features").transform(
        table.select(*[F.col(quoted(c)).alias(p) for c, p in zip(columns, plain, strict=True)])
    )
    estimator = KMeans(k=k, seed=seed, maxIter=max_iter, tol=(TOL / k) ** 0.5, initMode="k-means||")
    model = estimator.fit(features)
    iterations = int(model.summary.numIter)
    centres = _padded(np.array(model.clusterCenters(), dtype=float), k)
    return Fit(centres, iterations, iterations < max_iter, model)
