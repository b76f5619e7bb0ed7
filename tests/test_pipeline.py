"""The whole pipeline on real Spark: stages, recovery of known segments, honest metrics, outputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

from segmentation.errors import InputError
from segmentation.manifest import Fence, LogTransform, Repairs, read_manifest
from segmentation.order_report import DominantId, TransactionReport
from segmentation.params import SegmentationParams
from segmentation.pipeline import run_segmentation
from segmentation.preparation import STAGES
from segmentation.results import load_results
from segmentation.rfm import SCORE_COLUMNS
from tests.helpers import SAMPLE_CUSTOMERS, model_inputs, refunds_csv, synthetic_csv


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """600 customers in 4 well-separated latent segments, with a few missing values."""
    path = tmp_path_factory.mktemp("in") / "customers.csv"
    table, labels = synthetic_csv(path, n=600, segments=4, seed=11)
    return path, table, labels


@pytest.fixture(scope="module")
def run(spark, synthetic, tmp_path_factory):
    path, _, _ = synthetic
    events = []
    result = run_segmentation(
        spark,
        str(path),
        SegmentationParams(k=4, seed=7),
        tmp_path_factory.mktemp("r") / "out",
        progress=lambda stage, fraction, message, _: events.append((stage, fraction, message)),
    )
    return result, events


def test_every_stage_reports_progress_in_order(run):
    _, events = run
    stages = list(dict.fromkeys(stage for stage, _, _ in events))
    assert stages == list(STAGES)
    fractions = [f for _, f, _ in events]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] <= 1


def test_known_segments_are_recovered(run, synthetic):
    result, _ = run
    _, table, labels = synthetic
    customers = pd.read_csv(result.out_dir / "customers.csv")
    assert list(customers["CustomerID"]) == list(table["CustomerID"])
    assert adjusted_rand_score(labels, customers["segment"]) >= 0.9


def test_metrics_agree_with_scikit_learn(run):
    """Score the customers' segments with sklearn on the features the model saw."""
    result, _ = run
    scaled, labels = model_inputs(result)
    assert scaled.mean(axis=0) == pytest.approx(0, abs=1e-9)
    assert scaled.std(axis=0, ddof=1) == pytest.approx(1, abs=1e-9)  # Spark's: sample std
    metrics = result.manifest.metrics
    assert metrics.silhouette == pytest.approx(
        silhouette_score(scaled, labels, metric="sqeuclidean"), rel=1e-6
    )
    assert metrics.calinski_harabasz == pytest.approx(
        calinski_harabasz_score(scaled, labels), rel=1e-6
    )
    assert metrics.davies_bouldin == pytest.approx(davies_bouldin_score(scaled, labels), rel=1e-6)
    within = sum(
        ((scaled[labels == s] - scaled[labels == s].mean(axis=0)) ** 2).sum()
        for s in np.unique(labels)
    )
    assert metrics.within_ss == pytest.approx(within, rel=1e-6)
    assert "squared Euclidean" in metrics.silhouette_kind
    # Each customer's segment is the one of the nearest centre the manifest records.
    centres = result.manifest.model.centres
    segments = sorted(centres, key=int)
    points = np.array([centres[s] for s in segments])
    nearest = ((scaled[:, None, :] - points[None]) ** 2).sum(2).argmin(1)
    assert (np.array([int(s) for s in segments])[nearest] == labels).all()


def test_outputs_are_complete_and_consistent(run, synthetic):
    result, _ = run
    _, table, _ = synthetic
    out = result.out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == len(table)
    assert len(manifest["input"]["sha256"]) == 64
    assert manifest["versions"]["spark_version"].startswith("4.")
    assert set(manifest["timings"]) == set(STAGES)
    assert manifest["repairs"]["filled_missing"]["Spend"] == table["Spend"].isna().sum()
    segments = pd.read_csv(out / "segments.csv")
    assert list(segments["segment"]) == [1, 2, 3, 4]
    assert segments["size"].sum() == len(table)
    assert segments["share"].sum() == pytest.approx(1)
    assert list(segments["Spend_mean"]) == sorted(segments["Spend_mean"], reverse=True)
    assert segments["name"].is_unique and segments["reason"].str.len().min() > 10
    customers = pd.read_csv(out / "customers.csv")
    assert list(customers.columns) == [*table.columns, "segment", "segment_name", *SCORE_COLUMNS]
    counts = customers["segment"].value_counts().sort_index()
    assert list(counts) == list(segments["size"])
    names = dict(zip(segments["segment"], segments["name"], strict=True))
    assert (customers["segment_name"] == customers["segment"].map(names)).all()
    mix = pd.read_csv(out / "categorical_mix.csv")
    assert set(mix["column"]) == {"Category", "Region"}
    assert mix.groupby("column")["count"].sum().tolist() == [len(table), len(table)]


def test_chart_sample_is_stratified_and_has_pca(run):
    result, _ = run
    sample = pd.read_parquet(result.out_dir / "chart_sample.parquet")
    assert {"pc1", "pc2", "pc3", "segment", "segment_name", "Spend", "Region"} <= set(
        sample.columns
    )
    assert len(sample) == 600  # small inputs are kept whole
    loaded = load_results(result.out_dir)
    assert loaded.features == ["Age", "Spend", "Recency", "Frequency"]
    renamed = loaded.with_names({1: "VIP"})
    assert renamed.segments.loc[0, "name"] == "VIP"
    assert set(renamed.sample.loc[renamed.sample["segment"] == 1, "segment_name"]) == {"VIP"}


def test_same_seed_gives_identical_results(spark, synthetic, run, tmp_path):
    path, _, _ = synthetic
    first, _ = run
    again = run_segmentation(spark, str(path), SegmentationParams(k=4, seed=7), tmp_path / "again")
    assert (first.out_dir / "customers.csv").read_bytes() == (
        again.out_dir / "customers.csv"
    ).read_bytes()
    pd.testing.assert_frame_equal(first.segments, again.segments)
    assert first.manifest.metrics == again.manifest.metrics


def test_a_segmentation_leaves_no_jobs_held_by_spark(spark, synthetic, tmp_path):
    """Spark's scheduler must not keep a run's jobs and their plans (once a few MB per
    segmentation, when KMeans fits ran in threads sharing Spark's local properties)."""
    path, _, _ = synthetic
    held = spark.sparkContext._jsc.sc().dagScheduler().activeQueryToJobs()
    before = held.size()
    run_segmentation(spark, str(path), SegmentationParams(k=4, seed=5), tmp_path / "out")
    assert held.size() == before


@pytest.mark.slow  # writes and segments a large input
def test_large_input_chart_sample_is_capped(spark, tmp_path):
    path = tmp_path / "big.csv"
    synthetic_csv(path, n=12_000, seed=5)
    result = run_segmentation(spark, str(path), SegmentationParams(k=4), tmp_path / "out")
    sample = pd.read_parquet(result.out_dir / "chart_sample.parquet")
    assert 4_000 <= len(sample) <= 6_000
    shares = sample["segment"].value_counts(normalize=True).sort_index()
    expected = result.segments.set_index("segment")["share"]
    assert np.allclose(shares.to_numpy(), expected.to_numpy(), atol=0.05)


def whale(tmp_path: Path) -> Path:
    """59 even customers and a whale whose spend is 10,000 times theirs."""
    rows = [
        {"Age": 30 + i % 20, "Spend": 100 + i, "Recency": i % 30, "Frequency": 1 + i % 5}
        for i in range(60)
    ]
    rows[0]["Spend"] = 1_000_000
    path = tmp_path / "whale.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("policy", ["cap", "remove", "none"])
def test_outlier_policies(spark, tmp_path, policy):
    result = run_segmentation(
        spark,
        str(whale(tmp_path)),
        SegmentationParams(k=2, outliers=policy, log_features=()),
        tmp_path / "o",
    )
    repairs = result.manifest.repairs
    cleaned = pd.read_parquet(result.out_dir / "chart_sample.parquet")  # every customer here
    assert len(cleaned) == result.manifest.rows_out
    if policy == "cap":
        assert repairs.outliers["Spend"] == 1 and result.manifest.rows_out == 60
        # The model saw the whale at the upper fence; the charts show its real spend.
        fences = result.manifest.model.features["Spend"].fences
        assert fences[1] < 1_000 and cleaned["Spend"].max() == 1_000_000
        profiles = result.segments.set_index("segment")
        assert profiles["Spend_max"].max() == 1_000_000
    elif policy == "remove":
        assert repairs.rows_removed == 1 and result.manifest.rows_out == 59
        assert cleaned["Spend"].max() < 1_000
        # The fences count the customers before they were removed, not the none left after.
        (spend,) = [f for f in repairs.fences if f.feature == "Spend"]
        assert (spend.below, spend.above) == (0, 1) and repairs.outliers["Spend"] == 1
        assert repairs.sentences() == [
            "'Spend': 0 customers below and 1 above its IQR fences 70 and 190 were removed.",
            "No customer lies outside the IQR fences of 'Age', 'Recency' and 'Frequency': none "
            "removed there.",
            "1 customer outside the IQR fences was removed before the fit.",
        ]
    else:
        assert repairs.outliers == {} and cleaned["Spend"].max() == 1_000_000


def test_a_skewed_feature_is_logged_by_default_and_its_top_kept_apart(spark, tmp_path):
    result = run_segmentation(spark, str(whale(tmp_path)), SegmentationParams(k=2), tmp_path / "o")
    repairs, model = result.manifest.repairs, result.manifest.model.features

    assert result.manifest.params.log_features is None  # the automatic choice
    assert repairs.log_transformed == ["Spend"]  # Age, Recency, Frequency are even
    assert model["Spend"].log and model["Spend"].fences is None
    assert "Spend" not in repairs.outliers and result.manifest.rows_out == 60
    assert model["Spend"].transform == "log"
    assert (
        "The model sees 'Spend' as log(1 + x) (chosen automatically: skewness 7.6 above 1), so "
        "its top customers stay apart instead of sharing a cap; it is not capped."
    ) in repairs.sentences()
    # The model saw every spend apart: the whale is not one value with the next customers.
    scaled, _ = model_inputs(result)
    spend = scaled[:, result.manifest.features.index("Spend")]
    assert len(np.unique(spend.round(9))) == 60


@pytest.fixture(scope="module")
def refunds(spark, tmp_path_factory):
    """A run on a heavy-tailed Spend with three net refunds (tests.helpers.refunds_csv)."""
    folder = tmp_path_factory.mktemp("refunds")
    path = refunds_csv(folder / "refunds.csv")
    return run_segmentation(spark, str(path), SegmentationParams(k=3, seed=1), folder / "o")


def test_a_few_refunds_get_the_signed_log_not_a_cap_and_it_is_said(refunds):
    manifest = refunds.manifest
    spend = manifest.model.features["Spend"]
    assert spend.transform == "signed-log" and spend.log and spend.fences is None
    assert "Spend" not in manifest.repairs.outliers  # nobody sits at a Spend cap
    assert manifest.repairs.sentences() == [
        "Filled 1 missing value of 'Age' with the median, 39.",
        "The model sees 'Spend' as sign(x)·log(1 + |x|) (chosen automatically: skewness 5.8 above "
        "1; its 3 negative values stay below zero), so its top customers stay apart instead of "
        "sharing a cap; it is not capped.",
        "No customer lies outside the IQR fences of 'Age', 'Recency' and 'Frequency': none capped "
        "there.",
    ]
    (fence,) = [f for f in manifest.repairs.fences if f.feature == "Recency"]
    assert (fence.low, fence.high, fence.below, fence.above) == (-15.5, 44.5, 0, 0)
    # The five big spenders are five points to the model, in their order; capped at the upper
    # IQR fence they would have been one, and the refunds stay below every purchase.
    scaled, _ = model_inputs(refunds)
    seen = scaled[:, manifest.features.index("Spend")]
    customers = pd.read_csv(refunds.out_dir / "customers.csv")
    q1, q3 = customers["Spend"].quantile([0.25, 0.75])
    assert (customers["Spend"][:5] > q3 + 1.5 * (q3 - q1)).all()
    assert list(np.argsort(seen[:5])) == [0, 1, 2, 3, 4]
    zero = -spend.mean / spend.std  # a spend of 0 as the model sees it
    assert seen[5:8].max() < zero < seen[8:].min()
    assert read_manifest(refunds.out_dir).repairs == manifest.repairs
    assert read_manifest(refunds.out_dir).model == manifest.model


def test_under_remove_a_signed_log_feature_says_its_refunds_may_be_removed():
    """'remove' fences a logged feature on its scale (the lower fence of refunds_csv's Spend is
    about 73), so the sentence does not promise its negatives stay, and the fence says who went."""
    repairs = Repairs(
        filled_missing={},
        outliers={"Spend": 8},
        outlier_policy="remove",
        rows_removed=8,
        log_transformed=["Spend"],
        notes=[],
        fences=[Fence("Spend", 73.0, 9_000.0, 3, 5)],
        transforms=[LogTransform("Spend", "signed-log", 5.8, 3, "automatic")],
    )
    assert repairs.sentences() == [
        "The model sees 'Spend' as sign(x)·log(1 + |x|) (chosen automatically: skewness 5.8 above "
        "1; its 3 negative values stay below zero unless outside its fences, below), so its top "
        "customers stay apart instead of sharing a cap; it is not capped.",
        "'Spend': 3 customers below and 5 above its IQR fences 73 and 9,000 were removed.",
        "8 customers outside the IQR fences were removed before the fit.",
    ]


def test_results_and_the_command_line_sort_repairs_notes_and_what_needs_action(refunds):
    """One sorting (Manifest.told): repairs and left-out order lines in the repairs box, other
    notes apart, an id that is probably a till account as a warning; the validation warnings
    that were repairs to be are not repeated."""
    dominant = DominantId("99999", 40, 0.44, 0.004, 13.3, "order lines")
    origin = TransactionReport(
        *(100, 9, 0, [], 0, 0, 0.0, 0, 0, 0.0, 60, None, None, None, "ISO", {}, "orders"),
        notes=["Carried from the order lines to each customer: 'Country'."],
        dominant_id=dominant,
    )
    segments = "KMeans found only 2 distinct segments."
    manifest = replace(
        refunds.manifest,
        transactions=origin,
        repairs=replace(refunds.manifest.repairs, notes=[*origin.messages(), segments]),
    )
    told = manifest.told()
    assert told.warnings == [dominant.message()]
    assert told.repaired == [
        *refunds.manifest.repairs.sentences(),
        "9 order lines have no customer id (guest orders?) and were left out.",
    ]
    assert told.notes == ["Carried from the order lines to each customer: 'Country'.", segments]
    assert refunds.manifest.warnings == []  # the fill and the signed log: said once, typed


def test_removal_judges_a_logged_feature_on_the_log_scale(spark, tmp_path):
    result = run_segmentation(
        spark, str(whale(tmp_path)), SegmentationParams(k=2, outliers="remove"), tmp_path / "o"
    )
    fences = result.manifest.model.features["Spend"].fences

    assert result.manifest.repairs.rows_removed == 1  # the whale, no one else
    # Fences in real units, from quartiles of log(1 + spend): the low one is above -1.
    assert -1 < fences[0] < 101 and 159 < fences[1] < 1_000_000


def test_chosen_features_and_log_transform(spark, tmp_path):
    result = run_segmentation(
        spark,
        str(SAMPLE_CUSTOMERS),
        SegmentationParams(k=3, features=("spend", "Frequency"), log_features=("Spend",)),
        tmp_path / "o",
    )
    assert result.manifest.features == ["Spend", "Frequency"]
    assert result.manifest.repairs.log_transformed == ["Spend"]
    assert result.manifest.metrics.segments_found == 3
    sample = pd.read_parquet(result.out_dir / "chart_sample.parquet")
    assert "pc3" not in sample.columns  # two features give two components


def test_invalid_input_fails_before_clustering_with_the_message(spark, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Age,Spendings,Recency,Frequency\n1,2,3,4\n2,3,4,5\n3,4,5,6\n")
    with pytest.raises(InputError, match="Did you mean 'Spendings'"):
        run_segmentation(spark, str(path), SegmentationParams(k=2), tmp_path / "o")
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o.partial*"))


def test_params_are_checked():
    with pytest.raises(InputError, match="between 2 and 30"):
        SegmentationParams(k=1)
    with pytest.raises(InputError, match="at most 50 can be used"):
        SegmentationParams(features=tuple(f"f{i}" for i in range(51)))
    with pytest.raises(InputError, match="Outlier policy"):
        SegmentationParams(outliers="drop")
    params = SegmentationParams(k=5, features=["Age", "Spend"])
    assert SegmentationParams.from_dict(params.to_dict()) == params


def test_spreadsheet_formulas_in_text_columns_are_neutralised(spark, tmp_path):
    rows = [
        {
            "CustomerID": f"C{i}",
            "Age": 20 + i,
            "Spend": 10.0 * i,
            "Recency": i,
            "Frequency": i % 4,
            "Note": '=HYPERLINK("http://x")' if i == 1 else ("@SUM(A1)" if i == 2 else "fine"),
        }
        for i in range(1, 13)
    ]
    path = tmp_path / "f.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = run_segmentation(spark, str(path), SegmentationParams(k=2), tmp_path / "o")
    customers = pd.read_csv(result.out_dir / "customers.csv")
    notes = dict(zip(customers["CustomerID"], customers["Note"], strict=True))
    assert notes["C1"] == '\'=HYPERLINK("http://x")' and notes["C2"] == "'@SUM(A1)"
    assert notes["C3"] == "fine"
    assert customers.loc[customers["CustomerID"] == "C1", "Spend"].item() == 10.0
