"""The k explorer's sweep in Spark next to scikit-learn sweeping the same range of k.

    python benchmarks/bench_sweep.py [--sizes 100000,1000000] [--k-range 2-10] [--repeats 3]
                                     [--data-dir benchmarks/data]

Both engines sweep every k of --k-range on the same cached CSV (write_customers). Spark runs
segmentation.sweep.run_sweep on a warm session: one prepared table, and per k centres fitted on
a driver-side sample, every metric over every customer, profiles, and a results folder written
per k (deleted afterwards). scikit-learn reads the file, imputes medians, caps at 1.5 IQR and
standardizes once, then per k fits KMeans with its defaults and computes the squared Euclidean
silhouette over every row (numpy, O(n·k)). The tables show median seconds of the whole sweep
and of its clustering stage, their ratios, the Spark peak memory, and median fit seconds per k.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    SAMPLE_EVERY,
    SEED,
    WARMUP_ROWS,
    Laps,
    Run,
    SizeResult,
    add_common_arguments,
    counts,
    customers_file,
    goal,
    measure,
    median,
    number_or_nan,
    print_load,
    print_machine,
    print_stages,
    print_table,
    scratch_dir,
    sklearn_kmeans,
    sklearn_prepare,
    sklearn_silhouette,
    start_spark,
)

GOAL_RATIO = 1.0  # the Spark sweep no slower than scikit-learn's
WARMUP_K_RANGE = (2, 3)


def spark_sweep(spark, path: Path, k_range: tuple[int, int]) -> Run:
    """One run_sweep into a fresh folder that is deleted afterwards.

    extra holds per k the fit seconds and the silhouette, and the
    suggested k.
    """
    from segmentation.preparation import SegmentationParams
    from segmentation.sweep import run_sweep

    params = SegmentationParams(k_range=k_range, seed=SEED)
    with scratch_dir("bench-sweep-") as scratch:
        result, seconds, memory = measure(
            lambda: run_sweep(spark, str(path), params, scratch / "sweep")
        )
    table = result.table
    return Run.measured(
        seconds,
        result.manifest["timings"],
        memory,
        extra={
            "fit": {
                int(k): float(s) for k, s in zip(table["k"], table["fit_seconds"], strict=True)
            },
            "silhouette": {
                int(k): number_or_nan(s)
                for k, s in zip(table["k"], table["silhouette"], strict=True)
            },
            "suggested_k": result.manifest["suggested_k"],
        },
    )


def sklearn_sweep(path: Path, k_range: tuple[int, int]) -> Run:
    """The same sweep by pandas and scikit-learn: prepare once, then fit and score every k."""
    gc.collect()
    laps = Laps()
    _, scaled = sklearn_prepare(path, laps)
    fit, silhouette = {}, {}
    for k in range(k_range[0], k_range[1] + 1):
        started = time.perf_counter()
        labels = sklearn_kmeans(scaled, k)
        fit[k] = time.perf_counter() - started
        silhouette[k] = sklearn_silhouette(scaled, labels)
    laps("clustering")
    best = max(silhouette, key=silhouette.get)
    return Run(
        laps.seconds, laps.stages, extra={"fit": fit, "silhouette": silhouette, "suggested_k": best}
    )


def _median_of(runs: list[Run], key: str, k: int) -> float:
    return median(run.extra[key].get(k, float("nan")) for run in runs)


def print_results(results: list[SizeResult], k_range: tuple[int, int]) -> None:
    """The sweep table (whole and clustering stage, ratios, peak memory, goal), then per k."""
    rows = []
    for result in results:
        spark_s = median(r.seconds for r in result.spark)
        sklearn_s = median(r.seconds for r in result.sklearn)
        spark_fit = median(r.stages["clustering"] for r in result.spark)
        sklearn_fit = median(r.stages["clustering"] for r in result.sklearn)
        ratio = spark_s / sklearn_s
        suggested = " / ".join(
            str(statistics.mode(r.extra["suggested_k"] for r in runs))
            for runs in (result.spark, result.sklearn)
        )
        rows.append(
            [
                f"{result.rows:,}",
                f"{spark_s:.2f}",
                f"{sklearn_s:.2f}",
                f"{ratio:.2f}",
                f"{spark_fit:.2f}",
                f"{sklearn_fit:.2f}",
                f"{spark_fit / sklearn_fit:.2f}",
                f"{max(r.peak_mb for r in result.spark):.0f} "
                f"({max(r.python_mb for r in result.spark):.0f} / "
                f"{max(r.jvm_mb for r in result.spark):.0f})",
                suggested,
                goal(ratio <= GOAL_RATIO, f"spark/sk <= {GOAL_RATIO}"),
            ]
        )
    print(f"\nsweep k={k_range[0]}..{k_range[1]}, median seconds")
    print_table(
        ["rows", "spark s", "sklearn s", "spark/sk"]
        + ["clustering spark s", "sklearn s", "spark/sk"]
        + ["spark peak MB (py / jvm)", "k chosen spark/sk", "goal"],
        rows,
    )

    print("\nper k: median fit seconds (Spark: 3 initialisations, best kept; scikit-learn: 1)")
    ks = range(k_range[0], k_range[1] + 1)
    rows = []
    for result in results:
        for k in ks:
            spark_fit = _median_of(result.spark, "fit", k)
            sklearn_fit = _median_of(result.sklearn, "fit", k)
            rows.append(
                [
                    f"{result.rows:,}",
                    str(k),
                    f"{spark_fit:.2f}",
                    f"{sklearn_fit:.2f}",
                    f"{spark_fit / sklearn_fit:.2f}",
                    f"{_median_of(result.spark, 'silhouette', k):.3f} / "
                    f"{_median_of(result.sklearn, 'silhouette', k):.3f}",
                ]
            )
    print_table(
        ["rows", "k", "spark fit s", "sklearn fit s", "spark/sk", "silhouette spark/sk"],
        rows,
        left=0,
    )

    print_stages(
        (result.rows, engine, runs) for result in results for engine, runs in result.engines()
    )


def k_range_arg(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="100000,1000000",
        type=counts,
        help="comma-separated row counts (default: 100000,1000000)",
    )
    parser.add_argument(
        "--k-range", default="2-10", type=k_range_arg, help="the k swept, low-high (2-10)"
    )
    add_common_arguments(parser, repeats=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_machine()
    print("inputs:", flush=True)
    files = {rows: customers_file(args.data_dir, rows) for rows in [WARMUP_ROWS, *args.sizes]}
    spark = start_spark(
        lambda spark: (
            spark_sweep(spark, files[WARMUP_ROWS], WARMUP_K_RANGE),
            sklearn_sweep(files[WARMUP_ROWS], WARMUP_K_RANGE),
        )
    )

    results = []
    for rows in args.sizes:
        result = SizeResult(rows)
        for repeat in range(1, args.repeats + 1):
            spark_run = spark_sweep(spark, files[rows], args.k_range)
            result.spark.append(spark_run)
            sklearn_run = sklearn_sweep(files[rows], args.k_range)
            result.sklearn.append(sklearn_run)
            print(
                f"  {rows:>10,} rows, run {repeat}/{args.repeats}: spark {spark_run.seconds:.2f}s "
                f"(clustering {spark_run.stages['clustering']:.2f}s, peak "
                f"{spark_run.peak_mb:.0f} MB), sklearn {sklearn_run.seconds:.2f}s "
                f"(clustering {sklearn_run.stages['clustering']:.2f}s)",
                flush=True,
            )
        results.append(result)

    print_load()
    print_results(results, args.k_range)
    print(
        "\nSpark's clustering stage holds, per k, the fit (centres on a driver-side sample of at "
        "most 50,000 customers), every quality figure over every customer and the profiles; "
        "scikit-learn's holds its default fit and the exact silhouette over every row. Spark's "
        "total also writes a results folder per k. k chosen: the suggested k (Spark, most "
        "frequent over runs) and the best silhouette (scikit-learn). Peak "
        f"MB: Python plus the JVM, sampled every {SAMPLE_EVERY * 1000:.0f} ms."
    )


if __name__ == "__main__":
    main()
