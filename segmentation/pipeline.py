"""A single segmentation run: prepare the table, fit k segments, measure and describe them over
every customer, write the results folder.

Stages (segmentation.preparation.STAGES) report progress through a callback; a sweep of several
k (segmentation.sweep) runs the same steps for every k on one prepared table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from segmentation.fitting import describe, draw_sample, measure
from segmentation.manifest import Manifest
from segmentation.params import SegmentationParams
from segmentation.preparation import Progress, ProgressCallback, prepare
from segmentation.results import write_results


@dataclass
class SegmentationResult:
    """A finished run: where its files are, its manifest and the segments table."""

    out_dir: Path
    manifest: Manifest  # with the time saving took, which the file cannot hold
    segments: pd.DataFrame


def run_segmentation(
    spark: SparkSession,
    source: str,
    params: SegmentationParams,
    out_dir: str | Path,
    progress: ProgressCallback | None = None,
) -> SegmentationResult:
    """Segment the customers in `source` and write the results into `out_dir` (must not exist)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; results are never overwritten.")
    tracker = Progress(progress)
    k = params.k
    data = prepare(spark, source, params, tracker, k)
    try:
        with tracker.stage("clustering", f"Fitting KMeans with k={k}"):
            centres = draw_sample(data, params.seed, params.fit)
            centres.fit([k], params.seed, params.max_iter)
        with tracker.stage("evaluation", "Measuring every customer: sizes, silhouette, spread"):
            measured, profiled = measure(data, centres, [k])
        with tracker.stage("profiling", "Describing and naming the segments"):
            seg = describe(data, centres, [k], measured, profiled, params.seed)[k]
        with tracker.stage("saving", "Writing the results"):
            manifest = write_results(out_dir, data, seg, params, tracker.so_far, tracker.report)
        manifest = replace(manifest, timings=dict(tracker.timings))
        return SegmentationResult(out_dir=out_dir, manifest=manifest, segments=seg.segments)
    finally:
        data.release()
