"""How fast and how lean one segmentation is next to pandas + scikit-learn doing the same work.

    python benchmarks/bench_pipeline.py [--sizes 100000,1000000] [--repeats 3]
                                        [--data-dir benchmarks/data]

The baseline is benchmarks/baseline.py (read, impute, cap, standardize, KMeans with
scikit-learn's defaults, the exact silhouette over every customer, profiles, every customer
written with a segment), measured in the same run on the same synthetic file. Two measurements:

- whole processes: `python -m segmentation run FILE --k 4` and `python benchmarks/baseline.py
  run FILE`, alternating; wall seconds and the peak resident memory of the process and its
  children (the JVM). Spark starts from its class archive: a first run makes it and the script
  waits for it.
- the warm app path: a worker process starts Spark once and warms it up, then runs
  run_segmentation and the baseline's functions in turn, once with the driver memory the app
  chooses by default and once with 512m (what a 1 GB host gets): seconds, peak memory of
  Python plus the JVM, the cached table in memory and on disk, spill files, and how often Spark
  logged "Not enough space to cache".

Medians and ratios are printed beside the goals at 1M customers, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
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
    refused_caching,
    run_process,
    scratch_dir,
    wait_for_class_archive,
)

GOAL_ROWS = 1_000_000
GOAL_WHOLE = 3.0
GOAL_WARM = 2.5
GOAL_PEAK_MB = 1500
SMALL_HOST_MEMORY = "512m"
RESULT = "RESULT "


def whole_processes(path: Path, repeats: int) -> dict[str, list]:
    """Alternating whole runs of the command line and the baseline script."""
    runs: dict[str, list] = {"spark": [], "baseline": []}
    for _ in range(repeats):
        with scratch_dir("bench-run-") as scratch:
            runs["spark"].append(
                run_process(
                    [sys.executable, "-m", "segmentation", "run", str(path), "--k", str(SEGMENTS),
                     "--out", str(scratch / "spark")]
                )
            )  # fmt: skip
            runs["baseline"].append(
                run_process(
                    [sys.executable, str(ROOT / "benchmarks" / "baseline.py"), "run", str(path),
                     str(scratch / "baseline"), "--k", str(SEGMENTS)]
                )
            )  # fmt: skip
    return runs


def warm_worker(path: Path, warmup: Path, repeats: int, driver_memory: str) -> dict:
    """In this process: Spark started once and warmed up, then both engines in turn."""
    import os

    if driver_memory != "auto":
        os.environ["SPARK_DRIVER_MEMORY"] = driver_memory
    local_dir = Path(tempfile.mkdtemp(prefix="bench-spark-local-"))
    os.environ["SPARK_CONF"] = f"spark.local.dir={local_dir}"
    from benchmarks import baseline
    from segmentation.pipeline import run_segmentation
    from segmentation.preparation import SegmentationParams
    from segmentation.session import SparkSettings, engine_log, get_spark

    spark = get_spark()
    params = SegmentationParams(k=SEGMENTS)
    with scratch_dir("bench-warm-") as scratch:
        run_segmentation(spark, str(warmup), params, scratch / "warm-spark")
        baseline.run(warmup, scratch / "warm-baseline", SEGMENTS)
    result: dict = {
        "driver_memory": SparkSettings.from_env().driver_memory,
        "spark": [],
        "baseline": [],
    }
    for _ in range(repeats):
        with scratch_dir("bench-warm-") as scratch:
            log_at = engine_log().stat().st_size
            with PeakMemory() as memory, StorageWatch(spark, local_dir) as storage:
                started = time.perf_counter()
                manifest = run_segmentation(spark, str(path), params, scratch / "spark").manifest
                seconds = time.perf_counter() - started
            result["spark"].append(
                {
                    "seconds": seconds,
                    "peak_mb": memory.peak_mb,
                    "python_mb": memory.python_mb,
                    "jvm_mb": memory.jvm_mb,
                    "cached_mb": storage.cached_mb,
                    "on_disk_mb": storage.on_disk_mb,
                    "spill_files": storage.spill_files,
                    "refused": refused_caching(engine_log(), log_at),
                    "stages": manifest["timings"],
                }
            )
            started = time.perf_counter()
            baseline.run(path, scratch / "baseline", SEGMENTS)
            result["baseline"].append({"seconds": time.perf_counter() - started})
    return result


def warm(path: Path, warmup: Path, repeats: int, driver_memory: str) -> dict:
    """The warm measurements, in a worker process of their own (the driver's memory is fixed
    when its JVM starts)."""
    done = run_process(
        [sys.executable, __file__, "--warm-worker", str(path), "--warmup", str(warmup),
         "--repeats", str(repeats), "--driver-memory", driver_memory]
    )  # fmt: skip
    line = next(x for x in done.output.splitlines() if x.startswith(RESULT))
    return json.loads(line[len(RESULT) :])


def print_results(rows: int, whole: dict, warm_runs: dict[str, dict]) -> None:
    at_goal = rows == GOAL_ROWS
    spark_s = median(r.seconds for r in whole["spark"])
    base_s = median(r.seconds for r in whole["baseline"])
    peak = max(r.peak_mb for r in whole["spark"])
    table = [
        [
            "whole process",
            f"{spark_s:.1f}",
            f"{base_s:.1f}",
            f"{spark_s / base_s:.2f}",
            f"{peak:,.0f}",
            goal(spark_s / base_s <= GOAL_WHOLE, f"<= {GOAL_WHOLE}") if at_goal else "",
        ]
    ]
    for memory, runs in warm_runs.items():
        spark = runs["spark"]
        spark_s = median(r["seconds"] for r in spark)
        base_s = median(r["seconds"] for r in runs["baseline"])
        peak = max(r["peak_mb"] for r in spark)
        spilled = max(r["on_disk_mb"] for r in spark) or max(r["spill_files"] for r in spark)
        refused = max(r["refused"] for r in spark)
        verdicts = []
        if at_goal and memory == "auto":
            verdicts = [
                goal(spark_s / base_s <= GOAL_WARM, f"<= {GOAL_WARM}"),
                goal(peak <= GOAL_PEAK_MB, f"peak <= {GOAL_PEAK_MB} MB"),
                goal(not spilled and not refused, "no spill"),
            ]
        table.append(
            [
                f"warm app path, driver {runs['driver_memory']}",
                f"{spark_s:.1f}",
                f"{base_s:.1f}",
                f"{spark_s / base_s:.2f}",
                f"{peak:,.0f} (py {max(r['python_mb'] for r in spark):,.0f}, jvm "
                f"{max(r['jvm_mb'] for r in spark):,.0f}); cache {max(r['cached_mb'] for r in spark):,.0f} "
                f"MB in memory, {max(r['on_disk_mb'] for r in spark):,.0f} MB on disk, "
                f"{max(r['spill_files'] for r in spark)} spill files, {refused} refused",
                ", ".join(verdicts),
            ]
        )
    print(f"\n{rows:,} customers, k={SEGMENTS}: median seconds")
    print_table(["", "spark s", "baseline s", "ratio", "spark peak MB", "goal"], table, left=2)
    stages = warm_runs["auto"]["spark"]
    names = list(stages[0]["stages"])
    print(
        "  warm stages (median s): "
        + ", ".join(f"{n} {median(r['stages'].get(n, 0) for r in stages):.2f}" for n in names)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", type=counts)
    parser.add_argument("--warm-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--driver-memory", default="auto", help=argparse.SUPPRESS)
    add_common_arguments(parser, repeats=3)
    args = parser.parse_args(argv)
    if args.warm_worker:
        result = warm_worker(args.warm_worker, args.warmup, args.repeats, args.driver_memory)
        print(RESULT + json.dumps(result), flush=True)
        return
    print_machine()
    files = {rows: customers_file(args.data_dir, rows) for rows in [WARMUP_ROWS, *args.sizes]}
    # A first run starts making Spark's class archive, which every later start maps.
    with scratch_dir("bench-first-") as scratch:
        run_process([sys.executable, "-m", "segmentation", "run", str(files[WARMUP_ROWS]),
                     "--out", str(scratch / "run")])  # fmt: skip
    print(f"whole processes {wait_for_class_archive()}", flush=True)
    for rows in args.sizes:
        whole = whole_processes(files[rows], args.repeats)
        warm_runs = {
            memory: warm(files[rows], files[WARMUP_ROWS], args.repeats, memory)
            for memory in ("auto", SMALL_HOST_MEMORY)
        }
        print_results(rows, whole, warm_runs)
    print_load()


if __name__ == "__main__":
    main()
