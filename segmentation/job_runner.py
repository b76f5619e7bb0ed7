"""The background runner: works through queued jobs on a few threads.

Its threads never touch Streamlit; they only write to the job store, and the pages read the
store to show progress. Each job's Spark work runs under a tag, so Cancel can interrupt it.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from segmentation.errors import JobCancelled, SegmentationError
from segmentation.job_store import JobStore, hold, release
from segmentation.jobs import Job, JobOutcome, JobState, ProgressFn, WorkFn
from segmentation.manifest import SweepManifest
from segmentation.params import SegmentationParams
from segmentation.pipeline import SegmentationResult, run_segmentation
from segmentation.scoring import run_scoring
from segmentation.spark_engine import engine_failure_reason, error_text, get_spark
from segmentation.sweep import SweepResult, run_sweep

log = logging.getLogger(__name__)

INTERRUPT_EVERY = 0.5  # seconds between repeated interrupts while a cancelled job winds down


def spark_tag(job_id: str) -> str:
    """The Spark operation tag under which a job's Spark work runs, so it can be interrupted."""
    return f"job-{job_id}"


def short_reason(exc: BaseException) -> str:
    """A one-line, traceback-free description of an unexpected error, for the job's error text."""
    failure = engine_failure_reason(exc)
    if failure:
        return failure
    text = error_text(exc) or ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # Py4J puts the useful Java message on the second line, after "An error occurred ...".
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):
        lines = [lines[1].lstrip(": ")]
    text = lines[0] if lines else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _spark_context(spark):
    """The SparkContext of a classic session; None under Spark Connect, which has none."""
    try:
        return spark.sparkContext
    except Exception:  # Spark Connect raises "not supported" for JVM attributes
        return None


def _quietly(action: Callable[..., Any], *args: Any) -> None:
    try:
        action(*args)
    except Exception:  # best effort: the session may be gone or the tag already removed
        log.debug("%s%r failed", getattr(action, "__name__", action), args, exc_info=True)


def _tag(spark, tag: str) -> None:
    spark.addTag(tag)
    context = _spark_context(spark)
    if context is not None:
        context.addJobTag(tag)


def _untag(spark, tag: str) -> None:
    _quietly(spark.removeTag, tag)
    context = _spark_context(spark)
    if context is not None:
        _quietly(context.removeJobTag, tag)


def _interrupt(spark, tag: str) -> None:
    # Under Spark Connect interruptTag stops the tagged operations of every thread. In classic
    # Spark it only sees tags the calling thread added (the real tag embeds the thread's id), so
    # a cancel from another thread goes through the SparkContext job tag set next to it.
    _quietly(spark.interruptTag, tag)
    context = _spark_context(spark)
    if context is not None:
        _quietly(context.cancelJobsWithTag, tag)


class JobRunner:
    """Runs queued jobs on a few background threads; one per process, shared by all sessions."""

    def __init__(
        self,
        store: JobStore,
        work: WorkFn,
        max_workers: int = 2,
        *,
        spark_provider: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self._work = work
        self._spark_provider = spark_provider or get_spark
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="segmentation-job")
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._futures: dict[str, Future] = {}
        self._sessions: dict[str, Any] = {}
        self._waiting: builtins.list[str] = []
        self._closed = False

    def submit(self, job_id: str) -> None:
        """Queue a job the store holds as queued; it starts when a worker is free."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job runner has been shut down")
            if job_id in self._futures:
                return
            job = self.store.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                raise ValueError(f"job {job_id!r} is not queued")
            hold(job_id)
            self._events[job_id] = threading.Event()
            self._waiting.append(job_id)
            self._futures[job_id] = self._pool.submit(self._run, job_id)

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start, 2 for the one after...; None when not waiting here."""
        with self._lock:
            return self._waiting.index(job_id) + 1 if job_id in self._waiting else None

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until a submitted job has finished (CLI and tests; pages poll the store)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            futures.wait([future], timeout=timeout)
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Stop a job: drop it if it waits, interrupt its Spark work if it runs."""
        with self._lock:
            event = self._events.get(job_id)
            future = self._futures.get(job_id)
        if event is None or future is None:
            # Not running here (e.g. queued by a page but never submitted): settle it in the store.
            return self.store.mark_cancelled(job_id)
        event.set()
        job = self.store.get(job_id)
        if job is None or not job.is_active:
            return False
        if job.state == JobState.QUEUED and self.store.mark_cancelled(job_id):
            return True
        self.store.add_message(job_id, job.stage or "running", "Cancelling...")
        # Interrupt now and keep interrupting until the worker returns: a Spark action that
        # starts between two checks of the cancel event is stopped too.
        threading.Thread(
            target=self._interrupt_until_done,
            args=(job_id, future),
            name=f"segmentation-cancel-{job_id}",
            daemon=True,
        ).start()
        return True

    def _interrupt_until_done(self, job_id: str, future: Future) -> None:
        tag = spark_tag(job_id)
        while not future.done():
            with self._lock:
                spark = self._sessions.get(job_id)
            if spark is not None:
                _interrupt(spark, tag)
            futures.wait([future], timeout=INTERRUPT_EVERY)

    def shutdown(self, wait: bool = True) -> None:
        """Cancel every job of this runner and stop its threads (tests, clean exit)."""
        with self._lock:
            self._closed = True
            job_ids = builtins.list(self._futures)
        for job_id in job_ids:
            self.cancel(job_id)
        self._pool.shutdown(wait=wait)

    def _run(self, job_id: str) -> None:
        with self._lock:
            self._waiting.remove(job_id)
            event = self._events[job_id]
        try:
            self._execute(job_id, event)
        except Exception:  # the store itself failed; nothing more can be recorded
            log.exception("job %s: could not record its outcome", job_id)
        finally:
            with self._lock:
                self._events.pop(job_id, None)
                self._futures.pop(job_id, None)
                self._sessions.pop(job_id, None)
            release(job_id)

    def _execute(self, job_id: str, event: threading.Event) -> None:
        if event.is_set():
            self.store.mark_cancelled(job_id)
            return
        if not self.store.mark_running(job_id):
            return  # cancelled or deleted while it waited
        job = self.store.get(job_id)
        assert job is not None

        def progress(
            stage: str,
            fraction: float,
            message: str = "",
            timings: Mapping[str, float] | None = None,
        ) -> None:
            # Raising here is what stops the pipeline between stages once the analyst cancels.
            if event.is_set():
                raise JobCancelled("The job was cancelled.")
            self.store.update_progress(job_id, stage, fraction, message, timings)

        tag = spark_tag(job_id)
        try:
            spark = self._spark_provider()
            _tag(spark, tag)
            with self._lock:
                self._sessions[job_id] = spark
            try:
                if event.is_set():
                    raise JobCancelled("The job was cancelled.")
                outcome = self._work(job, progress)
            finally:
                _untag(spark, tag)
            outcome = outcome or JobOutcome(self.store.result_dir(job_id))
            self.store.mark_succeeded(job_id, outcome.result_dir, outcome.summary, outcome.timings)
        except BaseException as exc:
            self._record_failure(job_id, exc, event)
            if not isinstance(exc, Exception):
                raise

    def _record_failure(self, job_id: str, exc: BaseException, event: threading.Event) -> None:
        if event.is_set() or isinstance(exc, JobCancelled):
            # Whatever Spark raised on interruption, the cause is the analyst's cancel.
            log.info("job %s cancelled", job_id)
            self.store.mark_cancelled(job_id)
        elif isinstance(exc, SegmentationError):
            log.info("job %s failed: %s", job_id, exc)
            self.store.mark_failed(job_id, str(exc))
        else:
            log.error("job %s failed unexpectedly", job_id, exc_info=exc)
            try:
                reason = short_reason(exc)
            except Exception:  # never leave the job running for want of a description
                log.exception("job %s: describing its error failed", job_id)
                reason = type(exc).__name__
            self.store.mark_failed(job_id, reason)


def run_pipeline_job(store: JobStore, spark_provider: Callable[[], Any]) -> WorkFn:
    """The work function the app hands to its JobRunner: per job a segmentation, a k sweep, or an assignment to a saved segmentation."""

    def work(job: Job, progress: ProgressFn) -> JobOutcome:
        params = SegmentationParams.from_dict(job.params)
        out_dir = store.result_dir(job.id)
        result: SegmentationResult | SweepResult
        if job.model:
            result = run_scoring(
                spark_provider(),
                job.model.folder,
                job.input_path,
                out_dir,
                job.model.k,
                params.load_options,
                progress,
            )
        else:
            run = run_sweep if params.k_range else run_segmentation
            result = run(
                spark_provider(), job.input_path, params, out_dir=str(out_dir), progress=progress
            )
        manifest = result.manifest
        k = manifest.suggested_k if isinstance(manifest, SweepManifest) else manifest.k
        summary = {
            "rows": manifest.rows_out,
            "k": k,
            "silhouette": manifest.metrics.silhouette if manifest.metrics else None,
        }
        return JobOutcome(out_dir, summary, dict(manifest.timings))

    return work
