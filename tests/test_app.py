"""The Streamlit app driven through AppTest from the entrypoint, with a real engine and job store."""

from __future__ import annotations

import json
import os

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT, SAMPLE, real_shaped_log, refunds_csv, wait_until

PAGES = [
    "app_pages/home.py",
    "app_pages/upload.py",
    "app_pages/monitor.py",
    "app_pages/results.py",
    "app_pages/visualization.py",
    "app_pages/about.py",
]


@pytest.fixture(scope="module", autouse=True)
def workspace(tmp_path_factory, spark):
    """One workspace for this module's app; the engine shares the test session's Spark."""
    os.environ["SEGMENTATION_HOME"] = str(tmp_path_factory.mktemp("workspace"))
    import ui

    ui.services.clear()
    yield
    ui.services().runner.shutdown()
    ui.services.clear()


def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def wait_for(job_id: str, timeout: float = 240):
    """The job, once it has finished (succeeded, failed or cancelled)."""
    import ui

    def finished():
        job = ui.services().store.get(job_id)
        return None if job.is_active else job

    return wait_until(finished, timeout, f"job {job_id} to finish", every=0.5)


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "error", "warning", "success")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_before_any_job(page):
    at = app().run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.title[0].value


def test_sample_flow_runs_a_real_job_through_spark_to_results():
    import ui

    at = app().run()
    button(at, "Try it with sample data").click().run()
    assert not at.exception
    assert at.title[0].value == "Job Monitor"
    job = ui.services().store.list(owner="local")[0]
    assert job.original_name == "sample_customers.csv"
    finished = wait_for(job.id)
    assert finished.state.value == "succeeded", finished.error

    at.switch_page("app_pages/results.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Customers"] == "20" and metrics["Segments"] == "4"
    assert metrics["Silhouette"] != "n/a" and -1 <= float(metrics["Silhouette"]) <= 1
    results = ui.results_of(finished)
    page_text = texts(at).replace("\\", "")
    for row in results.segments.to_dict("records"):
        assert row["name"] in page_text
        # Each card says how many of its customers are what its name says.
        assert f"customers ({row['rfm_agreement_share']:.0%}) are {row['rfm_name']} by" in page_text
    assert len(at.get("download_button")) == 3
    # Profiles in real units, and apart from them, labelled, the centres the model saw.
    (seen,) = [e for e in at.expander if e.label == "What the model saw"]
    assert seen.dataframe[0].value.equals(results.model_table())
    # Beside KMeans, classic RFM: how the segments overlap with the R×F grid's segments.
    assert "Segments and classic RFM" in [h.value for h in at.subheader]
    (overlap,) = at.get("plotly_chart")
    figure = json.loads(overlap.proto.spec)
    assert figure["data"][0]["type"] == "heatmap"
    assert figure["data"][0]["y"] == list(results.rfm_overlap().index)

    at.switch_page("app_pages/visualization.py").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 8

    at.switch_page("app_pages/monitor.py").run()
    assert not at.exception
    assert "done in" in texts(at)


def test_renamed_segments_are_kept_and_exported():
    import ui

    at = app().run()
    button(at, "Try it with sample data").click().run()
    job = wait_for(at.session_state["job_id"])  # this test's own job, started as a user does
    assert job.state.value == "succeeded", job.error
    at.switch_page("app_pages/results.py").run()
    at.text_input[0].set_value("Our best customers")
    next(b for b in at.get("form_submit_button")).click().run()
    assert not at.exception
    assert ui.services().store.get(job.id).segment_names[4][1] == "Our best customers"
    # The card's agreement still speaks of the RFM segment the name came from.
    rfm_name = ui.results_of(job).segments["rfm_name"][0]
    assert f"are {rfm_name} by their own RFM scores" in texts(at).replace("\\", "")
    results = ui.results_of(ui.services().store.get(job.id))
    exported = ui.customers_csv(results).decode()
    assert "Our best customers" in exported


def test_invalid_upload_shows_the_message_and_starts_nothing():
    import ui

    before = len(ui.services().store.list())
    at = app().run()
    at.switch_page("app_pages/upload.py").run()
    at.file_uploader[0].set_value(
        ("customers.csv", b"PK\x03\x04 not really a csv", "text/csv")
    ).run()
    assert not at.exception
    assert any("Excel workbook" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Start segmentation"]

    at.file_uploader[0].set_value(
        ("tiny.csv", b"Age,Spend,Recency,Frequency\n1,2,3,4\n", "text/csv")
    ).run()
    assert not at.exception
    start = button(at, "Start segmentation")
    assert start.disabled
    assert any("fewer than" in e.value for e in at.error)
    assert len(ui.services().store.list()) == before


def test_upload_then_start_queues_a_job_with_the_chosen_settings():
    import ui

    at = app().run()
    at.switch_page("app_pages/upload.py").run()
    at.file_uploader[0].set_value(("shop.csv", SAMPLE.read_bytes(), "text/csv")).run()
    assert not at.exception
    assert not at.error
    at.slider[0].set_value(3).run()
    next(r for r in at.radio if r.label == "Fit the segments on").set_value("full").run()
    button(at, "Start segmentation").click().run()
    assert not at.exception
    job = ui.services().store.list()[0]
    assert job.original_name == "shop.csv" and job.params["k"] == 3
    assert job.params["fit"] == "full"
    assert job.params["features"] == ["Age", "Spend", "Recency", "Frequency"]
    assert wait_for(job.id).state.value == "succeeded"


def test_switching_k_of_a_sweep_redraws_results_without_a_spark_job(spark, tmp_path):
    import ui
    from segmentation.params import SegmentationParams
    from tests.helpers import synthetic_csv

    path = tmp_path / "sweep.csv"
    synthetic_csv(path, n=500, segments=3, seed=8)
    job = ui.start_job(path, "sweep.csv", SegmentationParams(k_range=(2, 4)))
    assert wait_for(job.id).state.value == "succeeded"

    at = app()
    at.session_state["job_id"] = job.id
    at.run()
    at.switch_page("app_pages/results.py").run()
    assert not at.exception
    suggested = ui.sweep_of(ui.services().store.get(job.id).result_dir).suggested_k
    assert {m.label: m.value for m in at.metric}["Segments"] == str(suggested)
    other = 2 if suggested != 2 else 3

    tracker = spark.sparkContext.statusTracker()
    jobs_before = len(tracker.getJobIdsForGroup())
    at.select_slider[0].set_value(other).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Segments"] == str(other)
    assert len(tracker.getJobIdsForGroup()) == jobs_before  # no Spark job ran
    # Browsing is not choosing: the k assignments and comparisons use has not moved.
    assert ui.services().store.get(job.id).chosen_k is None
    assert f"use k = {suggested} (suggested)" in texts(at)

    at.switch_page("app_pages/visualization.py").run()
    assert not at.exception
    assert at.select_slider[0].value == other  # the same k on both pages of this session
    assert len(at.get("plotly_chart")) >= 10  # the sweep adds metric and split charts
    assert ui.services().store.get(job.id).chosen_k is None

    # Choosing is one explicit click, and the pickers then mark the chosen k.
    button(at, f"Use k = {other} for this segmentation").click().run()
    assert not at.exception
    assert ui.services().store.get(job.id).chosen_k == other
    assert f"use k = {other} (chosen)" in texts(at)
    assert not [b for b in at.button if b.label.startswith("Use k =")]
    assert at.select_slider[0].value == other

    # Another visitor's session opens the chosen k.
    again = app()
    again.session_state["job_id"] = job.id
    again.run()
    again.switch_page("app_pages/results.py").run()
    assert {m.label: m.value for m in again.metric}["Segments"] == str(other)


def test_refunds_are_logged_signed_preselected_and_every_repair_is_said(tmp_path):
    import ui

    path = refunds_csv(tmp_path / "refunds.csv")
    at = app().run()
    at.switch_page("app_pages/upload.py").run()
    at.file_uploader[0].set_value(("refunds.csv", path.read_bytes(), "text/csv")).run()
    assert not at.exception and not at.error
    assert at.multiselect[-1].value == ["Spend"]  # "Log-transform": the signed log, not a cap
    assert any("kept: the model sees sign(x)" in w.value.replace("\\", "") for w in at.warning)
    button(at, "Start segmentation").click().run()
    done = wait_for(ui.services().store.list()[0].id)
    assert done.state.value == "succeeded", done.error

    at.switch_page("app_pages/results.py").run()
    assert not at.exception
    (box,) = [i.value.replace("\\", "") for i in at.info if "What the run repaired" in i.value]
    assert box.splitlines() == [
        "**What the run repaired**",
        "",
        "- Filled 1 missing value of 'Age' with the median, 39.",
        "- The model sees 'Spend' as sign(x)·log(1 + |x|) (chosen automatically: "
        "skewness 5.8 above 1; its 3 negative values stay below zero), so its top customers stay "
        "apart instead of sharing a cap; it is not capped.",
        "- No customer lies outside the IQR fences of 'Age', 'Recency' and 'Frequency': none "
        "capped there.",
    ]


def test_dataset_location_is_read_only_under_the_allowed_roots(tmp_path, monkeypatch):
    import ui

    allowed = tmp_path / "shared"
    allowed.mkdir()
    (allowed / "customers.csv").write_bytes(SAMPLE.read_bytes())
    monkeypatch.setenv("SEGMENTATION_DATA_ROOTS", str(allowed))
    at = app().run()
    at.switch_page("app_pages/upload.py").run()
    at.get("button_group")[0].set_value("A location the cluster reads").run()
    at.text_input[0].set_value("/etc/passwd").run()
    assert not at.exception
    assert any("outside the folders this app may read" in e.value for e in at.error)
    before = len(ui.services().store.list())

    at.text_input[0].set_value(str(allowed / "customers.csv")).run()
    assert not at.exception and not at.error
    button(at, "Start segmentation").click().run()
    job = ui.services().store.list()[0]
    assert len(ui.services().store.list()) == before + 1
    assert job.input_path == str(allowed / "customers.csv") and job.original_name == "customers.csv"
    assert wait_for(job.id).state.value == "succeeded"


@pytest.mark.slow  # order logs run in process in test_transactions; this adds the page
def test_an_order_log_upload_builds_customers_and_runs_to_results(tmp_path):
    import ui
    from segmentation.synthetic import write_transactions

    path = tmp_path / "orders.csv"
    write_transactions(path, 400, seed=2)
    at = app().run()
    at.switch_page("app_pages/upload.py").run()
    at.file_uploader[0].set_value(("orders.csv", path.read_bytes(), "text/csv")).run()
    assert not at.exception and not at.error
    shown = texts(at).replace("\\", "")  # ui.plain escapes Markdown
    assert "Order log: " in shown and "customers, built with Spark" in shown
    assert "return lines" in shown
    assert at.multiselect[0].value == ["Spend", "Recency", "Frequency"]
    button(at, "Start segmentation").click().run()
    job = ui.services().store.list()[0]
    assert job.params["input_kind"] == "auto"
    done = wait_for(job.id)
    assert done.state.value == "succeeded", done.error
    at.switch_page("app_pages/results.py").run()
    assert not at.exception
    assert "last order" in texts(at)


def test_per_user_mode_keeps_two_visitors_apart(monkeypatch):
    import ui

    monkeypatch.setenv("SEGMENTATION_ACCESS", "per-user")
    first = app().run()
    button(first, "Try it with sample data").click().run()
    assert not first.exception
    token = first.session_state["visitor"]
    job = next(j for j in ui.services().store.list() if j.owner == f"visitor:{token}")
    assert wait_for(job.id).state.value == "succeeded"

    second = app()
    second.session_state["job_id"] = job.id  # even knowing the id shows nothing
    second.run()
    assert second.session_state["visitor"] != token
    sidebar = " ".join(
        str(e.value) for e in second.sidebar if type(e).__name__ == "Caption"
    ).replace("\\", "")
    assert "private to this page's address" in sidebar and "deleted after 7 days" in sidebar
    second.switch_page("app_pages/results.py").run()
    assert not second.exception
    assert not second.metric and "No finished segmentation yet" in texts(second)
    second.switch_page("app_pages/monitor.py").run()
    assert "sample_customers.csv" not in str([d.value for d in second.dataframe])

    first.switch_page("app_pages/results.py").run()
    assert {m.label: m.value for m in first.metric}["Customers"] == "20"


@pytest.mark.slow  # four validations of an order log; the figures are pinned in test_transactions
def test_a_till_account_is_named_and_one_click_treats_it_as_missing(tmp_path):
    path = real_shaped_log(tmp_path / "gift-shop.csv")
    at = app().run()
    at.switch_page("app_pages/upload.py").run()
    assert at.file_uploader[0].label == "Customer table or order log"
    at.file_uploader[0].set_value(("gift-shop.csv", path.read_bytes(), "text/csv")).run()
    assert not at.exception and not at.error
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "Customer id '99999' has 40 order lines (44% of the lines)" in warned

    button(at, "Treat '99999' as missing").click().run()
    assert not at.exception
    assert at.text_input(key="missing-ids").value == "99999"
    shown = texts(at).replace("\\", "")
    assert "Customer id '99999'" not in shown
    assert "49 order lines (9% of spend) had no real customer id ('99999' 40, '(blank)' 3" in shown
