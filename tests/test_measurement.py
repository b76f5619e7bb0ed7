"""The exact passes: every figure over every row, the same for a batch of k as for each k alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from segmentation import kmeans, measurement, metrics

COLUMNS = ["z0", "z1", "z2"]
VALUES = {"Spend": "spend", "Age": "age"}


@pytest.fixture(scope="module")
def table(spark):
    """4,000 rows in four groups (standardized features, two real-unit values, a category),
    with centres for k=2..5 fitted on a 500-row sample."""
    rng = np.random.default_rng(5)
    truth = np.repeat(np.arange(4), 1000)
    x = rng.normal(0, 5, (4, 3))[truth] + rng.normal(0, 1, (len(truth), 3))
    x = (x - x.mean(0)) / x.std(0, ddof=1)
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["spend"] = np.round(rng.lognormal(5, 1, len(x)), 2)
    frame["age"] = rng.integers(18, 80, len(x)).astype(float)
    frame["region"] = rng.choice(["North", "South", None], len(x), p=[0.5, 0.4, 0.1])
    df = spark.createDataFrame(frame).repartition(3).cache()
    df.count()
    sample = kmeans.sample_rows(df, COLUMNS, len(x), 500, seed=2).to_numpy(float)
    centres = {k: kmeans.fit_centres(sample, k, seed=2, max_iter=40).centres for k in range(2, 6)}
    yield df, frame, centres
    df.unpersist()


def labels_of(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(2), 1)


@pytest.fixture(scope="module")
def measured(table):
    """Every k in one batch."""
    df, _, centres = table
    stats = measurement.memberships(df, COLUMNS, centres, ["region"])
    profiled = measurement.profiles(df, COLUMNS, VALUES, centres, stats.stats)
    return stats, profiled


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_quality_figures_are_those_of_scikit_learn_over_every_row(table, measured, k):
    _, frame, centres = table
    stats, profiled = measured
    x = frame[COLUMNS].to_numpy()
    labels = labels_of(x, centres[k])
    assert [s.size for s in stats.stats[k]] == np.bincount(labels, minlength=k)[
        sorted(set(labels))
    ].tolist()
    silhouette = sum(p.silhouette_sum for p in profiled[k].values()) / len(x)
    assert silhouette == pytest.approx(silhouette_score(x, labels, metric="sqeuclidean"), abs=1e-9)
    assert metrics.calinski_harabasz(stats.stats[k]) == pytest.approx(
        calinski_harabasz_score(x, labels), rel=1e-9
    )
    assert metrics.davies_bouldin(stats.stats[k]) == pytest.approx(
        davies_bouldin_score(x, labels), rel=1e-9
    )


def test_feature_statistics_per_cluster_in_real_units(table, measured):
    _, frame, centres = table
    _, profiled = measured
    labels = labels_of(frame[COLUMNS].to_numpy(), centres[4])
    for cluster, profile in profiled[4].items():
        members = frame[labels == cluster]
        for feature, column in VALUES.items():
            got, values = profile.values[feature], members[column]
            assert got["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert (got["min"], got["max"]) == (values.min(), values.max())
            # A KLL sketch: the median's rank is within 0.1% of the middle.
            rank = (values < got["median"]).mean(), (values <= got["median"]).mean()
            assert rank[0] - 0.001 <= 0.5 <= rank[1] + 0.001, (cluster, feature)


def test_splits_and_categorical_counts_match_pandas(table, measured):
    _, frame, centres = table
    stats, _ = measured
    x = frame[COLUMNS].to_numpy()
    at = {k: labels_of(x, centres[k]) for k in centres}
    for k in (2, 3, 4):
        expected = pd.crosstab(at[k], at[k + 1]).stack()
        got = stats.splits[k].set_index(["source", "target"])["count"]
        assert got.to_dict() == expected[expected > 0].to_dict()
    assert 5 not in stats.splits  # no k=6 to split into
    regions = frame["region"].fillna(measurement.MISSING_VALUE)
    expected = pd.crosstab(at[3], regions).stack()
    got = stats.mix[3].set_index(["cluster", "value"])["count"]
    assert got.to_dict() == expected[expected > 0].to_dict()


def test_one_k_alone_gives_the_figures_it_gets_in_a_batch(table, measured):
    df, _, centres = table
    stats, profiled = measured
    alone = measurement.memberships(df, COLUMNS, {4: centres[4]}, ["region"])
    alone_profiles = measurement.profiles(df, COLUMNS, VALUES, {4: centres[4]}, alone.stats)
    for a, b in zip(alone.stats[4], stats.stats[4], strict=True):
        assert (a.cluster, a.size) == (b.cluster, b.size)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
        assert a.spread == pytest.approx(b.spread, rel=1e-12)
    for cluster, profile in alone_profiles[4].items():
        assert profile.silhouette_sum == pytest.approx(
            profiled[4][cluster].silhouette_sum, rel=1e-12
        )
        for feature, got in profile.values.items():
            batch = profiled[4][cluster].values[feature]
            assert got == pytest.approx(batch, rel=1e-12), (cluster, feature)


def test_agreement_counts_shared_customers_per_pair_of_clusters(table):
    df, frame, centres = table
    shifted = {k: c + 0.05 for k, c in centres.items()}
    shared = measurement.agreement(df, COLUMNS, centres, shifted)
    x = frame[COLUMNS].to_numpy()
    for k in centres:
        expected = pd.crosstab(labels_of(x, centres[k]), labels_of(x, shifted[k])).stack()
        got = shared[k].set_index(["a", "b"])["n"]
        assert got.to_dict() == expected[expected > 0].to_dict()


def test_a_supplement_draws_each_short_cluster_with_its_probability(table):
    df, frame, centres = table
    fractions = {3: {0: 0.5, 2: 1.0}, 4: {1: 0.2}}
    drawn = measurement.supplement(df, COLUMNS, centres, fractions, [df["spend"]], seed=1)
    x = frame[COLUMNS].to_numpy()
    for k, wanted in fractions.items():
        sizes = np.bincount(labels_of(x, centres[k]), minlength=k)
        taken = drawn[drawn[f"__take{k}"]]
        assert set(taken[measurement.label(k)]) == set(wanted)
        for cluster, fraction in wanted.items():
            got = (taken[measurement.label(k)] == cluster).sum()
            expected = fraction * sizes[cluster]
            assert abs(got - expected) <= 4 * np.sqrt(expected * (1 - fraction)) + 1, (k, cluster)
    assert {"spend", *COLUMNS} <= set(drawn.columns)
