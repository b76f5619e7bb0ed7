"""The k explorer: one prepared table, every k fitted, a suggestion with its reason."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation.params import SegmentationParams
from segmentation.pipeline import run_segmentation
from segmentation.results import load_results, load_sweep
from segmentation.rfm import SCORE_COLUMNS
from segmentation.suggestion import knee, suggest
from segmentation.sweep import adjusted_rand, run_sweep
from tests.helpers import ROOT, SAMPLE_CUSTOMERS, synthetic_csv


@pytest.fixture(scope="module")
def sweep(spark, tmp_path_factory):
    """A sweep k=2..6 over 2,000 customers in 4 well-separated latent segments."""
    folder = tmp_path_factory.mktemp("sweep")
    path = folder / "customers.csv"
    synthetic_csv(path, n=2000, segments=4, seed=21)
    events = []
    result = run_sweep(
        spark,
        str(path),
        SegmentationParams(k_range=(2, 6), stability_seeds=1),
        folder / "out",
        progress=lambda *e: events.append(e[:3]),
    )
    return path, result, events


def test_four_segments_are_suggested_with_a_reason(sweep):
    _, result, _ = sweep
    assert result.manifest.suggested_k == 4
    assert result.manifest.suggestion.startswith("k=4 has the best silhouette")
    assert list(result.table["k"]) == [2, 3, 4, 5, 6]
    suggested = result.table.set_index("k").loc[4]
    assert result.manifest.metrics.silhouette == suggested["silhouette"]  # job history


def test_progress_says_which_k_are_ready_and_how_many_are_left(sweep):
    _, _, events = sweep
    messages = [m for stage, _, m in events if stage == "evaluation"]
    ready = [m for m in messages if "ready" in m]
    assert ready == [
        "k=2 ready (1 of 5, 4 left)",
        "k=3, 4 ready (3 of 5, 2 left)",
        "k=5, 6 ready (5 of 5, 0 left)",
    ]


def test_per_k_metrics_match_a_single_run_with_the_same_k_and_seed(spark, sweep, tmp_path):
    path, result, _ = sweep
    single = run_segmentation(spark, str(path), SegmentationParams(k=5), tmp_path / "single")
    row = result.table.set_index("k").loc[5]
    for name in ("silhouette", "calinski_harabasz", "davies_bouldin", "within_ss"):
        assert row[name] == pytest.approx(getattr(single.manifest.metrics, name), rel=1e-9), name
    per_k = load_results(result.out_dir / "k=5")
    pd.testing.assert_frame_equal(per_k.segments, single.segments)


def test_results_folders_for_every_k_and_the_summary(sweep):
    _, result, _ = sweep
    loaded = load_sweep(result.out_dir)
    assert loaded.ks == [2, 3, 4, 5, 6] and loaded.suggested_k == 4
    for k in loaded.ks:
        per_k = load_results(loaded.folder(k))
        assert per_k.k == k and len(per_k.segments) == k
        exported = io.BytesIO()
        per_k.write_customers(exported)
        customers = pd.read_csv(io.BytesIO(exported.getvalue()))
        assert list(customers.columns[-6:]) == ["segment", "segment_name", *SCORE_COLUMNS]
        counts = customers["segment"].value_counts().sort_index()
        assert counts.tolist() == per_k.segments["size"].tolist()
        names = dict(zip(per_k.segments["segment"], per_k.segments["name"], strict=True))
        assert (customers["segment_name"] == customers["segment"].map(names)).all()
    splits = loaded.splits
    assert set(splits["k"]) == {2, 3, 4, 5}
    for k, group in splits.groupby("k"):
        assert group["count"].sum() == 2000, k
    assert {"ari_mean", "silhouette_min", "silhouette_max"} <= set(loaded.table.columns)
    assert loaded.table.set_index("k").loc[4, "ari_mean"] > 0.95  # k=4 holds across seeds
    assert load_sweep(loaded.folder(4)) is None


def test_knee_finds_the_bend():
    assert knee([2, 3, 4, 5, 6, 7], [1000, 600, 200, 180, 165, 150]) == 4
    assert knee([2, 3], [10, 5]) == 2


def test_disagreement_is_said_not_hidden():
    table = pd.DataFrame(
        {
            "k": [2, 3, 4, 5],
            "within_ss": [100.0, 40.0, 30.0, 25.0],
            "silhouette": [0.5, 0.6, 0.7, 0.4],
            "calinski_harabasz": [10.0, 30.0, 20.0, 15.0],
            "tiny_segment": [False, False, False, True],
        }
    )
    k, reason, opinions = suggest(table)
    assert k == 4
    assert opinions == {"elbow": 3, "silhouette": 4, "calinski_harabasz": 3}
    assert "points to k=3" in reason and "k=5 produce a segment under 1%" in reason


def table_of(silhouettes: list[float], within: list[float], **columns) -> pd.DataFrame:
    ks = list(range(2, 2 + len(silhouettes)))
    table = pd.DataFrame(
        {
            "k": ks,
            "within_ss": within,
            "silhouette": silhouettes,
            "calinski_harabasz": [100.0 - k for k in ks],
            "tiny_segment": False,
        }
    )
    return table.assign(**columns)


CONTINUUM_SS = [24691.0, 17133.0, 12724.0, 10661.0, 8785.0, 7801.0, 7049.0, 6330.0, 5867.0]


def test_customers_on_a_continuum_get_the_elbow_not_a_split_in_two():
    # The shape of a real shop's sweep: the silhouette falls from k=2 on.
    silhouettes = [0.763, 0.682, 0.581, 0.550, 0.557, 0.571, 0.549, 0.539, 0.538]
    k, reason, opinions = suggest(table_of(silhouettes, CONTINUUM_SS))
    assert k == opinions["elbow"] == 4 and opinions["silhouette"] == 2
    assert reason.startswith("k=4 is the elbow of the sum of squares: the silhouette is highest")
    assert "the best silhouette points to k=2" in reason


def test_two_well_separated_groups_are_still_two():
    silhouettes = [0.945, 0.709, 0.470, 0.474, 0.404]
    k, reason, _ = suggest(table_of(silhouettes, CONTINUUM_SS[:5]))
    assert k == 2 and reason.startswith("k=2 has the best silhouette (0.945)")


def test_the_most_detailed_k_about_as_good_as_the_best_is_preferred():
    silhouettes = [0.840, 0.773, 0.828, 0.789, 0.737]
    k, reason, _ = suggest(table_of(silhouettes, [16.5, 9.7, 3.4, 2.6, 2.0]))
    assert k == 4
    assert reason.startswith(
        "k=4 is the most detailed k whose silhouette (0.828) is within 0.02 of the best "
        "(0.840 at k=2)"
    )


def test_a_k_whose_segments_change_with_the_seed_is_not_suggested():
    silhouettes = [0.5, 0.6, 0.7, 0.4]
    table = table_of(silhouettes, [100.0, 40.0, 30.0, 25.0], ari_mean=[1.0, 0.95, 0.6, 0.9])
    k, reason, _ = suggest(table)
    assert k == 3 and "the segments of k=4 change with the seed" in reason


@pytest.mark.slow  # the fast tier has the module's sweep of four segments
@pytest.mark.parametrize("segments", [2, 3, 5])
def test_the_true_number_of_separated_segments_is_suggested(spark, tmp_path, segments):
    path = tmp_path / "c.csv"
    synthetic_csv(path, n=2000, segments=segments, seed=30 + segments)
    result = run_sweep(spark, str(path), SegmentationParams(k_range=(2, 8)), tmp_path / "o")
    assert result.manifest.suggested_k == segments, result.manifest.suggestion


def test_the_original_projects_sample_gets_four_segments(spark, tmp_path):
    result = run_sweep(
        spark, str(SAMPLE_CUSTOMERS), SegmentationParams(k_range=(2, 6)), tmp_path / "o"
    )
    assert result.manifest.suggested_k == 4, result.manifest.suggestion


def test_adjusted_rand_matches_scikit_learn():
    a = [0, 0, 1, 1, 2, 2, 2, 0]
    b = [1, 1, 0, 0, 2, 2, 0, 1]
    counts = pd.DataFrame({"a": a, "b": b}).value_counts().rename("n").reset_index()
    assert adjusted_rand(counts) == pytest.approx(adjusted_rand_score(a, b))


@pytest.mark.slow  # a process of its own: a new JVM
def test_command_line_sweep(tmp_path):
    path = tmp_path / "c.csv"
    synthetic_csv(path, n=600, segments=3, seed=4)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "segmentation",
            "run",
            str(path),
            "--k-range",
            "2-4",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "sweep" and manifest["k_values"] == [2, 3, 4]
    assert [row["k"] for row in manifest["sweep"]] == [2, 3, 4]
    assert f"suggested k={manifest['suggested_k']}" in done.stdout
    assert (out / "k=3" / "segments.csv").exists()


def test_each_batch_of_k_can_be_opened_while_the_others_are_measured(spark, tmp_path):
    path = tmp_path / "c.csv"
    synthetic_csv(path, n=800, segments=3, seed=6)
    out = tmp_path / "sweep"
    seen = []

    def look(stage: str, fraction: float, message: str, timings: dict) -> None:
        if " ready (" in message:  # a batch is written; the sweep goes on
            sweep = load_sweep(out)
            opened = [load_results(sweep.folder(k)) for k in sweep.ks]
            seen.append(
                (
                    sweep.ks,
                    sweep.complete,
                    sweep.suggested_k,
                    [len(r.segments) for r in opened],
                    list(sweep.table["k"]),
                    sorted(set(sweep.splits["k"])),
                    all(r.customers_ready for r in opened),
                )
            )

    run_sweep(spark, str(path), SegmentationParams(k_range=(2, 6)), out, progress=look)
    assert seen == [
        ([2], False, None, [2], [2], [], False),
        ([2, 3, 4], False, None, [2, 3, 4], [2, 3, 4], [2, 3], False),
        ([2, 3, 4, 5, 6], False, None, [2, 3, 4, 5, 6], [2, 3, 4, 5, 6], [2, 3, 4, 5], False),
    ]
    final = load_sweep(out)
    assert final.complete and final.suggested_k in final.ks
    assert all(load_results(final.folder(k)).customers_ready for k in final.ks)
