"""Fifty jobs in a row on the shared session leave memory flat: nothing cached is left behind and
the long-lived JVM and Python process do not grow from job to job.

Memory is read after a full collection (the driver runs the serial collector, so System.gc() is
a full, stop-the-world collection); the figures are printed for the closing note (`-s`).
"""

from __future__ import annotations

import gc
import time

import numpy as np
import psutil
import pytest

from segmentation.job_runner import JobRunner, run_pipeline_job
from segmentation.job_store import JobStore
from segmentation.jobs import JobState
from tests.helpers import SAMPLE

pytestmark = pytest.mark.soak

JOBS = 50
# Memory is read every few jobs once the first ones have compiled their query classes and begun
# to fill Spark's status store, and its trend is fitted: single readings wander by +-10 MB
# (what the context cleaner has got to), the leak this guards against added 3 MB per job.
MEASURED = range(10, JOBS + 1, 5)
MB = 1024 * 1024
QUICK = {"k": 3, "seed": 42, "max_iter": 10}
HEAP_MB_PER_JOB = 1.0
PYTHON_MB_PER_JOB = 0.5
CLEANER_PAUSE = 2.0  # seconds for Spark's context cleaner to do its work


def heap_after_gc(spark) -> float:
    """The JVM heap in use once garbage is collected, in MB.

    Collected twice: Spark's context cleaner frees shuffle files, broadcasts and metrics only
    once a collection has shown them unreachable, and what it frees needs a second one.
    """
    jvm = spark.sparkContext._jvm
    jvm.java.lang.System.gc()
    time.sleep(CLEANER_PAUSE)
    jvm.java.lang.System.gc()
    runtime = jvm.java.lang.Runtime.getRuntime()
    return (runtime.totalMemory() - runtime.freeMemory()) / MB


def python_rss() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / MB


def cached_rdds(spark) -> int:
    return spark.sparkContext._jsc.getPersistentRDDs().size()


def test_fifty_jobs_in_a_row_leave_memory_flat(tmp_path, spark):
    store = JobStore(tmp_path / "home")
    runner = JobRunner(store, run_pipeline_job(store, lambda: spark), spark_provider=lambda: spark)
    cached_before = cached_rdds(spark)
    heap, python = {}, {}
    try:
        for n in range(1, JOBS + 1):
            job = store.create(SAMPLE, SAMPLE.name, {**QUICK, "seed": n})
            runner.submit(job.id)
            done = runner.wait(job.id, timeout=180)
            assert done.state == JobState.SUCCEEDED, done.error
            assert cached_rdds(spark) == cached_before, f"job {n} left cached data behind"
            if n in MEASURED:
                python[n] = python_rss()  # first: Python's collection frees JVM objects it held
                heap[n] = heap_after_gc(spark)
    finally:
        runner.shutdown()

    heap_trend, python_trend = trend(heap), trend(python)
    print(f"\nafter jobs {list(MEASURED)}:")
    print(
        f"JVM heap (MB)   {' '.join(f'{v:.0f}' for v in heap.values())}: {heap_trend:+.2f} MB/job"
    )
    print(
        f"Python RSS (MB) {' '.join(f'{v:.0f}' for v in python.values())}: {python_trend:+.2f} MB/job"
    )
    assert heap_trend < HEAP_MB_PER_JOB, heap
    assert python_trend < PYTHON_MB_PER_JOB, python


def trend(readings: dict[int, float]) -> float:
    """MB per job: the slope of a least-squares line through the readings."""
    return float(np.polyfit(list(readings), list(readings.values()), 1)[0])
