"""Command line: `python -m segmentation run INPUT ...`, a contract scripts and spark-submit rely on.

Exit codes: 0 success, 2 invalid input (the analyst-facing message on stderr), 3 engine trouble
(Java, Spark, cluster), 1 anything unexpected. Never a traceback unless --debug.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from segmentation.errors import EngineError, InputError, SegmentationError
from segmentation.spark_engine import stop_spark

if TYPE_CHECKING:  # the commands import Spark only when they run
    import pandas as pd

    from segmentation.manifest import Quality
    from segmentation.pipeline import SegmentationResult
    from segmentation.sweep import SweepResult

EXIT_INVALID_INPUT = 2
EXIT_ENGINE = 3


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _log_list(text: str) -> tuple[str, ...] | None:
    """`auto` (None: the skewed features), `none` (no feature) or a comma-separated list."""
    if text.strip().lower() == "auto":
        return None
    return () if text.strip().lower() == "none" else _csv_list(text)


def _k_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise argparse.ArgumentTypeError(f"--k-range expects LOW-HIGH such as 2-10, got '{text}'")
    return int(low), int(high)


def _mapping(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        role, sep, column = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--map expects role=column, got '{item}'")
        mapping[role.strip()] = column.strip()
    return mapping


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's examples)."""
    parser = argparse.ArgumentParser(
        prog="python -m segmentation",
        description="Segment customers with Spark KMeans and write the results to a folder.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="segment a customer table (CSV, CSV.gz or Parquet)")
    run.add_argument("input", help="path or URL of the customer table")
    _add_model_options(run)
    _add_input_options(run)
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder, must not exist (default ./segmentation-results/...)",
    )

    score = commands.add_parser(
        "score", help="assign new customers to a saved segmentation (no refit)"
    )
    score.add_argument("model", type=Path, help="results folder of a run or a sweep")
    score.add_argument("input", help="path or URL of the customers (or order log) to assign")
    score.add_argument(
        "--k", type=int, default=None, help="of a sweep: which k (default: suggested)"
    )
    _add_input_options(score)
    score.add_argument("--out", type=Path, required=True, help="results folder, must not exist")

    compare = commands.add_parser(
        "compare", help="who moved between two segmentations of the same customers"
    )
    compare.add_argument("before", type=Path, help="results folder of the earlier segmentation")
    compare.add_argument("after", type=Path, help="results folder of the later one")
    compare.add_argument(
        "--out", type=Path, required=True, help="folder for migration.csv and movers.csv"
    )

    sample = commands.add_parser("sample", help="write synthetic customers with known segments")
    sample.add_argument("out", type=Path, help="file to write: .csv, .csv.gz or .parquet")
    sample.add_argument("--rows", type=int, default=10_000)
    sample.add_argument("--segments", type=int, default=4)
    sample.add_argument("--seed", type=int, default=0)
    return parser


def _add_model_options(run: argparse.ArgumentParser) -> None:
    """How many segments, on which features, with which treatment of outliers and skew."""
    run.add_argument("--k", type=int, default=4, help="number of segments (2-30, default 4)")
    run.add_argument(
        "--k-range",
        type=_k_range,
        default=None,
        metavar="LOW-HIGH",
        help="try every k in a range, e.g. 2-10, and suggest one (instead of --k)",
    )
    run.add_argument(
        "--stability-seeds",
        type=int,
        default=0,
        metavar="N",
        help="with --k-range: refit each k with N more seeds to check stability",
    )
    run.add_argument(
        "--features",
        type=_csv_list,
        default=None,
        help="comma-separated feature columns (default Age,Spend,Recency,Frequency)",
    )
    run.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    run.add_argument(
        "--max-iter",
        type=int,
        default=300,
        help="cap on KMeans iterations; it stops sooner when the centres settle (default 300)",
    )
    run.add_argument(
        "--fit",
        choices=("sample", "full"),
        default="sample",
        help="centres from a sample of at most 50,000 customers (default), or Spark ML KMeans "
        "on every customer (full; also saves the Spark ML model)",
    )
    run.add_argument(
        "--outliers",
        choices=("cap", "remove", "none"),
        default="cap",
        help="outlier policy, IQR rule (default cap)",
    )
    run.add_argument(
        "--log",
        type=_log_list,
        default=None,
        metavar="COLUMNS",
        help="columns the model sees as log(1 + x), or sign(x)·log(1 + |x|) when they hold negatives: "
        "comma-separated, 'none', or 'auto' (default: every feature with skewness above 1 and "
        "negatives in at most 5%% of values, which is not capped)",
    )
    run.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="ROLE=COLUMN",
        help="map a column to a role: customer_id, age, spend, recency, frequency",
    )


def _add_input_options(command: argparse.ArgumentParser) -> None:
    """How an input is read: what it is and, for an order log, its dates and attributes."""
    command.add_argument(
        "--input-kind",
        choices=("auto", "customers", "transactions"),
        default="auto",
        help="a customer table or an order log (default: detected)",
    )
    command.add_argument(
        "--date-format",
        choices=("iso", "yyyymmdd", "day-first", "month-first"),
        default=None,
        help="dates of an order log (default: detected; ambiguous "
        "day/month dates are asked for, never guessed)",
    )
    command.add_argument(
        "--reference-date",
        default=None,
        metavar="YYYY-MM-DD",
        help="order log: the day Recency is counted to (default: day after the last)",
    )
    command.add_argument(
        "--customers",
        default=None,
        metavar="FILE",
        help="order log: a table of customer attributes (e.g. Age, Region) to join",
    )
    command.add_argument(
        "--missing-ids",
        type=_csv_list,
        default=(),
        metavar="ID[,ID...]",
        help="customer ids that stand for no customer (a till or guest account), read as missing "
        "like '(blank)' or 'N/A'",
    )


def _run(args: argparse.Namespace) -> int:
    from segmentation.params import SegmentationParams
    from segmentation.pipeline import run_segmentation
    from segmentation.reading import sniff
    from segmentation.spark_engine import get_spark
    from segmentation.sweep import run_sweep

    params = SegmentationParams(
        k=args.k,
        features=args.features,
        seed=args.seed,
        max_iter=args.max_iter,
        fit=args.fit,
        outliers=args.outliers,
        log_features=args.log,
        column_mapping=_mapping(args.map),
        k_range=args.k_range,
        stability_seeds=args.stability_seeds,
        input_kind=args.input_kind,
        date_format=args.date_format,
        reference_date=args.reference_date,
        attributes=args.customers,
        missing_ids=args.missing_ids,
    )
    sniff(args.input)  # a missing, empty or binary file fails here, before Spark starts
    out = args.out or Path("segmentation-results") / (
        f"{Path(args.input.rstrip('/')).name.split('.')[0]}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    if params.k_range:
        return _print_sweep(run_sweep(get_spark(), args.input, params, out_dir=out))
    result = run_segmentation(get_spark(), args.input, params, out_dir=out)
    print(f"{result.manifest.rows_out:,} customers in {len(result.segments)} segments -> {out}")
    return _print_result(result)


def _score(args: argparse.Namespace) -> int:
    from segmentation.loading import LoadOptions
    from segmentation.reading import sniff
    from segmentation.scoring import run_scoring
    from segmentation.spark_engine import get_spark

    sniff(args.input)
    options = LoadOptions(
        args.input_kind, args.date_format, args.reference_date, args.customers, args.missing_ids
    )
    result = run_scoring(get_spark(), args.model, args.input, args.out, args.k, options)
    source = result.manifest.model_source
    assert source is not None  # an assignment names its model
    print(
        f"{result.manifest.rows_out:,} customers placed in the {source.k} segments of "
        f"{source.folder} -> {result.out_dir}"
    )
    return _print_result(result)


def _compare(args: argparse.Namespace) -> int:
    from segmentation.comparison import compare, write_comparison
    from segmentation.spark_engine import get_spark

    comparison = compare(get_spark(), args.before, args.after)
    write_comparison(comparison, args.out)
    print(
        f"{comparison.same_customers:,} customers in the same segment, "
        f"{comparison.moved_customers:,} moved, {comparison.new_customers:,} new, "
        f"{comparison.lost_customers:,} gone -> {args.out}"
    )
    for sentence in comparison.movements():
        print(f"  {sentence}")
    return 0


def _print_result(result: SegmentationResult) -> int:
    m = result.manifest
    print(_metrics_line(m.metrics))
    if m.metrics.convergence_warning:
        print(f"warning: {m.metrics.convergence_warning}")
    print(_segment_table(result.segments))
    told = m.told()
    for warning in told.warnings:
        print(f"warning: {warning}")
    for line in told.repaired + told.notes:
        print(f"note: {line}")
    return 0


def _print_sweep(result: SweepResult) -> int:
    from segmentation.manifest import read_manifest
    from segmentation.results import k_folder

    m = result.manifest
    print(f"{m.rows_out:,} customers, k={m.k_values[0]}..{m.k_values[-1]} -> {result.out_dir}")
    print(
        result.table[
            [
                "k",
                "silhouette",
                "calinski_harabasz",
                "davies_bouldin",
                "within_ss",
                "smallest_share",
            ]
        ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    print(f"suggested k={m.suggested_k}: {m.suggestion}")
    for k in m.k_done:
        warning = read_manifest(result.out_dir / k_folder(k)).metrics.convergence_warning
        if warning:
            print(f"warning: {warning}")
    return 0


def _metrics_line(metrics: Quality) -> str:
    def fmt(value, digits=3):
        return "n/a" if value is None else f"{value:,.{digits}f}"

    return (
        f"silhouette (squared Euclidean) {fmt(metrics.silhouette)} · "
        f"Calinski-Harabasz {fmt(metrics.calinski_harabasz, 1)} · "
        f"Davies-Bouldin {fmt(metrics.davies_bouldin)} · "
        f"within-cluster SS {fmt(metrics.within_ss, 1)}"
    )


def _segment_table(segments: pd.DataFrame) -> str:
    """The segments as the terminal shows them: name, size, how many of its customers are what
    the name says by their own RFM scores ('agree'), and why."""
    width = max(len("segment"), *(len(name) for name in segments["name"]))
    lines = [f"{'#':>2}  {'segment':<{width}} {'customers':>10} {'share':>6} {'agree':>5}  why"]
    for row in segments.itertuples():
        lines.append(
            f"{row.segment:>2}  {row.name:<{width}} {row.size:>10,} {row.share:>6.1%} "
            f"{_agreement(row):>5}  {row.reason}"
        )
    return "\n".join(lines)


def _agreement(row: Any) -> str:
    """'80%' of a segments.csv row; blank without RFM scores or an RFM segment to agree with."""
    share = getattr(row, "rfm_agreement_share", None)
    return "" if share is None or math.isnan(share) else f"{share:.0%}"


def _sample(args: argparse.Namespace) -> int:
    from segmentation.synthetic import write_customers

    write_customers(args.out, args.rows, segments=args.segments, seed=args.seed)
    print(f"wrote {args.rows:,} synthetic customers ({args.segments} segments) to {args.out}")
    return 0


def console() -> NoReturn:
    """The `segmentation` command, `python -m segmentation` and spark-submit's script: `main`'s
    exit code once the Spark session is stopped (an open Spark Connect client can hang at exit,
    when finalizers of fitted models call the server to release them)."""
    try:
        code = main()
    finally:
        stop_spark()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    handlers = {"run": _run, "score": _score, "compare": _compare, "sample": _sample}
    try:
        return handlers[args.command](args)
    except InputError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (EngineError, SegmentationError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ENGINE
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except Exception as exc:  # the user gets one line; --debug shows the rest
        if args.debug:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(
            f"error: unexpected failure: {first[:300]} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return 1
