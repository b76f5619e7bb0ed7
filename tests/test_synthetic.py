"""Synthetic customers: the table's shape, determinism, missing values, files and recoverability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from segmentation.synthetic import (
    ARCHETYPES,
    CATEGORIES,
    FEATURES,
    REGIONS,
    make_customers,
    write_customers,
)

COLUMNS = ["CustomerID", "Age", "Spend", "Recency", "Frequency", "Category", "Region"]


def features(table: pd.DataFrame, *, log_spend: bool) -> np.ndarray:
    """What the pipeline does: median imputation, then log1p or IQR-capped Spend, z-scores."""
    values = table[list(FEATURES)].to_numpy(dtype=float, na_value=np.nan)
    values = np.where(np.isnan(values), np.nanmedian(values, axis=0), values)
    spend = values[:, 1]
    if log_spend:
        values[:, 1] = np.log1p(spend)
    else:
        q1, q3 = np.percentile(spend, [25, 75])
        values[:, 1] = np.minimum(spend, q3 + 1.5 * (q3 - q1))
    return StandardScaler().fit_transform(values)


def recovered(table: pd.DataFrame, segments: int, *, log_spend: bool) -> np.ndarray:
    model = KMeans(n_clusters=segments, n_init=10, random_state=0)
    return model.fit_predict(features(table, log_spend=log_spend))


def test_columns_dtypes_and_ranges():
    table, segment = make_customers(5_000, seed=1)

    assert list(table.columns) == COLUMNS
    assert len(table) == len(segment) == 5_000
    assert set(np.unique(segment)) == {0, 1, 2, 3}
    assert table["CustomerID"].iloc[0] == "C0000001"
    assert table["CustomerID"].is_unique
    for name in ("Age", "Recency", "Frequency"):
        assert pd.api.types.is_integer_dtype(table[name])
    assert pd.api.types.is_float_dtype(table["Spend"])
    assert table["Age"].between(18, 85).all()
    assert (table["Spend"].dropna() > 0).all()
    assert np.allclose(table["Spend"].dropna(), table["Spend"].dropna().round(2))
    assert (table["Recency"].dropna() >= 0).all()
    assert (table["Frequency"].dropna() >= 1).all()
    assert set(table["Category"].unique()) == set(CATEGORIES)
    assert set(table["Region"].unique()) == set(REGIONS)


def test_spend_is_right_skewed():
    spend = make_customers(20_000, seed=2)[0]["Spend"].dropna()

    assert spend.mean() > 1.5 * spend.median()
    assert spend.skew() > 0.5


def test_segments_look_like_their_archetypes():
    table, segment = make_customers(20_000, seed=3, missing_rate=0.0)
    profile = table[list(FEATURES)].astype(float).groupby(segment).median()
    champions, hibernating, new, big = (profile.loc[i] for i in range(4))

    assert [a.name for a in ARCHETYPES[:4]] == [
        "Champions",
        "Hibernating",
        "New customers",
        "Big spenders",
    ]
    assert champions["Frequency"] == profile["Frequency"].max()
    assert hibernating["Recency"] == profile["Recency"].max()
    assert new["Frequency"] <= 2 and new["Recency"] <= 10
    assert big["Spend"] == profile["Spend"].max()
    # Category and Region mixes differ by segment.
    mix = pd.crosstab(segment, table["Category"], normalize="index")
    assert mix.max().max() - mix.min().min() > 0.2
    assert (pd.crosstab(segment, table["Region"], normalize="index").std() > 0.02).any()


def test_without_categories():
    table, _ = make_customers(100, categorical=False)

    assert list(table.columns) == COLUMNS[:5]


def test_same_seed_same_table_other_seed_other_table():
    first, first_segment = make_customers(3_000, seed=7)
    again, again_segment = make_customers(3_000, seed=7)
    other, _ = make_customers(3_000, seed=8)

    pd.testing.assert_frame_equal(first, again)
    np.testing.assert_array_equal(first_segment, again_segment)
    assert not first["Spend"].equals(other["Spend"])


def test_a_longer_table_starts_with_the_shorter_one():
    short, short_segment = make_customers(1_000, seed=4)
    long, long_segment = make_customers(100_000, seed=4)

    np.testing.assert_array_equal(long_segment[:1_000], short_segment)
    pd.testing.assert_frame_equal(long.iloc[:1_000].drop(columns="CustomerID"), short.iloc[:, 1:])


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.2])
def test_missing_rate_is_honoured(rate):
    table, segment = make_customers(20_000, seed=5, missing_rate=rate)
    missing = table[list(FEATURES)].isna()

    assert np.allclose(missing.mean(), rate, atol=0.01)
    assert table[["CustomerID", "Category", "Region"]].notna().all().all()
    # Spread at random: every segment and every part of the table gets its share of gaps.
    assert np.allclose(missing.groupby(segment).mean(), rate, atol=0.015)
    assert np.allclose(missing.groupby(np.arange(20_000) // 5_000).mean(), rate, atol=0.015)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="segments"):
        make_customers(10, segments=len(ARCHETYPES) + 1)
    with pytest.raises(ValueError, match="missing_rate"):
        make_customers(10, missing_rate=1.5)
    with pytest.raises(ValueError, match="format"):
        write_customers("customers.xlsx", 10)
    with pytest.raises(TypeError):
        write_customers("customers.csv", 10, missing=0.1)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_write_customers_in_chunks(tmp_path, suffix):
    path = tmp_path / f"customers{suffix}"

    segment = write_customers(path, 2_500, seed=6, chunk_rows=700)
    table = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    expected, expected_segment = make_customers(2_500, seed=6)

    np.testing.assert_array_equal(segment, expected_segment)
    assert list(table.columns) == COLUMNS
    assert len(table) == 2_500
    assert table["CustomerID"].is_unique
    assert table["CustomerID"].iloc[-1] == "C0002500"
    for name in FEATURES:
        np.testing.assert_allclose(
            table[name].to_numpy(dtype=float, na_value=np.nan),
            expected[name].to_numpy(dtype=float, na_value=np.nan),
        )
    assert (table["Category"].astype(str) == expected["Category"].astype(str)).all()
    assert not list(tmp_path.glob("*.partial"))


def test_csv_layout(tmp_path):
    path = tmp_path / "customers.csv"
    write_customers(path, 300, seed=0, chunk_rows=100, missing_rate=0.2)
    lines = path.read_text().splitlines()

    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) == 301
    assert lines.count(lines[0]) == 1
    assert not any('"' in line for line in lines)
    assert any(",," in line for line in lines[1:])  # missing values are empty fields


@pytest.mark.parametrize("segments", [2, 4, 6])
@pytest.mark.parametrize("log_spend", [True, False])
def test_kmeans_recovers_the_segments(segments, log_spend):
    table, segment = make_customers(4_000, segments=segments, seed=11)

    score = adjusted_rand_score(segment, recovered(table, segments, log_spend=log_spend))

    assert score >= (0.95 if log_spend else 0.9)


def test_more_separation_helps_and_less_hurts():
    scores = []
    for separation in (0.3, 1.0, 2.0):
        table, segment = make_customers(4_000, seed=12, separation=separation, missing_rate=0)
        scores.append(adjusted_rand_score(segment, recovered(table, 4, log_spend=True)))

    assert scores[0] < 0.9 < 0.95 <= scores[1] <= scores[2]
