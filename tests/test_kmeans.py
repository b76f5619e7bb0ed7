"""KMeans centres from a driver-side sample, the Spark label of every row, principal axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from segmentation import kmeans

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


def sample(df, total: int, rows: int, seed: int, columns=COLUMNS) -> np.ndarray:
    return kmeans.sample_rows(df, columns, total, rows, seed).to_numpy(float)


def test_centres_fitted_on_a_sample_recover_the_groups(blobs):
    df, x, truth = blobs
    drawn = sample(df, len(x), 600, seed=1)
    assert 500 <= len(drawn) <= 600
    centres = kmeans.fit_centres(drawn, 4, seed=1, max_iter=40).centres
    assert centres.shape == (4, 3)
    assert adjusted_rand_score(truth, labels_of(x, centres)) > 0.99


def test_same_seed_same_centres_and_a_spark_label_for_every_row(blobs):
    df, x, _ = blobs
    drawn = sample(df, len(x), 1000, seed=7)
    again = sample(df, len(x), 1000, seed=7)
    np.testing.assert_array_equal(drawn, again)
    first = kmeans.fit_centres(drawn, 5, seed=7, max_iter=40).centres
    np.testing.assert_array_equal(first, kmeans.fit_centres(again, 5, seed=7, max_iter=40).centres)
    spark_labels = df.select(*COLUMNS, kmeans.cluster_of(COLUMNS, first).alias("c")).toPandas()
    expected = labels_of(spark_labels[COLUMNS].to_numpy(), first)
    np.testing.assert_array_equal(spark_labels["c"].to_numpy(), expected)
    # The driver's labels are Spark's, bit for bit, also for points equally far from two centres.
    np.testing.assert_array_equal(
        kmeans.nearest(spark_labels[COLUMNS].to_numpy(), first), spark_labels["c"].to_numpy()
    )


def test_a_customer_halfway_between_two_centres_goes_to_the_lowest_id_on_both_sides(spark):
    centres = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])
    points = pd.DataFrame({"z0": [0.0, 0.1, -0.1], "z1": [0.0, 0.0, 0.0]})
    df = spark.createDataFrame(points)
    spark_labels = df.select(kmeans.cluster_of(["z0", "z1"], centres).alias("c")).toPandas()
    assert spark_labels["c"].tolist() == [0, 0, 1]
    assert kmeans.nearest(points.to_numpy(), centres).tolist() == [0, 0, 1]


def test_more_segments_than_distinct_customers_leaves_the_extra_ones_empty(spark):
    df = spark.createDataFrame(pd.DataFrame({"z0": [0.0, 0.0, 1.0, 1.0], "z1": [1.0] * 4}))
    drawn = sample(df, 4, 100, seed=0, columns=["z0", "z1"])
    centres = kmeans.fit_centres(drawn, 3, seed=0, max_iter=10).centres
    labels = df.select(kmeans.cluster_of(["z0", "z1"], centres).alias("c")).toPandas()["c"]
    assert sorted(labels.value_counts().tolist()) == [2, 2]
    assert 2 not in set(labels)  # the repeated centre loses every tie


def test_principal_axes_are_those_of_scikit_learn_with_a_fixed_sign(blobs):
    _, x, _ = blobs
    axes = kmeans.principal_axes(x, 2)
    reference = PCA(2).fit(x).components_.T
    for i in range(2):
        assert abs(float(axes[:, i] @ reference[:, i])) == pytest.approx(1.0, abs=1e-9)
        assert axes[np.abs(axes[:, i]).argmax(), i] > 0
    np.testing.assert_array_equal(axes, kmeans.principal_axes(x, 2))
