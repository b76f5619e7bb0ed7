"""Centres from a sample or Spark ML KMeans on every customer: what the full fit costs and what
it gains.

    python -m benchmarks.fit_kind [--rows 100000,1000000] [--repeats 3,1] [--k 7]

On hard data (`segmentation.synthetic.make_overlapping`: seven overlapping groups of unequal
size, four features, no skew) it runs the real pipeline with `fit="sample"` and `fit="full"`
and prints, per table size, the medians of the whole run's seconds and of the clustering stage
(the fit), the iterations and the within-segment sum of squares over every customer. Figures
are printed, never asserted.
"""

from __future__ import annotations

import argparse

from benchmarks.common import (
    median,
    print_load,
    print_machine,
    print_table,
    scratch_dir,
    start_spark,
)
from segmentation.params import FIT_KINDS, SegmentationParams
from segmentation.pipeline import run_segmentation
from segmentation.synthetic import make_overlapping

FEATURES = ("x1", "x2", "x3", "x4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="table sizes, comma-separated")
    parser.add_argument("--repeats", default="3,1", help="runs per size, comma-separated")
    parser.add_argument("--k", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(v) for v in args.rows.split(",")]
    repeats = [int(v) for v in args.repeats.split(",")]
    print_machine()
    spark = start_spark(lambda _: None)
    rows = []
    with scratch_dir("bench-fit-kind-") as scratch:
        for size, times in zip(sizes, repeats, strict=True):
            source = scratch / f"customers-{size}.parquet"
            make_overlapping(size, seed=0)[0].to_parquet(source, index=False)
            run_segmentation(  # warm-up, not counted: compiles the queries of this size
                spark,
                str(source),
                SegmentationParams(k=2, features=FEATURES),
                scratch / f"warm-{size}",
            )
            within = {}
            for fit in FIT_KINDS:
                params = SegmentationParams(k=args.k, features=FEATURES, outliers="none", fit=fit)
                runs = [
                    run_segmentation(spark, str(source), params, scratch / f"{size}-{fit}-{i}")
                    for i in range(times)
                ]
                metrics = [r.manifest.metrics for r in runs]
                within[fit] = median(m.within_ss or 0.0 for m in metrics)
                rows.append(
                    [
                        f"{size:,}",
                        fit,
                        str(times),
                        f"{median(sum(r.manifest.timings.values()) for r in runs):.1f}",
                        f"{median(r.manifest.timings['clustering'] for r in runs):.1f}",
                        f"{median(m.iterations or 0 for m in metrics):.0f}",
                        f"{within[fit]:,.0f}",
                        f"{within[fit] / within['sample'] - 1:+.3%}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    print_table(
        ["customers", "fit", "runs", "run s", "fit s", "iterations", "within SS", "vs sample"],
        rows,
        left=0,
    )
    print_load()


if __name__ == "__main__":
    main()
