"""Ten million customers in local mode: one pipeline run with a 2 GB driver.

    python -m benchmarks.bench_scale [--rows 10000000] [--driver-memory 2g] [--repeats 1]
                                     [--data-dir benchmarks/data]

Run it as its own process: the driver's memory is fixed when the JVM starts, so the script sets
SPARK_DRIVER_MEMORY (and a local master) before it starts the SparkSession. The input CSV
(about 400 MB at 10M rows) comes from write_customers and is cached in --data-dir. After a
small warm-up run, segmentation.pipeline.run_segmentation segments the file into a temporary
folder that is deleted afterwards; the script prints the wall time, the seconds per stage and
the peak resident memory of Python and of the JVM separately. Python's growth during the run
shows that no customer table is collected to the driver's Python side. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.common import (
    MB,
    SAMPLE_EVERY,
    WARMUP_ROWS,
    Run,
    add_common_arguments,
    customers_file,
    goal,
    median,
    print_load,
    print_machine,
    print_table,
    spark_segmentation,
    stage_medians,
    start_spark,
)

GOAL_SECONDS = 180
# Collecting even the four features of 10M customers would take over 300 MB in Python; the
# chart sample, profiles and manifest that do come back take a few MB.
PYTHON_GROWTH_LIMIT_MB = 100


def use_local_spark(driver_memory: str) -> None:
    """Point the session this process will start at local mode with `driver_memory`."""
    if os.environ.pop("SPARK_REMOTE", None):
        print("  SPARK_REMOTE ignored: this benchmark measures local mode", flush=True)
    if not os.environ.get("SPARK_MASTER", "local").startswith("local"):
        print(f"  SPARK_MASTER={os.environ.pop('SPARK_MASTER')} ignored: local mode", flush=True)
    os.environ["SPARK_DRIVER_MEMORY"] = driver_memory


def jvm_settings(spark) -> str:
    """What the started JVM really has: master, driver memory setting and maximum heap."""
    context = spark.sparkContext
    heap = context._jvm.java.lang.Runtime.getRuntime().maxMemory() / MB
    memory = context.getConf().get("spark.driver.memory", "default")
    return f"{context.master}, spark.driver.memory={memory}, JVM max heap {heap:,.0f} MB"


def print_results(rows: int, path: Path, runs: list[Run]) -> None:
    seconds = median(r.seconds for r in runs)
    growth = max(r.python_growth_mb for r in runs)
    print_table(
        ["rows", "input MB", "wall s", "rows/s", "peak MB", "python MB", "grew", "jvm MB"]
        + ["silhouette", "goal"],
        [
            [
                f"{rows:,}",
                f"{path.stat().st_size / MB:,.0f}",
                f"{seconds:.1f}",
                f"{rows / seconds:,.0f}",
                f"{max(r.peak_mb for r in runs):,.0f}",
                f"{max(r.python_mb for r in runs):,.0f}",
                f"{growth:+,.0f}",
                f"{max(r.jvm_mb for r in runs):,.0f}",
                f"{median(r.silhouette for r in runs):.3f}",
                f"{goal(seconds < GOAL_SECONDS, f'wall < {GOAL_SECONDS} s')}, "
                f"{goal(growth < PYTHON_GROWTH_LIMIT_MB, 'nothing collected to Python')}",
            ]
        ],
    )
    print(f"\nmedian seconds per stage: {stage_medians([r.stages for r in runs])}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        default=10_000_000,
        type=lambda text: int(text.replace("_", "")),
        help="customers in the input (default 10000000)",
    )
    parser.add_argument(
        "--driver-memory", default="2g", help="SPARK_DRIVER_MEMORY for this run (default 2g)"
    )
    add_common_arguments(parser, repeats=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_machine()
    print("inputs:", flush=True)
    files = {rows: customers_file(args.data_dir, rows) for rows in (WARMUP_ROWS, args.rows)}

    use_local_spark(args.driver_memory)
    spark = start_spark(lambda spark: spark_segmentation(spark, files[WARMUP_ROWS]))
    print(f"  Spark: {jvm_settings(spark)}", flush=True)

    runs = []
    for repeat in range(1, args.repeats + 1):
        run = spark_segmentation(spark, files[args.rows])
        runs.append(run)
        print(
            f"  {args.rows:>10,} rows, run {repeat}/{args.repeats}: {run.seconds:.1f}s "
            f"(peak {run.peak_mb:,.0f} MB: Python {run.python_mb:,.0f} "
            f"({run.python_growth_mb:+,.0f}), JVM {run.jvm_mb:,.0f}); "
            f"{run.extra['rows_out']:,} customers segmented",
            flush=True,
        )

    print_load()
    print_results(args.rows, files[args.rows], runs)
    print(
        f"\npython MB: peak RSS of this Python process; grew: its rise during the run (under "
        f"{PYTHON_GROWTH_LIMIT_MB} MB means no customer table came back to Python). jvm MB: "
        f"peak RSS of its child processes (the JVM). Sampled every {SAMPLE_EVERY * 1000:.0f} ms."
    )


if __name__ == "__main__":
    main()
