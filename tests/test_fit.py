"""How centres are fitted: to convergence on the sample, or by Spark ML's KMeans on every
customer, whose model is saved for Spark ML to load."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from pyspark.ml.clustering import KMeansModel
from pyspark.ml.linalg import Vectors
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from segmentation import kmeans
from segmentation.manifest import read_manifest
from segmentation.params import SegmentationParams
from segmentation.pipeline import run_segmentation
from segmentation.results import k_folder
from segmentation.sweep import run_sweep
from segmentation.synthetic import make_overlapping
from tests.helpers import model_inputs, synthetic_csv

HARD = {"k": 7, "features": ("x1", "x2", "x3", "x4"), "outliers": "none"}
# Within-segment SS a fit may exceed the full-data optimum by.
CLOSE = 1.002


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    """20,000 customers in seven overlapping groups of unequal size, on which Lloyd needs about
    150 iterations from scikit-learn's best start (65 from Spark's k-means||)."""
    path = tmp_path_factory.mktemp("hard") / "customers.csv"
    make_overlapping(20_000, seed=0)[0].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def separated(tmp_path_factory):
    """600 customers in four well-separated groups."""
    path = tmp_path_factory.mktemp("separated") / "customers.csv"
    synthetic_csv(path, n=600, segments=4, seed=11)
    return path


@pytest.fixture(scope="module")
def hard_sample_fit(spark, hard, tmp_path_factory):
    """The default fit of the hard data, its customers' model inputs and the full-data optimum
    to compare with (scikit-learn on every customer, ten starts)."""
    out = tmp_path_factory.mktemp("hard-sample") / "out"
    result = run_segmentation(spark, str(hard), SegmentationParams(**HARD), out)
    scaled, _ = model_inputs(result)
    return result, scaled, float(KMeans(7, n_init=10, random_state=0).fit(scaled).inertia_)


def test_the_sample_fit_runs_to_convergence(hard_sample_fit):
    result, scaled, optimum = hard_sample_fit
    # The old cap of 40 iterations stops this fit early...
    cut = kmeans.fit_centres(scaled, 7, seed=42, max_iter=40)
    assert (cut.iterations, cut.converged) == (40, False)
    # ...the default runs on until the centres settle, and says so.
    metrics = result.manifest.metrics
    assert metrics.converged is True
    assert 40 < metrics.iterations < 300
    assert metrics.convergence_warning is None
    assert metrics.within_ss <= CLOSE * optimum
    assert result.manifest.params.fit == "sample"
    assert result.manifest.files.spark_model is None


def test_a_fit_stopped_by_the_cap_is_reported_and_old_manifests_still_load(hard_sample_fit):
    result, _, _ = hard_sample_fit
    cut = replace(result.manifest.metrics, iterations=300, converged=False)
    assert "stopped at its cap of 300 iterations" in (cut.convergence_warning or "")
    # Results written before fits reported convergence load, with nothing to warn about.
    manifest = result.out_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    for name in ("iterations", "converged"):
        del data["metrics"][name]
    del data["params"]["fit"]
    manifest.write_text(json.dumps(data))
    old = read_manifest(result.out_dir)
    assert old.metrics.convergence_warning is None and old.params.fit == "sample"


@pytest.mark.slow  # Spark ML: a Spark job per iteration, 65 of them here
def test_spark_ml_on_every_customer_finds_the_optimum_of_hard_data(
    spark, hard, hard_sample_fit, tmp_path
):
    _, _, optimum = hard_sample_fit
    params = SegmentationParams(**HARD, fit="full")
    metrics = run_segmentation(spark, str(hard), params, tmp_path / "out").manifest.metrics
    assert metrics.converged is True and metrics.fitted_on == 20_000
    assert "Spark ML" in (metrics.fit_kind or "")
    assert metrics.within_ss <= CLOSE * optimum


def assert_spark_model_places_customers_alike(spark, result_dir, scaled, segments) -> None:
    """The saved Spark ML model loads with KMeansModel.load, holds the manifest's centres and
    predicts every customer's segment."""
    manifest = read_manifest(result_dir)
    assert manifest.files.spark_model == "spark_model"
    model = KMeansModel.load(str(result_dir / "spark_model"))
    numbers = [int(n) for n in manifest.model.centres]
    saved = np.array([manifest.model.centres[str(n)] for n in numbers])
    spark_centres = np.array(model.clusterCenters())
    # Spark's cluster id -> segment number, by the identical centre.
    segment_of = [numbers[int(np.abs(saved - c).sum(1).argmin())] for c in spark_centres]
    np.testing.assert_allclose(saved[[numbers.index(s) for s in segment_of]], spark_centres)
    rows = [(i, Vectors.dense(x)) for i, x in enumerate(scaled)]
    predicted = model.transform(spark.createDataFrame(rows, ["i", "features"])).toPandas()
    predicted = predicted.sort_values("i")["prediction"].map(dict(enumerate(segment_of)))
    np.testing.assert_array_equal(predicted.to_numpy(), segments)


def test_spark_ml_finds_the_sample_fits_segments_and_saves_its_model(spark, separated, tmp_path):
    sample = run_segmentation(spark, str(separated), SegmentationParams(k=4), tmp_path / "sample")
    full = run_segmentation(
        spark, str(separated), SegmentationParams(k=4, fit="full"), tmp_path / "full"
    )
    scaled, segments = model_inputs(full)
    assert adjusted_rand_score(model_inputs(sample)[1], segments) >= 0.99
    assert full.manifest.params.fit == "full" and full.manifest.metrics.converged
    assert_spark_model_places_customers_alike(spark, full.out_dir, scaled, segments)


def test_a_sweep_fits_every_k_on_every_customer(spark, separated, tmp_path):
    params = SegmentationParams(k_range=(3, 4), fit="full")
    result = run_sweep(spark, str(separated), params, tmp_path / "sweep")
    assert list(result.table["converged"]) == [True, True]
    for k in (3, 4):
        manifest = read_manifest(result.out_dir / k_folder(k))
        assert "Spark ML" in (manifest.metrics.fit_kind or "")
        model = KMeansModel.load(str(result.out_dir / k_folder(k) / "spark_model"))
        assert len(model.clusterCenters()) == k
