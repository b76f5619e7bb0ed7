"""The k explorer: fit every k of a range on one cached table, compare them, suggest one.

Layout of a sweep's results folder: `manifest.json` (per-k metrics, the suggestion and why),
`sweep.csv`, `splits.csv` (how segments split from k to k+1) and one ordinary results folder per
k, `k=2/`, `k=3/`, ..., so switching k in the app only reads small files that already exist.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from segmentation.fitting import (
    Centres,
    Segmentation,
    customers_table,
    describe,
    draw_sample,
    measure,
)
from segmentation.manifest import (
    MANIFEST,
    SweepFiles,
    SweepManifest,
    plain,
    read_manifest,
    to_json,
)
from segmentation.measurement import agreement
from segmentation.params import SegmentationParams
from segmentation.preparation import PreparedData, Progress, ProgressCallback, prepare
from segmentation.results import (
    CUSTOMERS,
    SPLITS,
    SWEEP_TABLE,
    k_folder,
    text_columns,
    write_customers,
    write_results,
)
from segmentation.suggestion import TINY_SHARE, suggest


@dataclass
class SweepResult:
    """A finished sweep: its folder, manifest and per-k table."""

    out_dir: Path
    manifest: SweepManifest
    table: pd.DataFrame


def adjusted_rand(counts: pd.DataFrame) -> float:
    """Adjusted Rand index from a contingency table with columns a, b, n."""

    def pairs(values) -> float:
        values = np.asarray(values, float)
        return float((values * (values - 1) / 2).sum())

    total = counts["n"].sum()
    index = pairs(counts["n"])
    rows = pairs(counts.groupby("a")["n"].sum())
    cols = pairs(counts.groupby("b")["n"].sum())
    expected = rows * cols / (total * (total - 1) / 2)
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else (index - expected) / (maximum - expected)


def _stability(
    data: PreparedData,
    centres: Centres,
    found: Mapping[int, Segmentation],
    params: SegmentationParams,
) -> dict[int, dict]:
    """Refit every k with other seeds: the spread of silhouettes and the agreement (ARI) with the
    main fit, measured over every customer (three passes per extra seed, every k at once)."""
    ks = sorted(found)
    silhouettes = {k: [found[k].quality.silhouette] for k in ks}
    aris: dict[int, list[float]] = {k: [] for k in ks}
    for extra in range(1, params.stability_seeds + 1):
        other = draw_sample(data, params.seed + extra, params.fit)
        other.fit(ks, params.seed + extra, params.max_iter)
        measured, profiled = measure(data, other, ks)
        shared = agreement(
            data.scaled,
            data.model_cols,
            {k: centres.by_k[k] for k in ks},
            {k: other.by_k[k] for k in ks},
        )
        for k in ks:
            if len(measured.stats[k]) > 1:
                total = sum(p.silhouette_sum for p in profiled[k].values())
                silhouettes[k].append(total / data.rows_out)
            aris[k].append(adjusted_rand(shared[k]))
    result = {}
    for k in ks:
        values = [v for v in silhouettes[k] if v is not None]
        result[k] = {
            "seeds": params.stability_seeds + 1,
            "silhouette_min": min(values) if values else None,
            "silhouette_max": max(values) if values else None,
            "ari_mean": float(np.mean(aris[k])) if aris[k] else None,
            "ari_min": float(min(aris[k])) if aris[k] else None,
        }
    return result


def batches(ks: Sequence[int]) -> list[list[int]]:
    """The order k are measured in: the first alone, to show one as soon as possible, then the
    others in two batches (a pass costs about the same for one k as for several)."""
    rest = list(ks[1:])
    half = (len(rest) + 1) // 2
    return [b for b in ([ks[0]], rest[:half], rest[half:]) if b]


def _summary_row(seg: Segmentation, rows: int, fit_seconds: float) -> dict:
    quality = seg.quality
    smallest = min(quality.sizes.values()) / rows
    return {
        "k": seg.k,
        "within_ss": quality.within_ss,
        "silhouette": quality.silhouette,
        "calinski_harabasz": quality.calinski_harabasz,
        "davies_bouldin": quality.davies_bouldin,
        "segments_found": quality.segments_found,
        "smallest_share": smallest,
        "tiny_segment": smallest < TINY_SHARE,
        "fit_seconds": fit_seconds,
        "iterations": quality.iterations,
        "converged": quality.converged,
    }


def _splits(
    found: Mapping[int, Segmentation], by_cluster: Mapping[int, pd.DataFrame]
) -> pd.DataFrame:
    """How many customers of each segment at k land in each segment at k+1 (both measured)."""
    counted = [
        pd.DataFrame(
            {
                "k": k,
                "source": table["source"].map(found[k].order),
                "target": table["target"].map(found[k + 1].order),
                "count": table["count"],
            }
        )
        for k, table in sorted(by_cluster.items())
        if k in found and k + 1 in found
    ]
    if not counted:
        return pd.DataFrame(columns=["k", "source", "target", "count"])
    frame = pd.concat(counted, ignore_index=True)
    return frame.sort_values(["k", "source", "target"]).reset_index(drop=True)


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write a file beside `path`, then move it into place: readers never see half a file."""
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def _write_summary(
    out_dir: Path,
    ks: Sequence[int],
    table: pd.DataFrame,
    splits: pd.DataFrame,
    timings: Mapping[str, float],
    complete: bool,
    suggestion: tuple[int, str, dict[str, int]] | None = None,
) -> SweepManifest:
    """The sweep's own files: the per-k table, the splits, and a manifest saying which k are
    measured (written again as each batch finishes, so pages can show them at once)."""
    done = [int(k) for k in table["k"]]
    shared = read_manifest(out_dir / k_folder(done[0])).basics()
    shared["timings"] = dict(timings)
    suggested_k, reason, opinions = suggestion or (None, None, None)
    manifest = SweepManifest(
        **shared,
        complete=complete,
        k_values=list(ks),
        k_done=done,
        sweep=plain(table.to_dict("records")),
        files=SweepFiles(
            customers=CUSTOMERS if complete else None,
            sweep=SWEEP_TABLE,
            splits=SPLITS,
            per_k={str(k): k_folder(k) for k in done},
        ),
        suggested_k=suggested_k,
        suggestion=reason,
        opinions=opinions,
        # The suggested k's figures, for the job history.
        metrics=read_manifest(out_dir / k_folder(suggested_k)).metrics if suggested_k else None,
    )
    _replace(out_dir / SWEEP_TABLE, lambda path: table.to_csv(path, index=False))
    _replace(out_dir / SPLITS, lambda path: splits.to_csv(path, index=False))
    _replace(out_dir / MANIFEST, lambda path: path.write_text(to_json(manifest)))
    return manifest


def _measure_batches(
    data: PreparedData,
    centres: Centres,
    ks: Sequence[int],
    params: SegmentationParams,
    out_dir: Path,
    tracker: Progress,
) -> tuple[dict[int, Segmentation], dict[int, pd.DataFrame], list[dict]]:
    """Fit, measure, describe and write every k batch by batch, updating the sweep's summary
    after each batch so pages can open the k measured so far."""
    found: dict[int, Segmentation] = {}
    by_cluster: dict[int, pd.DataFrame] = {}
    rows: list[dict] = []
    for batch in batches(ks):
        shown = "k=" + ", ".join(map(str, batch))
        tracker.report(len(found) / len(ks), f"{shown}: fitting and measuring")
        centres.fit([k for k in batch if k not in centres.by_k], params.seed, params.max_iter)
        measured, profiled = measure(data, centres, batch)
        described = describe(data, centres, batch, measured, profiled, params.seed)
        for k in batch:
            write_results(
                out_dir / k_folder(k),
                data,
                described[k],
                params,
                tracker.so_far,
                lambda *_: None,
                in_sweep=True,
            )
            rows.append(_summary_row(described[k], data.rows_out, centres.seconds[k]))
        found.update(described)
        by_cluster.update(measured.splits)
        _write_summary(
            out_dir, ks, pd.DataFrame(rows), _splits(found, by_cluster), tracker.timings, False
        )
        tracker.report(
            len(found) / len(ks),
            f"{shown} ready ({len(found)} of {len(ks)}, {len(ks) - len(found)} left)",
        )
    return found, by_cluster, rows


def run_sweep(
    spark: SparkSession,
    source: str,
    params: SegmentationParams,
    out_dir: str | Path,
    progress: ProgressCallback | None = None,
) -> SweepResult:
    """Fit every k of params.k_range on one prepared table; write per-k results and a summary.

    The folder is created at once and each k's results appear in it as soon as they are
    measured; the manifest says which k are done and, once `complete`, which one is suggested.
    A failed or cancelled sweep leaves no folder behind.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; results are never overwritten.")
    ks = params.k_values
    tracker = Progress(progress)
    data = prepare(spark, source, params, tracker, min(ks))
    ks = [k for k in ks if k <= data.rows_out]
    try:
        out_dir.mkdir(parents=True)
        with tracker.stage("clustering", f"Fitting centres for k={ks[0]} on a sample"):
            # The other k are fitted batch by batch, so that the first k shows soonest.
            centres = draw_sample(data, params.seed, params.fit)
            centres.fit(ks[:1], params.seed, params.max_iter)
        with tracker.stage("evaluation", "Measuring every k over every customer"):
            found, by_cluster, rows = _measure_batches(data, centres, ks, params, out_dir, tracker)
        table = pd.DataFrame(rows)

        with tracker.stage("profiling", "Comparing the segmentations"):
            if params.stability_seeds:
                tracker.report(0.0, "Stability check: refitting every k with other seeds")
                for row, extra in zip(
                    rows, _stability(data, centres, found, params).values(), strict=True
                ):
                    row.update(extra)
                table = pd.DataFrame(rows)
            suggestion = suggest(table)

        with tracker.stage("saving", "Writing every customer with the segments of every k"):
            write_customers(
                customers_table(data, [found[k] for k in ks], per_k=True),
                text_columns(data),
                out_dir / CUSTOMERS,
            )
            manifest = _write_summary(
                out_dir, ks, table, _splits(found, by_cluster), tracker.timings, True, suggestion
            )
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        data.release()
    return SweepResult(out_dir, replace(manifest, timings=dict(tracker.timings)), table)
