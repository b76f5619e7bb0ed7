"""How fast and how lean a segmentation and a k sweep are next to pandas + scikit-learn doing the
same work.

    python -m benchmarks.bench_pipeline [--runs 1000000] [--sweeps 100000,1000000]
                                        [--repeats 3] [--data-dir benchmarks/data]

The baseline is benchmarks/baseline.py, measured in the same run on the same synthetic file: for
one job, read, impute, cap, standardize, KMeans with scikit-learn's defaults, the exact
silhouette over every customer, profiles and every customer written with a segment; for a sweep
of k=2..10, the preparation once, then per k the fit, the exact silhouette and the profile, and
one customer file with every k's segment. Two measurements of each:

- whole processes: `python -m segmentation run FILE` (--k 4 or --k-range 2-10) and
  `python benchmarks/baseline.py`, alternating; wall seconds and the peak resident memory of the
  process and its children (the JVM). Spark starts from its class archive: a first run makes it
  and the script waits for it.
- the warm app path: a worker process starts Spark once and warms it up, then runs the pipeline
  and the baseline's functions in turn, with the driver memory the app chooses by default and,
  for one jobs, with 512m (what a 1 GB host gets): seconds (for a sweep also when its first k
  was ready), peak memory of Python plus the JVM, the cached table in memory and on disk, and
  how often Spark's log reports a spill or a block it had no room to cache.

Medians and ratios are printed beside the goals, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    ROOT,
    SEGMENTS,
    WARMUP_ROWS,
    PeakMemory,
    StorageWatch,
    add_common_arguments,
    counts,
    customers_file,
    goal,
    median,
    print_load,
    print_machine,
    print_table,
    run_process,
    scratch_dir,
    spills,
    wait_for_class_archive,
)

K_RANGE = (2, 10)
SMALL_HOST_MEMORY = "512m"
RESULT = "RESULT "


@dataclass(frozen=True)
class Work:
    """One kind of work: a single job or a sweep, and its goals (ratio to the baseline)."""

    kind: str  # "run" or "sweep"
    whole_goals: dict[int, float]  # rows -> whole-process ratio goal
    warm_goals: dict[int, float]  # rows -> warm ratio goal

    @property
    def cli(self) -> list[str]:
        return (
            ["--k", str(SEGMENTS)]
            if self.kind == "run"
            else ["--k-range", "-".join(map(str, K_RANGE))]
        )


RUN = Work("run", whole_goals={1_000_000: 3.0}, warm_goals={1_000_000: 2.5})
SWEEP = Work("sweep", whole_goals={100_000: 6.0, 1_000_000: 3.0}, warm_goals={})
GOAL_PEAK_MB = 1500  # one job at 1M, default driver memory, no spill


def whole_processes(work: Work, path: Path, repeats: int) -> dict[str, list]:
    """Alternating whole runs of the command line and the baseline script."""
    runs: dict[str, list] = {"spark": [], "baseline": []}
    for _ in range(repeats):
        with scratch_dir("bench-whole-") as scratch:
            command = [sys.executable, "-m", "segmentation", "run", str(path), *work.cli]
            runs["spark"].append(run_process([*command, "--out", str(scratch / "spark")]))
            baseline = [sys.executable, str(ROOT / "benchmarks" / "baseline.py"), work.kind]
            runs["baseline"].append(
                run_process([*baseline, str(path), str(scratch / "baseline"), *work.cli])
            )
    return runs


def warm_worker(kind: str, path: Path, warmup: Path, repeats: int, driver_memory: str) -> dict:
    """In this process: Spark started once and warmed up, then both engines in turn."""
    if driver_memory != "auto":
        os.environ["SPARK_DRIVER_MEMORY"] = driver_memory
    local_dir = Path(tempfile.mkdtemp(prefix="bench-spark-local-"))
    os.environ["SPARK_CONF"] = f"spark.local.dir={local_dir}"
    from benchmarks import baseline
    from segmentation.params import SegmentationParams
    from segmentation.pipeline import run_segmentation
    from segmentation.spark_engine import SparkSettings, engine_log, get_spark
    from segmentation.sweep import run_sweep

    spark = get_spark()
    # Spark's spillable collections and sorters say at INFO when they spill to disk.
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.util.collection", jvm.org.apache.logging.log4j.Level.INFO
    )
    if kind == "run":
        params = SegmentationParams(k=SEGMENTS)
        ours, theirs = run_segmentation, lambda p, out: baseline.run(p, out, SEGMENTS)
    else:
        params = SegmentationParams(k_range=K_RANGE)
        ours = run_sweep
        theirs = lambda p, out: baseline.sweep(p, out, range(K_RANGE[0], K_RANGE[1] + 1))  # noqa: E731
    with scratch_dir("bench-warm-") as scratch:
        ours(spark, str(warmup), params, scratch / "warm-spark")
        theirs(warmup, scratch / "warm-baseline")
    result: dict = {
        "driver_memory": SparkSettings.from_env().driver_memory,
        "spark": [],
        "baseline": [],
    }
    for _ in range(repeats):
        with scratch_dir("bench-warm-") as scratch:
            log_at = engine_log().stat().st_size
            ready = [time.perf_counter()]  # the start, then when the first k was ready

            def progress(stage: str, fraction: float, message: str, ready=ready) -> None:
                if " ready (" in message and len(ready) == 1:
                    ready.append(time.perf_counter() - ready[0])

            with PeakMemory() as memory, StorageWatch(spark, local_dir) as storage:
                ready[0] = started = time.perf_counter()
                manifest = ours(spark, str(path), params, scratch / "spark", progress).manifest
                seconds = time.perf_counter() - started
            result["spark"].append(
                {
                    "seconds": seconds,
                    "first_k": ready[1] if len(ready) > 1 else None,
                    "peak_mb": memory.peak_mb,
                    "python_mb": memory.python_mb,
                    "jvm_mb": memory.jvm_mb,
                    "cached_mb": storage.cached_mb,
                    "on_disk_mb": storage.on_disk_mb,
                    "blocks_on_disk": storage.blocks_on_disk,
                    "spills": spills(engine_log(), log_at),
                    "stages": manifest.timings,
                }
            )
            started = time.perf_counter()
            theirs(path, scratch / "baseline")
            result["baseline"].append({"seconds": time.perf_counter() - started})
    return result


def warm(work: Work, path: Path, warmup: Path, repeats: int, driver_memory: str) -> dict:
    """The warm measurements, in a worker process of their own (the driver's memory is fixed
    when its JVM starts)."""
    done = run_process(
        [sys.executable, "-m", "benchmarks.bench_pipeline", "--warm-worker", work.kind, str(path), "--warmup",
         str(warmup), "--repeats", str(repeats), "--driver-memory", driver_memory]
    )  # fmt: skip
    line = next(x for x in done.output.splitlines() if x.startswith(RESULT))
    return json.loads(line[len(RESULT) :])


def _ratio_goal(goals: dict[int, float], rows: int, ratio: float) -> str:
    return goal(ratio <= goals[rows], f"<= {goals[rows]}") if rows in goals else ""


def print_results(work: Work, rows: int, whole: dict, warm_runs: dict[str, dict]) -> None:
    """One table per kind and size: whole processes, then each warm memory setting."""
    spark_s = median(r.seconds for r in whole["spark"])
    base_s = median(r.seconds for r in whole["baseline"])
    table = [
        [
            "whole process",
            f"{spark_s:.1f}",
            f"{base_s:.1f}",
            f"{spark_s / base_s:.2f}",
            "",
            f"{max(r.peak_mb for r in whole['spark']):,.0f}",
            _ratio_goal(work.whole_goals, rows, spark_s / base_s),
        ]
    ]
    for memory, runs in warm_runs.items():
        spark = runs["spark"]
        spark_s = median(r["seconds"] for r in spark)
        base_s = median(r["seconds"] for r in runs["baseline"])
        peak = max(r["peak_mb"] for r in spark)
        on_disk = max(r["on_disk_mb"] for r in spark) + max(r["blocks_on_disk"] for r in spark)
        spilled = max(r["spills"] for r in spark)
        verdicts = [_ratio_goal(work.warm_goals, rows, spark_s / base_s)]
        if work is RUN and rows == 1_000_000 and memory == "auto":
            verdicts += [
                goal(peak <= GOAL_PEAK_MB, f"peak <= {GOAL_PEAK_MB} MB"),
                goal(not on_disk and not spilled, "no spill"),
            ]
        first = [r["first_k"] for r in spark if r["first_k"] is not None]
        table.append(
            [
                f"warm, driver {runs['driver_memory']}",
                f"{spark_s:.1f}",
                f"{base_s:.1f}",
                f"{spark_s / base_s:.2f}",
                f"{median(first):.1f}" if first else "",
                f"{peak:,.0f} (py {max(r['python_mb'] for r in spark):,.0f}, jvm+workers "
                f"{max(r['jvm_mb'] for r in spark):,.0f}); cache "
                f"{max(r['cached_mb'] for r in spark):,.0f} MB in memory, "
                f"{max(r['on_disk_mb'] for r in spark):,.0f} MB on disk; {spilled} spills logged",
                ", ".join(v for v in verdicts if v),
            ]
        )
    what = f"one job, k={SEGMENTS}" if work is RUN else f"sweep k={K_RANGE[0]}..{K_RANGE[1]}"
    print(f"\n{what}, {rows:,} customers: median seconds")
    print_table(
        ["", "spark s", "baseline s", "ratio", "first k s", "spark peak MB", "goal"], table, left=2
    )
    stages = warm_runs["auto"]["spark"]
    print(
        "  warm stages (median s): "
        + ", ".join(
            f"{n} {median(r['stages'].get(n, 0) for r in stages):.2f}" for n in stages[0]["stages"]
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1000000", type=counts, help="sizes of one job")
    parser.add_argument("--sweeps", default="100000,1000000", type=counts, help="sweep sizes")
    parser.add_argument("--warm-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--driver-memory", default="auto", help=argparse.SUPPRESS)
    add_common_arguments(parser, repeats=3)
    args = parser.parse_args(argv)
    if args.warm_worker:
        kind, path = args.warm_worker
        result = warm_worker(kind, Path(path), args.warmup, args.repeats, args.driver_memory)
        print(RESULT + json.dumps(result), flush=True)
        return
    print_machine()
    sizes = sorted({WARMUP_ROWS, *args.runs, *args.sweeps})
    files = {rows: customers_file(args.data_dir, rows) for rows in sizes}
    # A first run starts making Spark's class archive, which every later start maps.
    with scratch_dir("bench-first-") as scratch:
        run_process([sys.executable, "-m", "segmentation", "run", str(files[WARMUP_ROWS]),
                     "--out", str(scratch / "run")])  # fmt: skip
    print(f"whole processes {wait_for_class_archive()}", flush=True)
    for work, work_sizes in ((RUN, args.runs), (SWEEP, args.sweeps)):
        for rows in work_sizes:
            whole = whole_processes(work, files[rows], args.repeats)
            memories = ("auto", SMALL_HOST_MEMORY) if work is RUN else ("auto",)
            warm_runs = {
                memory: warm(work, files[rows], files[WARMUP_ROWS], args.repeats, memory)
                for memory in memories
            }
            print_results(work, rows, whole, warm_runs)
    print_load()


if __name__ == "__main__":
    main()
