"""The KMeans engine: centres from a driver-side sample, exact figures over every row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

from segmentation import kmeans, metrics

COLUMNS = ["z0", "z1", "z2"]


@pytest.fixture(scope="module")
def blobs(spark):
    """6,000 rows in four well-separated groups, standardized, cached in Spark."""
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 6, (4, 3))
    truth = np.repeat(np.arange(4), 1500)
    x = centres[truth] + rng.normal(0, 1, (len(truth), 3))
    x = (x - x.mean(0)) / x.std(0, ddof=1)
    df = spark.createDataFrame(pd.DataFrame(x, columns=COLUMNS)).repartition(3).cache()
    df.count()
    yield df, x, truth
    df.unpersist()


def labels_of(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(2), 1)


def test_centres_fitted_on_a_sample_recover_the_groups_and_figures_cover_every_row(blobs):
    df, x, truth = blobs
    sample = kmeans.sample_matrix(df, COLUMNS, len(x), 600, seed=1)
    assert 500 <= len(sample) <= 600
    fit = kmeans.fit(df, COLUMNS, sample, 4, seed=1, max_iter=40)
    assert fit.fitted_on == len(sample)
    labels = labels_of(x, fit.centres)
    assert adjusted_rand_score(truth, labels) > 0.99
    # Sizes, silhouette, Calinski–Harabasz and Davies–Bouldin are exact over all 6,000 rows.
    assert sorted(s.size for s in fit.stats) == sorted(np.bincount(labels).tolist())
    assert sum(s.size for s in fit.stats) == len(x)
    assert fit.silhouette == pytest.approx(
        silhouette_score(x, labels, metric="sqeuclidean"), abs=1e-9
    )
    assert metrics.calinski_harabasz(fit.stats) == pytest.approx(
        calinski_harabasz_score(x, labels), rel=1e-9
    )
    assert metrics.davies_bouldin(fit.stats) == pytest.approx(
        davies_bouldin_score(x, labels), rel=1e-9
    )


def test_same_seed_same_centres_and_a_spark_label_for_every_row(blobs):
    df, x, _ = blobs
    sample = kmeans.sample_matrix(df, COLUMNS, len(x), 1000, seed=7)
    again = kmeans.sample_matrix(df, COLUMNS, len(x), 1000, seed=7)
    np.testing.assert_array_equal(sample, again)
    first = kmeans.fit(df, COLUMNS, sample, 5, seed=7, max_iter=40)
    second = kmeans.fit(df, COLUMNS, again, 5, seed=7, max_iter=40)
    np.testing.assert_array_equal(first.centres, second.centres)
    spark_labels = df.select(
        *COLUMNS, kmeans.cluster_of(COLUMNS, first.centres).alias("c")
    ).toPandas()
    expected = labels_of(spark_labels[COLUMNS].to_numpy(), first.centres)
    np.testing.assert_array_equal(spark_labels["c"].to_numpy(), expected)


def test_more_segments_than_distinct_customers_leaves_the_extra_ones_empty(spark):
    df = spark.createDataFrame(pd.DataFrame({"z0": [0.0, 0.0, 1.0, 1.0], "z1": [1.0] * 4}))
    sample = kmeans.sample_matrix(df, ["z0", "z1"], 4, 100, seed=0)
    fit = kmeans.fit(df, ["z0", "z1"], sample, 3, seed=0, max_iter=10)
    assert sorted(s.size for s in fit.stats) == [2, 2]
    assert fit.silhouette == pytest.approx(1.0)
