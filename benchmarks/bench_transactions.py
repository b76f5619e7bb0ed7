"""Order logs to customer tables: how long Spark takes to aggregate millions of order lines.

    python -m benchmarks.bench_transactions [--lines 1000000,10000000] [--repeats 3]
                                            [--pandas-up-to 1000000] [--data-dir benchmarks/data]

The logs come from segmentation.synthetic.write_transactions (about 15.6 lines per customer:
1M lines take some 64,000 customers, 10M some 640,000) and are cached in --data-dir. Each run
times, on a warm session, `build_customer_table(read_table(...).df, cache=True)` and a
`.count()` of the result, then frees the cache. As a reference, pandas reads the same file and
aggregates it the same way (segmentation.synthetic.expected_customers, the tests' oracle) on
logs of up to --pandas-up-to lines; both must find the same customers and total spend. Figures
are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    MB,
    SAMPLE_EVERY,
    Laps,
    PeakMemory,
    Run,
    add_common_arguments,
    counts,
    customers_for_lines,
    goal,
    median,
    print_load,
    print_machine,
    print_stages,
    print_table,
    start_spark,
    transactions_file,
)

GOAL_LINES = 10_000_000
GOAL_SECONDS = 60
WARMUP_LINES = 50_000


@dataclass
class SizeResult:
    lines: int  # as asked for; the log holds about as many
    path: Path
    spark: list[Run] = field(default_factory=list)
    pandas: list[Run] = field(default_factory=list)


def spark_customers(spark, path: Path) -> Run:
    """Read the log, build and cache the customer table, count it; then free the cache.

    extra: the log's lines, the customers built and their total spend.
    """
    from pyspark.sql import functions as F

    from segmentation.order_log import build_customer_table
    from segmentation.reading import read_table

    gc.collect()
    with PeakMemory() as memory:
        laps = Laps()
        log = read_table(spark, str(path))
        laps("reading")
        customers, report = build_customer_table(log.df, cache=True)
        laps("building")
        count = customers.count()
        laps("counting")
    try:
        spend = customers.agg(F.sum("Spend")).first()[0]
    finally:
        customers.unpersist()
    return Run.measured(
        laps.seconds,
        laps.stages,
        memory,
        extra={"lines": report.rows_in, "customers": count, "spend": round(float(spend), 2)},
    )


def pandas_customers(path: Path) -> Run:
    """The same aggregation in pandas: read_csv, then the oracle the tests compare Spark with."""
    import pandas as pd

    from segmentation.synthetic import expected_customers

    gc.collect()
    with PeakMemory() as memory:
        laps = Laps()
        log = pd.read_csv(
            path,
            dtype={
                "InvoiceNo": "string",
                "StockCode": "string",
                "Country": "string",
                "CustomerID": "Int64",
            },
        )
        laps("reading")
        customers = expected_customers(log)
        laps("building")
    return Run.measured(
        laps.seconds,
        laps.stages,
        memory,
        extra={
            "lines": len(log),
            "customers": len(customers),
            "spend": round(float(customers["Spend"].sum()), 2),
        },
    )


def _agree(result: SizeResult) -> str:
    """Whether pandas found the same customers and total spend as Spark."""
    if not result.pandas:
        return ""
    spark, pandas = result.spark[0].extra, result.pandas[0].extra
    same = (
        spark["customers"] == pandas["customers"]
        and spark["lines"] == pandas["lines"]
        and abs(spark["spend"] - pandas["spend"]) < 0.01 * max(1, spark["customers"])
    )
    return "yes" if same else f"NO: {spark} vs {pandas}"


def print_results(results: list[SizeResult]) -> None:
    rows = []
    for result in results:
        spark_s = median(r.seconds for r in result.spark)
        pandas_s = median(r.seconds for r in result.pandas) if result.pandas else float("nan")
        first = result.spark[0].extra
        rows.append(
            [
                f"{first['lines']:,}",
                f"{result.path.stat().st_size / MB:,.0f}",
                f"{first['customers']:,}",
                f"{spark_s:.2f}",
                f"{first['lines'] / spark_s:,.0f}",
                f"{max(r.peak_mb for r in result.spark):,.0f} "
                f"({max(r.python_mb for r in result.spark):,.0f} / "
                f"{max(r.jvm_mb for r in result.spark):,.0f})",
                f"{pandas_s:.2f}" if result.pandas else "-",
                f"{spark_s / pandas_s:.2f}" if result.pandas else "-",
                f"{max(r.python_mb for r in result.pandas):,.0f}" if result.pandas else "-",
                _agree(result) or "-",
                goal(spark_s < GOAL_SECONDS, f"< {GOAL_SECONDS} s")
                if result.lines == GOAL_LINES
                else "",
            ]
        )
    print_table(
        ["lines", "CSV MB", "customers", "spark s", "lines/s", "spark peak MB (py / jvm)"]
        + ["pandas s", "spark/pd", "pandas MB", "same result", "goal"],
        rows,
    )
    print_stages(
        (result.spark[0].extra["lines"], engine, runs)
        for result in results
        for engine, runs in (("spark", result.spark), ("pandas", result.pandas))
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lines",
        default="1000000,10000000",
        type=counts,
        help="comma-separated order-line counts, approximate (default: 1000000,10000000)",
    )
    parser.add_argument(
        "--pandas-up-to",
        default=1_000_000,
        type=lambda text: int(text.replace("_", "")),
        help="run the pandas reference on logs of up to this many lines (0: never)",
    )
    add_common_arguments(parser, repeats=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_machine()
    print("inputs:", flush=True)
    files = {
        lines: transactions_file(args.data_dir, customers_for_lines(lines))
        for lines in [WARMUP_LINES, *args.lines]
    }
    spark = start_spark(lambda spark: spark_customers(spark, files[WARMUP_LINES]))

    results = []
    for lines in args.lines:
        result = SizeResult(lines, files[lines])
        with_pandas = lines <= args.pandas_up_to
        for repeat in range(1, args.repeats + 1):
            run = spark_customers(spark, files[lines])
            result.spark.append(run)
            if with_pandas:
                result.pandas.append(pandas_customers(files[lines]))
            reference = f", pandas {result.pandas[-1].seconds:.2f}s" if with_pandas else ""
            print(
                f"  {lines:>10,} lines, run {repeat}/{args.repeats}: spark {run.seconds:.2f}s "
                f"(peak {run.peak_mb:,.0f} MB: Python {run.python_mb:,.0f}, JVM "
                f"{run.jvm_mb:,.0f}){reference}",
                flush=True,
            )
        results.append(result)

    print_load()
    print_results(results)
    print(
        "\nspark s: read_table + build_customer_table(cache=True) + count, on a warm session. "
        "pandas: read_csv + segmentation.synthetic.expected_customers; pandas MB: Python's peak "
        "RSS. same result: equal "
        "customers, lines and total spend. spark peak MB: Python plus the JVM, sampled every "
        f"{SAMPLE_EVERY * 1000:.0f} ms."
    )


if __name__ == "__main__":
    main()
