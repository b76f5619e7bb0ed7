"""Faults, injected for real: the app killed mid-job, the Spark JVM killed mid-job, Spark out of
memory, a result folder that cannot be completed. Nothing is simulated with a monkeypatch.

- The whole `streamlit run app.py` process group (Streamlit and its JVM) gets SIGKILL while a job
  runs; a new server on the same workspace shows the job as interrupted, and Retry completes it.
- The JVM of a job runner gets SIGKILL while a job runs (in a separate Python process, so the
  test session's shared SparkSession is untouched): that job fails with a one-line reason and
  the next job gets a new working session.
- A damaged file makes Spark run out of memory (its JVM then exits, as Spark's do): that job
  fails saying so and what to change, and the next job gets a new working session.
- A folder stands in the way of a result the writer is assembling: the job fails, the half-written
  folder is removed and the Results page never offers it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, suppress
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from segmentation.job_runner import JobRunner, run_pipeline_job
from segmentation.job_store import JobStore
from segmentation.jobs import JobState
from segmentation.results import CUSTOMERS, MANIFEST
from segmentation.spark_engine import ENGINE_LOST, OUT_OF_MEMORY_EXIT
from segmentation.synthetic import write_customers
from tests.browser import (
    CHROMIUM,
    JOB_TIMEOUT_MS,
    MISSING_CHROMIUM,
    app_server,
    assert_no_exception,
    choose_segmentation,
    history_row,
    jobs,
    launch_chromium,
    new_page,
    open_page,
    start_segmentation,
    upload,
    wait_for_done,
    wait_for_report,
)
from tests.helpers import ROOT, SAMPLE, wait_until

# Stages in the middle of a run: past reading and checking the file, before the job is over.
pytestmark = pytest.mark.faults

MID_RUN = ("clustering", "evaluation", "profiling", "saving")
BIG_ROWS = 50_000  # a browser job whose results take a few seconds to write
JVM_KILL_ROWS = 5_000
HUGE_FIELD_CHARS = 300_000_000
SCENARIO_TIMEOUT = 240.0
QUICK = {"k": 3, "seed": 42, "max_iter": 10}  # job parameters for the runs the test controls


def one_line(error: str | None) -> None:
    """A job error the analyst can read: one short line, no traceback, no Java stack."""
    assert error, "the job has no error message"
    assert "\n" not in error and len(error) <= 300, error
    assert "Traceback" not in error and "\tat " not in error, error


def group_members(pgid: int) -> list:
    """The live (not zombie) processes of a process group."""
    import psutil

    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != "zombie":
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


# 1. The app killed in the middle of a job.


@pytest.mark.browser
def test_app_killed_mid_job_leaves_an_interrupted_job_that_retry_completes(tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(MISSING_CHROMIUM)
        pytest.skip(MISSING_CHROMIUM)
    name = "killed-mid-job.csv"
    csv = tmp_path / "inputs" / name
    csv.parent.mkdir()
    write_customers(csv, BIG_ROWS)
    workspace = tmp_path / "workspace"
    timings: dict[str, float] = {}

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            with app_server(workspace) as server:
                tab = new_page(browser)
                open_page(tab, server, "upload", "Upload customer data")
                upload(tab, csv)
                wait_for_report(tab)
                start_segmentation(tab)
                started = time.monotonic()
                members = group_members(server.process_group)
                assert any(p.name() == "java" for p in members), "no Spark JVM in the app's group"
                # The worst moment: Spark is filling the hidden folder the results are written to.
                writing = wait_until(
                    lambda: half_written_result(workspace),
                    JOB_TIMEOUT_MS / 1000,
                    "the job to start writing its results",
                    every=0.05,
                )
                os.killpg(server.process_group, signal.SIGKILL)
                killed = time.monotonic()
                timings["start to writing results"] = killed - started
                wait_until(
                    lambda: not group_members(server.process_group),
                    30,
                    "the app and its JVM to die",
                )
                timings["kill to all gone"] = time.monotonic() - killed
                tab.context.close()

            # What the dead process left: a running job, its input, a half-written folder.
            (running,) = jobs(workspace)
            job_id = running["id"]
            assert (running["state"], running["stage"]) == ("running", "saving")
            assert Path(running["input_path"]).is_file()
            results = workspace / "results"
            assert writing.name.startswith(f".{job_id}.partial-") and writing.is_dir()
            assert not (results / job_id).exists()

            restarted = time.monotonic()
            with app_server(workspace) as server:
                tab = new_page(browser)
                open_page(tab, server, "monitor", "Job Monitor")
                row = history_row(tab, name)
                expect(row).to_have_count(1)
                expect(row).to_contain_text("interrupted")
                timings["restart to interrupted shown"] = time.monotonic() - restarted
                (interrupted,) = jobs(workspace)
                assert interrupted["id"] == job_id and interrupted["state"] == "interrupted"
                assert "Retry" in interrupted["error"]
                assert Path(interrupted["input_path"]).is_file()
                assert not (results / job_id).exists() and writing.is_dir()

                # Nothing the killed job wrote is offered as a result.
                open_page(tab, server, "results", "Segmentation results")
                expect(tab.get_by_text("No finished segmentation yet")).to_be_visible()

                open_page(tab, server, "monitor", "Job Monitor")
                select_first_history_row(tab)
                reason = tab.get_by_test_id("stAlertContentError")
                expect(reason).to_contain_text(
                    "The app stopped while this job was waiting or running"
                )
                retry = tab.get_by_role("button", name="Retry")
                expect(retry).to_be_enabled()
                retried = time.monotonic()
                retry.click()
                wait_for_done(tab)
                timings["retry to done"] = time.monotonic() - retried

                again, first = jobs(workspace)
                assert first["id"] == job_id and first["state"] == "interrupted"
                assert again["state"] == "succeeded", again["error"]
                assert again["input_path"] == first["input_path"]
                assert json.loads(again["params"]) == json.loads(first["params"])
                manifest = json.loads((Path(again["result_dir"]) / "manifest.json").read_text())
                assert manifest["rows_in"] == BIG_ROWS

                open_page(tab, server, "results", "Segmentation results")
                choose_segmentation(tab, name)
                tab.get_by_role("combobox", name="Segmentation", exact=True).click()
                expect(tab.get_by_role("option")).to_have_count(1)  # the retry's, nothing else
                tab.keyboard.press("Escape")
                customers = tab.get_by_test_id("stMetricValue").first
                expect(customers).to_have_text(f"{manifest['rows_out']:,}", timeout=JOB_TIMEOUT_MS)
                assert_no_exception(tab)
                tab.context.close()
        finally:
            browser.close()
    print(f"\nkilled while writing {writing.name}; " + _seconds(timings))


def half_written_result(workspace: Path) -> Path | None:
    """The hidden folder a running job writes its results into, once Spark is filling it."""
    for partial in (workspace / "results").glob(".*.partial-*"):
        spark_writing = (partial / f".{CUSTOMERS}.parts").exists() or (partial / CUSTOMERS).exists()
        if spark_writing and not (partial / MANIFEST).exists():
            return partial
    over = [j for j in jobs(workspace) if j["state"] not in ("queued", "running")]
    assert not over, f"the job ended before it could be killed: {over}"
    return None


def select_first_history_row(page) -> None:
    """Tick the first row of the Job Monitor's history (the grid is a canvas: click its marker)."""
    grid = page.get_by_test_id("stDataFrame")
    expect(grid.locator("canvas").first).to_be_visible()
    # The row marker column is 30 px wide and rows are 35 px high, the header being row 0.
    grid.click(position={"x": 15, "y": 35 + 17})


def _seconds(timings: dict[str, float]) -> str:
    return ", ".join(f"{what} {seconds:.1f} s" for what, seconds in timings.items())


# 2. The Spark JVM killed in the middle of a job.


def jvm_kill_scenario(home: str) -> None:
    """Run in a fresh Python process: kill the JVM under a running job, then run another job.

    Prints one JSON line with what happened, for the test to check.
    """
    from segmentation.spark_engine import get_spark, stop_spark

    store = JobStore(Path(home))
    customers = Path(home) / "customers.csv"
    write_customers(customers, JVM_KILL_ROWS)
    runner = JobRunner(store, run_pipeline_job(store, get_spark), spark_provider=get_spark)
    report: dict = {"timings": {}}
    try:
        started = time.monotonic()
        first = store.create(customers, customers.name, QUICK)
        runner.submit(first.id)
        wait_until(
            lambda: store.get(first.id).stage in MID_RUN or not store.get(first.id).is_active,
            180,
            "the first job to reach the middle of its run",
        )
        report["stage_at_kill"] = store.get(first.id).stage
        report["timings"]["start to mid-run"] = time.monotonic() - started
        (jvm,) = java_processes()
        report["old_jvm"] = jvm.pid
        jvm.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        failed = runner.wait(first.id, timeout=120)
        report["timings"]["kill to job failed"] = time.monotonic() - killed
        report["first"] = {"state": failed.state.value, "error": failed.error}

        run_next_job(store, runner, report)
    finally:
        runner.shutdown()
        stop_spark()
    print(json.dumps(report))


def out_of_memory_scenario(home: str) -> None:
    """Run in a fresh Python process: a job on a file Spark runs out of memory reading (a
    damaged export whose last field is 300 MB long, more than the 512 MB driver holds as text),
    then another job. Prints one JSON line with what happened, for the test to check."""
    from segmentation.spark_engine import engine_exit_code, get_spark, stop_spark

    store = JobStore(Path(home))
    damaged = Path(home) / "no-line-breaks.csv"
    with open(damaged, "w") as out:
        out.write(SAMPLE.read_text())
        out.write("999,40," + "7" * HUGE_FIELD_CHARS + ",3,4\n")
    runner = JobRunner(store, run_pipeline_job(store, get_spark), spark_provider=get_spark)
    report: dict = {"timings": {}}
    try:
        get_spark()
        (jvm,) = java_processes()
        report["old_jvm"] = jvm.pid
        run_job(store, runner, damaged, report, "first")
        report["old_jvm_exit"] = engine_exit_code(wait=30)
        run_next_job(store, runner, report)
    finally:
        runner.shutdown()
        stop_spark()
    print(json.dumps(report))


def java_processes() -> list:
    """This process's live Spark JVMs."""
    import psutil

    return [
        p
        for p in psutil.Process().children(recursive=True)
        if p.name() == "java" and p.status() != psutil.STATUS_ZOMBIE
    ]


def run_job(store: JobStore, runner: JobRunner, path: Path, report: dict, name: str):
    """Run one job on `path` to its end; its outcome and seconds go into `report` as `name`."""
    started = time.monotonic()
    job = store.create(path, path.name, QUICK)
    runner.submit(job.id)
    done = runner.wait(job.id, timeout=180)
    report["timings"][name] = time.monotonic() - started
    report[name] = {"state": done.state.value, "error": done.error}
    return done


def run_next_job(store: JobStore, runner: JobRunner, report: dict) -> None:
    """After a fault: run a job on the sample and add its outcome and the JVMs to `report`."""
    from segmentation.results import load_results

    done = run_job(store, runner, SAMPLE, report, "second")
    if done.state == JobState.SUCCEEDED:
        report["second"]["rows"] = load_results(done.result_dir).manifest.rows_out
    report["jvms"] = [p.pid for p in java_processes()]


def run_scenario(scenario: str, home: Path, **settings: str) -> tuple[dict, str]:
    """Run one of this module's scenario functions in a fresh Python process (so the test
    session's shared SparkSession is untouched), with extra environment `settings`; its
    report and its stderr."""
    command = [
        sys.executable,
        "-c",
        f"import sys; from tests.test_faults import {scenario}; {scenario}(sys.argv[1])",
        str(home),
    ]
    env = {**os.environ, "SPARK_MASTER": "local[2]", "SPARK_LOCAL_IP": "127.0.0.1", **settings}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=SCENARIO_TIMEOUT)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left: the script, its JVMs
        process.wait(timeout=30)
    assert process.returncode == 0, f"the scenario failed:\n{err[-5000:]}"
    return json.loads(out.strip().splitlines()[-1]), err


def test_jvm_killed_mid_job_fails_that_job_readably_and_the_next_job_gets_a_new_session(
    tmp_path,
):
    report, err = run_scenario("jvm_kill_scenario", tmp_path)

    assert report["stage_at_kill"] in MID_RUN, report
    assert report["first"]["state"] == "failed", report
    one_line(report["first"]["error"])
    assert report["first"]["error"] == ENGINE_LOST
    assert report["second"]["state"] == "succeeded", report
    assert report["second"]["rows"] == 30
    assert report["jvms"] and report["old_jvm"] not in report["jvms"], report
    assert "The Spark JVM has exited" in err  # the session was rebuilt on a new JVM
    print(f"\nfirst job's error: {report['first']['error']}; " + _seconds(report["timings"]))


def test_spark_out_of_memory_fails_that_job_saying_so_and_the_next_job_gets_a_new_session(
    tmp_path,
):
    report, err = run_scenario("out_of_memory_scenario", tmp_path, SPARK_DRIVER_MEMORY="512m")

    assert report["first"]["state"] == "failed", report
    one_line(report["first"]["error"])
    assert report["first"]["error"].startswith("Spark ran out of memory"), report
    assert "SPARK_DRIVER_MEMORY is 512m" in report["first"]["error"]
    assert report["old_jvm_exit"] == OUT_OF_MEMORY_EXIT, report  # Spark's own exit, not ours
    assert report["second"]["state"] == "succeeded", report
    assert report["second"]["rows"] == 30
    assert report["jvms"] and report["old_jvm"] not in report["jvms"], report
    print(f"\nfirst job's error: {report['first']['error']}; " + _seconds(report["timings"]))


# 3. A result folder that cannot be completed.


def test_a_result_write_failing_midway_fails_the_job_and_nothing_is_offered(
    tmp_path, spark, monkeypatch
):
    from streamlit.testing.v1 import AppTest

    store = JobStore(tmp_path / "home")
    runner = JobRunner(store, run_pipeline_job(store, lambda: spark), spark_provider=lambda: spark)
    try:
        job = store.create(SAMPLE, SAMPLE.name, QUICK)
        runner.submit(job.id)
        wait_until(
            lambda: store.get(job.id).stage == "saving" or not store.get(job.id).is_active,
            120,
            "the job to start saving",
        )
        assert store.get(job.id).stage == "saving", store.get(job.id).error
        # Holding the store's write lock pauses the job at its next progress report, which
        # write_results makes right after customers.csv is written.
        with closing(sqlite3.connect(store.database, timeout=30, isolation_level=None)) as lock:
            lock.execute("BEGIN IMMEDIATE")
            written = wait_until(
                lambda: next(store.results.glob(f".{job.id}.partial-*/{CUSTOMERS}"), None),
                20,
                "customers.csv to be written",
            )
            partial = written.parent
            # Half written: the job still runs, nothing is in its results folder yet.
            assert store.get(job.id).state == JobState.RUNNING
            assert not store.result_dir(job.id).exists()
            assert not (partial / "manifest.json").exists()
            # The fault: a folder where the segment profiles go.
            (partial / "segments.csv").mkdir()
            lock.execute("ROLLBACK")
        done = runner.wait(job.id, timeout=120)
    finally:
        runner.shutdown()

    assert done.state == JobState.FAILED
    one_line(done.error)
    assert "IsADirectoryError" in done.error and "segments.csv" in done.error
    assert not store.result_dir(job.id).exists()
    assert not partial.exists(), "the half-written folder was left behind"
    assert "saving" in {m.stage for m in store.messages(job.id)}

    # The app offers no result: the Results page has no finished segmentation to pick.
    import ui

    monkeypatch.setenv("SEGMENTATION_HOME", str(store.home))
    ui.services.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        at.switch_page("app_pages/results.py").run()
        assert not at.exception
        assert any("No finished segmentation yet" in info.value for info in at.info)
        assert not at.selectbox
    finally:
        ui.services().runner.shutdown()
        ui.services.clear()
