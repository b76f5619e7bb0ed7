"""Assigning new customers to a saved segmentation: exact reproduction, refusals, the command
line and the job runner."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from segmentation.cli import main
from segmentation.errors import InputError
from segmentation.job_runner import JobRunner, run_pipeline_job
from segmentation.job_store import JobStore
from segmentation.jobs import JobState, ModelRef
from segmentation.manifest import read_manifest
from segmentation.params import SegmentationParams
from segmentation.pipeline import run_segmentation
from segmentation.profiles import SavedSegment
from segmentation.results import load_results, save_segment_names
from segmentation.rfm import SEGMENTS
from segmentation.scoring import check_input, load_model, run_scoring
from segmentation.sweep import run_sweep
from segmentation.synthetic import write_transactions
from tests.helpers import refunds_csv, synthetic_csv


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A run on 1,500 customers (its second segment renamed by the analyst) and the file."""
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "customers.csv"
    synthetic_csv(path, n=1500, segments=4, seed=8, missing_rate=0.05)
    run = run_segmentation(spark, str(path), SegmentationParams(k=4, seed=3), folder / "run")
    save_segment_names(run.out_dir, {2: "Our VIPs"})
    return path, run.out_dir


def customers(folder, k: int | None = None) -> pd.DataFrame:
    """A results folder's customers with their segment and name (one k of a sweep's file)."""
    table = pd.read_csv(folder / "customers.csv", dtype=str, keep_default_na=False)
    if k:
        table = table.rename(columns={f"segment_k{k}": "segment", f"segment_name_k{k}": "name"})
    return table.rename(columns={"segment_name": "name"})


def test_assigning_the_training_customers_gives_each_its_segment_and_name(spark, trained, tmp_path):
    path, run = trained
    scored = run_scoring(spark, run, str(path), tmp_path / "scored")

    before, after = customers(run), customers(scored.out_dir)
    assert list(after["CustomerID"]) == list(before["CustomerID"])
    assert (after["segment"] == before["segment"]).all()
    renamed = before["name"].where(before["segment"] != "2", "Our VIPs")
    assert (after["name"] == renamed).all()
    assert set(after.loc[after["segment"] == "2", "name"]) == {"Our VIPs"}
    # Same customers, same model: the same figures and profiles.
    fitted = load_results(run)
    again = load_results(scored.out_dir)
    assert again.manifest.metrics.sizes == fitted.manifest.metrics.sizes
    assert again.manifest.metrics.silhouette == pytest.approx(fitted.manifest.metrics.silhouette)
    source = again.manifest.model_source
    assert source is not None and source.folder == str(run) and source.k == 4
    assert again.manifest.model.centres == fitted.manifest.model.centres
    assert list(again.segments["name"]) == list(fitted.segments["name"])
    # Every card, "Our VIPs" too, counts the RFM segment the run named it by, as the run's do.
    kept, first = again.segments.set_index("segment"), fitted.segments.set_index("segment")
    for column in ("rfm_name", "rfm_agreement", "rfm_agreement_share"):
        assert list(kept[column]) == list(first[column])
    assert kept["rfm_name"].isin(SEGMENTS).all()
    # Renamed to another RFM segment's name, it still counts its own; older results without
    # segments.csv's rfm_name read it from the name.
    other = tmp_path / "other"
    shutil.copytree(run, other)
    runs_rfm = first.loc[1, "rfm_name"]
    taken = next(name for name in SEGMENTS if name != runs_rfm)
    save_segment_names(other, {1: taken})
    assert SavedSegment(1, taken, runs_rfm) in load_model(other).segments
    older = pd.read_csv(other / "segments.csv").drop(columns="rfm_name")
    older.to_csv(other / "segments.csv", index=False)
    assert SavedSegment(1, taken, taken) in load_model(other).segments


def test_an_older_manifest_without_transforms_loads_and_scores_the_same(spark, trained, tmp_path):
    """Results written before the transform and the repairs' account were kept: `log: true`
    reads as log(1 + x), and the customers are placed as before."""
    path, run = trained
    old = tmp_path / "old"
    shutil.copytree(run, old)
    data = json.loads((old / "manifest.json").read_text())
    for feature in data["model"]["features"].values():
        feature["log"] = feature.pop("transform") == "log"
    for kept_since in ("fills", "fences", "transforms"):
        del data["repairs"][kept_since]
    (old / "manifest.json").write_text(json.dumps(data))

    manifest = read_manifest(old)
    assert manifest.model == load_results(run).manifest.model
    assert [f for f, m in manifest.model.features.items() if m.transform == "log"] == [
        "Spend",
        "Frequency",
    ]
    assert manifest.repairs.sentences() == []  # no typed account: only its notes remain
    assert manifest.repairs.notes == load_results(run).manifest.repairs.notes
    scored = run_scoring(spark, old, str(path), tmp_path / "scored")
    assert (customers(scored.out_dir)["segment"] == customers(run)["segment"]).all()


def test_a_signed_log_model_places_its_training_customers_in_their_segments(spark, tmp_path):
    path = refunds_csv(tmp_path / "refunds.csv")
    run = run_segmentation(spark, str(path), SegmentationParams(k=3, seed=1), tmp_path / "run")
    assert run.manifest.model.features["Spend"].transform == "signed-log"
    assert run.manifest.metrics.sizes == {1: 30, 2: 27, 3: 3}

    scored = run_scoring(spark, run.out_dir, str(path), tmp_path / "scored")
    assert (customers(scored.out_dir)["segment"] == customers(run.out_dir)["segment"]).all()
    assert scored.manifest.metrics.sizes == {1: 30, 2: 27, 3: 3}
    (spend,) = scored.manifest.repairs.transforms
    assert (spend.transform, spend.negatives, spend.chosen_by) == ("signed-log", 3, "model")
    assert scored.manifest.repairs.sentences()[1] == (
        "The model sees 'Spend' as sign(x)·log(1 + |x|) (as the saved segmentation does; its 3 "
        "negative values stay below zero), so its top customers stay apart instead of sharing a "
        "cap; it is not capped."
    )


def test_a_k_chosen_in_a_sweep_is_reproduced(spark, tmp_path):
    path = tmp_path / "c.csv"
    synthetic_csv(path, n=900, segments=3, seed=12)
    sweep = run_sweep(spark, str(path), SegmentationParams(k_range=(2, 4), seed=5), tmp_path / "s")
    save_segment_names(sweep.out_dir / "k=3", {1: "Best"})

    model = load_model(sweep.out_dir, k=3)
    assert model.k == 3 and ("Best" in [s.name for s in model.segments])
    scored = run_scoring(spark, sweep.out_dir, str(path), tmp_path / "scored", k=3)

    before, after = customers(sweep.out_dir, k=3), customers(scored.out_dir)
    assert (after["segment"] == before["segment"]).all()
    assert (after["name"] == before["name"].where(before["segment"] != "1", "Best")).all()
    with pytest.raises(InputError, match="k = 2, 3, 4, not 7"):
        load_model(sweep.out_dir, k=7)


def test_new_customers_are_placed_by_the_saved_treatment_not_their_own(spark, trained, tmp_path):
    """A file of only big spenders: measured on its own it would be scaled differently; placed
    with the model, its customers land in the model's high-spend segment."""
    path, run = trained
    table = pd.read_csv(path)
    fitted = customers(run)
    top = fitted["segment"] == "1"
    only_best = table[top.to_numpy()].head(60)
    new = tmp_path / "best.csv"
    only_best.to_csv(new, index=False)

    scored = run_scoring(spark, run, str(new), tmp_path / "scored")
    assert set(customers(scored.out_dir)["segment"]) == {"1"}
    notes = " ".join(scored.manifest.repairs.notes)
    assert "No customer of this file falls in 2 · Our VIPs" in notes


def test_a_missing_feature_is_refused_naming_the_column(spark, trained, tmp_path):
    path, run = trained
    table = pd.read_csv(path).drop(columns=["Spend"])
    bad = tmp_path / "no_spend.csv"
    table.to_csv(bad, index=False)
    with pytest.raises(InputError, match=r"no column 'Spend' \(spend\)") as caught:
        run_scoring(spark, run, str(bad), tmp_path / "scored")
    assert "Age, Spend, Recency, Frequency" in str(caught.value)
    assert not (tmp_path / "scored").exists()


def test_a_feature_that_turned_to_text_is_refused(spark, trained, tmp_path):
    path, run = trained
    table = pd.read_csv(path)
    table["Frequency"] = ["often", "rarely", "n/a"] * (len(table) // 3)
    bad = tmp_path / "text.csv"
    table.to_csv(bad, index=False)
    with pytest.raises(InputError, match="'Frequency' held numbers when this segmentation"):
        run_scoring(spark, run, str(bad), tmp_path / "scored")


def test_other_units_are_flagged(spark, trained, tmp_path):
    path, run = trained
    table = pd.read_csv(path)
    table["Spend"] = table["Spend"] * 100  # cents instead of euros
    cents = tmp_path / "cents.csv"
    table.to_csv(cents, index=False)
    scored = run_scoring(spark, run, str(cents), tmp_path / "scored")
    assert any(
        "median of 'Spend'" in n and "same units" in n for n in scored.manifest.repairs.notes
    )


def test_an_order_log_is_turned_into_customers_first(spark, tmp_path):
    log = tmp_path / "orders.csv"
    write_transactions(log, 300, seed=4)
    run = run_segmentation(spark, str(log), SegmentationParams(k=3, seed=2), tmp_path / "run")
    scored = run_scoring(spark, run.out_dir, str(log), tmp_path / "scored")
    before, after = customers(run.out_dir), customers(scored.out_dir)
    assert (after["segment"] == before["segment"]).all() and (after["name"] == before["name"]).all()
    assert scored.manifest.transactions is not None
    assert scored.manifest.transactions.customers == len(after)


def test_the_command_line_scores_into_a_results_folder(spark, trained, tmp_path, capsys):
    path, run = trained
    out = tmp_path / "scored"
    assert main(["score", str(run), str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == (
        f"1,500 customers placed in the 4 segments of {run} -> {out}"
    )
    assert "Our VIPs" in printed
    assert (customers(out)["segment"] == customers(run)["segment"]).all()
    assert main(["score", str(run), str(path), "--out", str(out)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err


def test_an_assignment_job_runs_and_names_its_model(spark, trained, tmp_path):
    path, run = trained
    store = JobStore(tmp_path / "home")
    runner = JobRunner(store, run_pipeline_job(store, lambda: spark), spark_provider=lambda: spark)
    try:
        model = ModelRef("fitted-job", str(run), 4, "customers.csv · k=4")
        params = {**SegmentationParams(k=4).to_dict(), "model": model.to_dict()}
        job = store.create(path, "march.csv", params)
        runner.submit(job.id)
        done = runner.wait(job.id, timeout=300)
    finally:
        runner.shutdown()
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.model == model and done.summary["k"] == 4
    results = load_results(done.result_dir)
    assert results.manifest.model_source is not None
    assert results.manifest.model_source.folder == str(run)
    assert "Our VIPs" in list(results.segments["name"])


def test_a_file_without_the_id_and_with_a_constant_feature_is_still_placed(
    spark, trained, tmp_path
):
    """The model needs its features, not the training file's other roles; a feature that does
    not vary in the new file is still one of the model's inputs."""
    path, run = trained
    table = pd.read_csv(path).rename(columns={"CustomerID": "client"}).head(200)
    table["Frequency"] = 3
    new = tmp_path / "constant.csv"
    table.to_csv(new, index=False)
    scored = run_scoring(spark, run, str(new), tmp_path / "scored")
    placed = customers(scored.out_dir)
    assert len(placed) == 200 and (placed["segment"] != "").all()
    assert scored.manifest.features == ["Age", "Spend", "Recency", "Frequency"]
    assert "saved centres" in scored.manifest.metrics.fit_kind


def test_a_reformatted_export_is_placed_and_compared_by_id(spark, trained, tmp_path):
    """Spend written as '$1,550.00' and ids as '1001.0': the same customers, the same segments,
    and a comparison with the model in which nobody moved."""
    from segmentation.comparison import compare

    path, run = trained
    table = pd.read_csv(path)
    table["CustomerID"] = [f"{int(i[1:])}.0" for i in table["CustomerID"]]
    table["Spend"] = [f"${v:,.2f}" if v == v else "" for v in table["Spend"]]
    new = tmp_path / "export.csv"
    table.to_csv(new, index=False)
    fitted = customers(run).assign(CustomerID=lambda t: t["CustomerID"].str[1:].astype(int))
    model = fitted.rename(columns={"CustomerID": "id"})
    scored = run_scoring(spark, run, str(new), tmp_path / "scored")
    placed = customers(scored.out_dir).assign(id=lambda t: t["CustomerID"].astype(float))
    assert (placed["segment"].to_numpy() == model["segment"].to_numpy()).all()
    assert (placed["id"].to_numpy() == model["id"].to_numpy()).all()

    renumbered = tmp_path / "renumbered.csv"  # the model's customers under the new ids
    pd.read_csv(path).assign(CustomerID=table["CustomerID"]).to_csv(renumbered, index=False)
    again = run_scoring(spark, run, str(renumbered), tmp_path / "again")
    moved = compare(spark, again.out_dir, scored.out_dir)
    assert moved.moved_customers == moved.new_customers == moved.lost_customers == 0
    assert moved.same_customers == 1500
    both = moved.migration
    assert (both["spend_before"] - both["spend_after"]).abs().max() < 0.01


def test_refunds_in_a_file_assigned_to_a_plain_log_model_are_said_to_count_as_0(
    spark, trained, tmp_path
):
    """The saved model (like every older one) sees log(1 + x) of Spend: this file's refunds are
    worded from that transform, not from this file's skew, and the account counts them."""
    path, run = trained
    table = pd.read_csv(path)
    table.loc[:2, "Spend"] = [-40.0, -15.5, -3.0]
    refunds = tmp_path / "refunds.csv"
    table.to_csv(refunds, index=False)
    model = load_model(run)
    assert model.model.features["Spend"].transform == "log"

    report = check_input(spark, str(refunds), model, model.manifest.params.load_options)
    (said,) = [p for p in report.warnings if "negative" in p.message]
    assert said.message == (
        "3 negative values in 'Spend' (lowest -40); counted as 0: the saved segmentation sees "
        "log(1 + x) of this feature, which was made without negatives. Check refunds or data "
        "entry."
    )
    assert said.repair  # the assignment's account says it: once, in its own words
    scored = run_scoring(spark, run, str(refunds), tmp_path / "scored")
    assert (
        "The model sees 'Spend' as log(1 + x) (as the saved segmentation does; its 3 negative "
        "values count as 0), so its top customers stay apart instead of sharing a cap; it is not "
        "capped."
    ) in scored.manifest.repairs.sentences()
    assert not any("negative" in w for w in scored.manifest.warnings)
