"""The job store on a real SQLite file and the runner on the shared real SparkSession."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from segmentation.errors import InputError, SegmentationError
from segmentation.job_runner import JobRunner, run_pipeline_job, short_reason
from segmentation.job_store import JobStore
from segmentation.jobs import JobOutcome, JobState, workspace_dir
from segmentation.uploads import save_upload
from tests.helpers import SAMPLE, wait_until

CSV = b"CustomerID,Age,Spend\n1,45,1550\n2,38,820\n"


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(tmp_path / "home")


@pytest.fixture
def upload(store) -> Path:
    return save_upload(store.uploads, CSV, "My customers (March).csv", ".csv")


def rows(store: JobStore, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(store.database) as conn:
        return conn.execute(sql, args).fetchall()


def test_workspace_dir_follows_segmentation_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGMENTATION_HOME", str(tmp_path / "elsewhere"))
    assert workspace_dir() == tmp_path / "elsewhere"
    assert workspace_dir().is_dir()


def test_store_layout_and_wal(store):
    assert (store.home / "jobs.sqlite3").is_file()
    assert (store.home / "uploads").is_dir() and (store.home / "results").is_dir()
    assert rows(store, "PRAGMA journal_mode") == [("wal",)]


def test_upload_gets_a_generated_name(store, upload):
    assert upload.parent == store.uploads
    assert upload.suffix == ".csv"
    assert "March" not in upload.name and "customers" not in upload.name
    assert upload.read_bytes() == CSV
    with open(upload, "rb") as stream:
        again = save_upload(store.uploads, stream, "../../etc/passwd.csv.gz", "")
    assert again.parent == store.uploads and again.name.endswith(".csv.gz")
    assert again != upload and again.read_bytes() == CSV
    assert save_upload(store.uploads, CSV, "data", "PARQUET").suffix == ".parquet"
    with pytest.raises(InputError):
        save_upload(store.uploads, CSV, "x", "/../../evil")


def test_create_get_list_messages_round_trip(store, upload):
    params = {"k": 3, "features": ["Age", "Spend"], "outliers": "cap"}
    job = store.create(upload, "My customers (March).csv", params)

    assert len(job.id) >= 16 and job.owner == "local"
    assert job.state == JobState.QUEUED and job.is_active
    assert job.input_path == str(upload.resolve())
    assert job.original_name == "My customers (March).csv"
    assert job.params == params
    assert job.progress == 0.0 and job.duration is None
    assert store.get(job.id) == job
    assert store.get("no-such-job-here") is None
    assert store.get("../../etc") is None

    assert store.mark_running(job.id)
    assert store.update_progress(job.id, "loading", 0.05, "Reading the file")
    assert store.update_progress(job.id, "clustering", 2.0, "Fitting KMeans with k=3")
    running = store.get(job.id)
    assert running.state == JobState.RUNNING
    assert running.stage == "clustering" and running.progress == 1.0  # clamped
    assert running.duration is not None and running.duration >= 0

    result_dir = store.result_dir(job.id)
    summary = {"rows": 30, "k": 3, "silhouette": 0.61}
    assert store.mark_succeeded(job.id, result_dir, summary, {"loading": 0.5, "clustering": 1.25})
    assert not store.update_progress(job.id, "late", 0.5, "ignored once finished")
    assert store.set_segment_names(job.id, 3, {1: " Loyal big spenders ", 2: "", 3: "Newcomers"})
    assert store.set_chosen_k(job.id, 3)

    done = store.get(job.id)
    assert done.state == JobState.SUCCEEDED and not done.is_active
    assert done.result_dir == str(result_dir)
    assert done.summary == summary
    assert done.timings == {"loading": 0.5, "clustering": 1.25}
    assert done.segment_names == {3: {1: "Loyal big spenders", 3: "Newcomers"}}
    assert done.chosen_k == 3
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.duration == (done.finished_at - done.started_at).total_seconds()

    log = [(m.stage, m.message) for m in store.messages(job.id)]
    assert log == [
        ("queued", "Queued."),
        ("running", "Started."),
        ("loading", "Reading the file"),
        ("clustering", "Fitting KMeans with k=3"),
        ("succeeded", "Finished."),
    ]
    stamps = [m.ts for m in store.messages(job.id)]
    assert stamps == sorted(stamps)

    second = store.create(upload, "other.csv", {"k": 4}, owner="ana")
    third = store.create(upload, "third.csv", {"k": 5}, owner="ana")
    assert [j.id for j in store.list()] == [third.id, second.id, job.id]
    assert [j.id for j in store.list(owner="ana")] == [third.id, second.id]
    assert [j.id for j in store.list(limit=1)] == [third.id]
    assert store.list(owner="nobody") == []


def test_state_changes_only_from_the_right_states(store, upload):
    job = store.create(upload, "c.csv", {})
    assert not store.mark_succeeded(job.id, "x", {}, {})  # never ran
    assert store.mark_cancelled(job.id)
    assert not store.mark_running(job.id)  # a cancelled job is not started
    assert not store.mark_failed(job.id, "late")
    assert store.get(job.id).state == JobState.CANCELLED


def test_restart_marks_left_over_jobs_interrupted_and_retry_requeues(store, upload):
    running = store.create(upload, "customers.csv", {"k": 3, "seed": 7})
    store.mark_running(running.id)
    store.update_progress(running.id, "clustering", 0.4, "Fitting KMeans with k=3")
    waiting = store.create(upload, "customers.csv", {"k": 4})
    # A job queued by another (now dead) process.
    orphan = store.create(upload, "customers.csv", {"k": 5})
    with sqlite3.connect(store.database) as conn:
        conn.execute("UPDATE jobs SET process = 'a-dead-process' WHERE id = ?", (orphan.id,))

    reopened = JobStore(store.home)

    interrupted = reopened.get(running.id)
    assert interrupted.state == JobState.INTERRUPTED and not interrupted.is_active
    assert "Retry" in interrupted.error and interrupted.finished_at is not None
    assert interrupted.stage == "clustering"
    assert reopened.get(orphan.id).state == JobState.INTERRUPTED
    # Queued by this process and maybe about to be submitted: left alone.
    assert reopened.get(waiting.id).state == JobState.QUEUED
    assert reopened.messages(running.id)[-1].stage == "interrupted"
    assert reopened.recover_interrupted() == 0

    again = reopened.retry(running.id)
    assert again.id != running.id
    assert again.state == JobState.QUEUED
    assert again.input_path == running.input_path
    assert again.params == {"k": 3, "seed": 7}
    assert again.original_name == "customers.csv"
    with pytest.raises(SegmentationError):
        reopened.retry(waiting.id)


def test_retry_needs_the_input_file(store, upload):
    job = store.create(upload, "customers.csv", {})
    store.mark_cancelled(job.id)
    upload.unlink()
    with pytest.raises(InputError, match="no longer available"):
        store.retry(job.id)


def test_delete_removes_row_messages_upload_and_results(store, upload):
    first = store.create(upload, "customers.csv", {"k": 3})
    second = store.create(upload, "customers.csv", {"k": 4})
    for job in (first, second):
        store.mark_running(job.id)
        out = store.result_dir(job.id)
        out.mkdir()
        (out / "manifest.json").write_text("{}")
        store.mark_succeeded(job.id, out, {}, {})
    leftover = store.results / f".{first.id}.partial-1234abcd"
    leftover.mkdir()

    assert store.delete(first.id)
    assert store.get(first.id) is None
    assert rows(store, "SELECT COUNT(*) FROM job_messages WHERE job_id = ?", first.id) == [(0,)]
    assert not store.result_dir(first.id).exists() and not leftover.exists()
    assert upload.exists(), "the second job still uses the upload"
    assert store.result_dir(second.id).exists()

    assert store.delete(second.id)
    assert not upload.exists()
    assert not store.result_dir(second.id).exists()
    assert rows(store, "SELECT COUNT(*) FROM jobs") == [(0,)]
    assert rows(store, "SELECT COUNT(*) FROM job_messages") == [(0,)]
    assert not store.delete(second.id)


def test_delete_keeps_files_the_store_did_not_save_and_refuses_active_jobs(store):
    job = store.create(SAMPLE, "sample_data.csv", {"k": 3})
    with pytest.raises(SegmentationError, match="Cancel"):
        store.delete(job.id)
    store.mark_cancelled(job.id)
    assert store.delete(job.id)
    assert SAMPLE.exists()


def test_short_reason_is_one_readable_line():
    assert short_reason(ValueError("bad value\n  at line 2")) == "ValueError: bad value"
    assert short_reason(KeyError()) == "KeyError"
    py4j = RuntimeError(
        "An error occurred while calling o44.collectToPython.\n"
        ": org.apache.spark.SparkException: Job 3 cancelled\n\tat org.apache..."
    )
    assert short_reason(py4j) == "RuntimeError: org.apache.spark.SparkException: Job 3 cancelled"
    assert len(short_reason(ValueError("x" * 1000))) == 300


# The runner, on the shared real SparkSession.


@pytest.fixture
def make_runner(store, spark):
    runners = []

    def make(work, max_workers=2):
        runner = JobRunner(store, work, max_workers, spark_provider=lambda: spark)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.shutdown()


def test_cancel_interrupts_a_long_spark_job(store, upload, spark, make_runner):
    started = threading.Event()

    def work(job, progress):
        progress("summing", 0.1, "Summing a trillion numbers")
        started.set()
        # Would take many minutes on two cores if it were not interrupted.
        spark.range(10**12).selectExpr("sum(id % 10) AS total").collect()
        progress("after", 0.9, "never reached")

    runner = make_runner(work)
    job = store.create(upload, "customers.csv", {})
    runner.submit(job.id)
    assert started.wait(30)
    tracker = spark.sparkContext.statusTracker()
    wait_until(lambda: tracker.getActiveJobsIds(), 30, "the Spark job to run")

    asked = time.monotonic()
    assert runner.cancel(job.id)
    finished = runner.wait(job.id, timeout=30)
    took = time.monotonic() - asked

    assert finished.state == JobState.CANCELLED
    assert took < 10, f"cancelling took {took:.1f}s"
    assert finished.stage == "summing"
    messages = [m.message for m in store.messages(job.id)]
    assert "Cancelling..." in messages and "never reached" not in messages
    wait_until(lambda: not tracker.getActiveJobsIds(), 30, "Spark to go idle")
    # The shared session is still usable, and this thread carries no job tag.
    assert spark.range(1000).selectExpr("sum(id) AS s").collect()[0]["s"] == 499500
    assert spark.getTags() == set()


def test_progress_stops_the_work_between_stages(store, upload, make_runner):
    in_first_stage = threading.Event()
    go_on = threading.Event()

    def work(job, progress):
        progress("first", 0.2, "first stage")
        in_first_stage.set()
        go_on.wait(30)
        progress("second", 0.6, "second stage")
        return JobOutcome(store.result_dir(job.id))

    runner = make_runner(work)
    job = store.create(upload, "customers.csv", {})
    runner.submit(job.id)
    assert in_first_stage.wait(30)
    runner.cancel(job.id)
    go_on.set()

    finished = runner.wait(job.id, timeout=30)
    assert finished.state == JobState.CANCELLED
    assert finished.stage == "first"
    assert "second stage" not in [m.message for m in store.messages(job.id)]


def test_a_running_job_shows_the_pipelines_stage_times(store, upload, make_runner):
    in_second_stage = threading.Event()
    go_on = threading.Event()

    def work(job, progress):
        progress("loading", 0.0, "reading", {})
        progress("validating", 0.1, "checking", {"loading": 1.25})
        in_second_stage.set()
        go_on.wait(30)
        return JobOutcome(store.result_dir(job.id), timings={"loading": 1.25, "validating": 0.5})

    runner = make_runner(work)
    job = store.create(upload, "customers.csv", {})
    runner.submit(job.id)
    assert in_second_stage.wait(30)
    running = store.get(job.id)
    spent = running.stage_seconds()
    assert running.timings == {"loading": 1.25}
    assert set(spent) == {"loading", "validating"} and spent["loading"] == 1.25
    assert 0 <= spent["validating"] <= running.duration
    go_on.set()

    finished = runner.wait(job.id, timeout=30)
    assert finished.stage_seconds() == {"loading": 1.25, "validating": 0.5}


def test_two_jobs_run_at_once_and_keep_their_own_results(store, upload, spark, make_runner):
    both_running = threading.Barrier(2, timeout=60)

    def work(job, progress):
        n = job.params["n"]
        progress("counting", 0.1, f"Summing 0..{n - 1}")
        both_running.wait()  # fails unless the two jobs really run side by side
        total = spark.range(n).selectExpr("sum(id) AS total").collect()[0]["total"]
        progress("saving", 0.9, "Writing the result")
        out = store.result_dir(job.id)
        out.mkdir()
        (out / "result.json").write_text(json.dumps({"job": job.id, "total": total}))
        return JobOutcome(out, {"rows": n}, {"counting": 0.1})

    runner = make_runner(work)
    jobs = [store.create(upload, "customers.csv", {"n": n}) for n in (1_000, 20_000)]
    for job in jobs:
        runner.submit(job.id)
    finished = [runner.wait(job.id, timeout=120) for job in jobs]

    for job, done in zip(jobs, finished, strict=True):
        n = job.params["n"]
        assert done.state == JobState.SUCCEEDED, done.error
        assert done.progress == 1.0
        assert done.summary == {"rows": n}
        assert done.timings == {"counting": 0.1}
        result = json.loads((Path(done.result_dir) / "result.json").read_text())
        assert result == {"job": job.id, "total": n * (n - 1) // 2}
    assert finished[0].result_dir != finished[1].result_dir


def test_the_stage_timings_the_work_reports_are_kept_with_the_job(store, upload, make_runner):
    def work(job, progress):
        progress("one", 0.1, "")
        return JobOutcome(store.result_dir(job.id), {"k": 3}, {"one": 1.25, "two": 0.5})

    runner = make_runner(work)
    job = store.create(upload, "customers.csv", {})
    runner.submit(job.id)
    done = runner.wait(job.id, timeout=30)
    assert done.state == JobState.SUCCEEDED
    assert done.timings == {"one": 1.25, "two": 0.5}
    assert store.get(job.id).timings == {"one": 1.25, "two": 0.5}  # stored, not only returned
    assert done.result_dir == str(store.result_dir(job.id))


def test_queued_jobs_have_positions_and_can_be_cancelled_before_they_start(
    store, upload, make_runner
):
    release = threading.Event()
    ran = []

    def work(job, progress):
        ran.append(job.id)
        release.wait(30)

    runner = make_runner(work, max_workers=1)
    first, second, third = (store.create(upload, "c.csv", {}) for _ in range(3))
    for job in (first, second, third):
        runner.submit(job.id)
    wait_until(lambda: ran == [first.id], 30, "the first job to start")

    assert runner.queue_position(first.id) is None
    assert runner.queue_position(second.id) == 1
    assert runner.queue_position(third.id) == 2
    assert runner.cancel(third.id)
    assert store.get(third.id).state == JobState.CANCELLED  # at once, not when its turn comes

    release.set()
    assert runner.wait(first.id, timeout=30).state == JobState.SUCCEEDED
    assert runner.wait(second.id, timeout=30).state == JobState.SUCCEEDED
    assert runner.wait(third.id, timeout=30).state == JobState.CANCELLED
    assert ran == [first.id, second.id]
    assert runner.queue_position(second.id) is None


def test_segmentation_error_fails_the_job_with_its_message(store, upload, make_runner):
    def work(job, progress):
        progress("validating", 0.2, "Checking columns and values")
        raise InputError("The file has no Spend column.", hint="Map a column to Spend.")

    runner = make_runner(work)
    job = store.create(upload, "customers.csv", {})
    runner.submit(job.id)
    done = runner.wait(job.id, timeout=30)
    assert done.state == JobState.FAILED
    assert done.error == "The file has no Spend column. Map a column to Spend."
    assert store.messages(job.id)[-1].message == f"Failed: {done.error}"


def test_unexpected_error_fails_with_a_short_reason_and_logs_the_traceback(
    store, upload, spark, make_runner, caplog
):
    def work(job, progress):
        progress("evaluation", 0.7, "Measuring segment quality")
        spark.sql("SELECT 1 / 0 AS boom").collect()  # ANSI mode: a real Spark error

    runner = make_runner(work)
    job = store.create(upload, "customers.csv", {})
    with caplog.at_level(logging.ERROR, logger="segmentation.job_runner"):
        runner.submit(job.id)
        done = runner.wait(job.id, timeout=60)

    assert done.state == JobState.FAILED
    assert "DIVIDE_BY_ZERO" in done.error
    assert "\n" not in done.error and "Traceback" not in done.error
    assert len(done.error) <= 300
    logged = [r for r in caplog.records if r.name == "segmentation.job_runner" and r.exc_info]
    assert logged and job.id in logged[0].getMessage()


def test_submit_refuses_a_job_that_is_not_queued(store, upload, make_runner):
    runner = make_runner(lambda job, progress: None)
    job = store.create(upload, "c.csv", {})
    store.mark_cancelled(job.id)
    with pytest.raises(ValueError):
        runner.submit(job.id)


def test_pipeline_job_end_to_end_on_the_sample_data(store, spark, make_runner):
    upload = save_upload(store.uploads, SAMPLE.read_bytes(), SAMPLE.name, ".csv")
    runner = make_runner(run_pipeline_job(store, lambda: spark))
    job = store.create(upload, SAMPLE.name, {"k": 3, "seed": 42})
    runner.submit(job.id)
    done = runner.wait(job.id, timeout=300)

    assert done.state == JobState.SUCCEEDED, done.error
    out = Path(done.result_dir)
    assert out == store.result_dir(job.id)
    manifest = json.loads((out / "manifest.json").read_text())
    assert done.summary["rows"] == manifest["rows_out"] == 30
    assert done.summary["k"] == 3
    assert done.summary["silhouette"] == pytest.approx(manifest["metrics"]["silhouette"])
    assert -1.0 <= done.summary["silhouette"] <= 1.0
    assert set(done.timings) >= {"loading", "clustering", "saving"}
    assert done.progress == 1.0
    stages = {m.stage for m in store.messages(job.id)}
    assert {"loading", "validating", "clustering", "saving"} <= stages
