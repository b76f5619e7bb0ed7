"""How fast and how lean the Spark pipeline is next to scikit-learn doing the same work.

    python benchmarks/bench_pipeline.py [--sizes 10000,100000,1000000] [--repeats 3]
                                        [--data-dir benchmarks/data]

Input CSVs come from segmentation.synthetic.write_customers and are cached in --data-dir. The
SparkSession starts once and is warmed with a small run, so start-up is not counted. For each
size both engines run --repeats times on the same file; the table shows median seconds, the
Spark/scikit-learn ratio and the peak resident memory of Python plus the JVM during the Spark
runs, next to the goals at 1M rows. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    SAMPLE_EVERY,
    SEGMENTS,
    WARMUP_ROWS,
    Laps,
    Run,
    SizeResult,
    add_common_arguments,
    counts,
    customers_file,
    goal,
    median,
    print_load,
    print_machine,
    print_stages,
    print_table,
    sklearn_kmeans,
    sklearn_prepare,
    sklearn_silhouette,
    spark_segmentation,
    start_spark,
)

GOAL_ROWS = 1_000_000
GOAL_RATIO = 2.5  # warm app path
GOAL_PEAK_MB = 1500


def sklearn_segmentation(path: Path) -> Run:
    """The pipeline's work done by pandas and scikit-learn on one machine, stage by stage."""
    gc.collect()
    laps = Laps()
    values, scaled = sklearn_prepare(path, laps)
    segment = sklearn_kmeans(scaled, SEGMENTS)
    laps("clustering")
    silhouette = sklearn_silhouette(scaled, segment)
    laps("evaluation")
    values.groupby(segment).agg(["mean", "median", "min", "max"])
    laps("profiling")
    return Run(laps.seconds, laps.stages, silhouette)


def wait_for_pipeline(timeout: float) -> None:
    """The pipeline module may still be being written; wait for it rather than fail at once."""
    deadline = time.monotonic() + timeout
    pipeline = ROOT / "segmentation" / "pipeline.py"
    while not pipeline.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{pipeline} did not appear within {timeout:.0f}s.")
        print(f"  waiting for {pipeline} ...", flush=True)
        time.sleep(30)


def print_results(results: list[SizeResult]) -> None:
    """Median seconds per engine, their ratio and the Spark run's peak memory, beside the goals."""
    rows = []
    for result in results:
        spark_s = median(r.seconds for r in result.spark)
        sklearn_s = median(r.seconds for r in result.sklearn)
        ratio = spark_s / sklearn_s
        peak = max(r.peak_mb for r in result.spark)
        target = ""
        if result.rows == GOAL_ROWS:
            target = (
                f"{goal(ratio <= GOAL_RATIO, f'ratio <= {GOAL_RATIO}')}, "
                f"{goal(peak <= GOAL_PEAK_MB, f'peak <= {GOAL_PEAK_MB} MB')}"
            )
        rows.append(
            [
                f"{result.rows:,}",
                f"{spark_s:.2f}",
                f"{sklearn_s:.2f}",
                f"{ratio:.2f}",
                f"{peak:.0f} ({max(r.python_mb for r in result.spark):.0f} / "
                f"{max(r.jvm_mb for r in result.spark):.0f})",
                f"{median(r.silhouette for r in result.spark):.3f} / "
                f"{median(r.silhouette for r in result.sklearn):.3f}",
                target,
            ]
        )
    print_table(
        ["rows", "spark s", "sklearn s", "spark/sk", "peak MB (py / jvm)", "silhouette spark/sk"]
        + ["goal"],
        rows,
    )
    print_stages(
        (result.rows, engine, runs) for result in results for engine, runs in result.engines()
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        type=counts,
        help="comma-separated row counts (default: 10000,100000,1000000)",
    )
    add_common_arguments(parser, repeats=3)
    parser.add_argument(
        "--wait",
        type=float,
        default=0,
        help="seconds to wait for segmentation/pipeline.py to appear (default: do not wait)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_machine()
    print("inputs:", flush=True)
    files = {rows: customers_file(args.data_dir, rows) for rows in [WARMUP_ROWS, *args.sizes]}

    wait_for_pipeline(args.wait)
    spark = start_spark(
        lambda spark: (
            spark_segmentation(spark, files[WARMUP_ROWS]),
            sklearn_segmentation(files[WARMUP_ROWS]),
        )
    )

    results = []
    for rows in args.sizes:
        result = SizeResult(rows)
        for repeat in range(1, args.repeats + 1):
            spark_run = spark_segmentation(spark, files[rows])
            result.spark.append(spark_run)
            result.sklearn.append(sklearn_segmentation(files[rows]))
            print(
                f"  {rows:>10,} rows, run {repeat}/{args.repeats}: spark {spark_run.seconds:.2f}s "
                f"(peak {spark_run.peak_mb:.0f} MB: Python {spark_run.python_mb:.0f}, "
                f"JVM {spark_run.jvm_mb:.0f}), sklearn {result.sklearn[-1].seconds:.2f}s",
                flush=True,
            )
        results.append(result)

    print_load()
    print_results(results)
    print(
        "\npeak MB: resident memory of Python plus all its child processes (the JVM), sampled "
        f"every {SAMPLE_EVERY * 1000:.0f} ms during the Spark runs. Both silhouettes cover every "
        "customer (squared Euclidean; numpy's in O(n·k) from per-cluster sums)."
    )


if __name__ == "__main__":
    main()
