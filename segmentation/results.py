"""The results directory of a run: written atomically, read back by the app and the command line.

Layout: customers.csv, segments.csv, categorical_mix.csv, chart_sample.parquet, manifest.json,
rfm_overlap.csv (with Recency, Frequency and Spend) and, once the analyst renames segments,
segment_names.json. Files are written into a hidden sibling folder and moved
into place at the end, so a half-written result is never mistaken for a finished one.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segmentation.fitting import Segmentation, customers_table, segment_columns
from segmentation.manifest import (
    MANIFEST,
    Files,
    InputFile,
    Manifest,
    Model,
    ModelSource,
    SegmentSummary,
    SweepManifest,
    read_manifest,
    read_sweep_manifest,
    to_json,
)
from segmentation.params import SegmentationParams
from segmentation.preparation import PreparedData
from segmentation.reading import display_name, file_size, sha256_of
from segmentation.rfm import SCORE_COLUMNS
from segmentation.rfm import SEGMENTS as RFM_SEGMENTS
from segmentation.spark_engine import engine_info

CUSTOMERS = "customers.csv"
SEGMENTS = "segments.csv"
MIX = "categorical_mix.csv"
SAMPLE = "chart_sample.parquet"
RFM = "rfm_overlap.csv"
SPARK_MODEL = "spark_model"  # Spark ML's KMeansModel of a fit on every customer
SWEEP_TABLE = "sweep.csv"
SPLITS = "splits.csv"
NAMES = "segment_names.json"  # names the analyst gave segments, beside the manifest
FORMULA_START = r"^[=+\-@\t\r]"


def _neutralised(column: str) -> F.Column:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe."""
    value = F.col(f"`{column}`").cast("string")
    return F.when(value.rlike(FORMULA_START), F.concat(F.lit("'"), value)).otherwise(value)


def write_single_csv(df: DataFrame, target: Path) -> None:
    """Write a DataFrame as one CSV file with a header, in parallel, without collecting it."""
    parts = target.parent / f".{target.name}.parts"
    (
        df.write.option("header", False)
        .option("quote", '"')
        .option("escape", '"')
        .option("emptyValue", "")
        .csv(str(parts))
    )
    with open(target, "w", newline="", encoding="utf-8") as out:
        csv.writer(out, lineterminator="\n").writerow(df.columns)
        for part in sorted(parts.glob("part-*")):
            with open(part, encoding="utf-8") as fh:
                shutil.copyfileobj(fh, out)
    shutil.rmtree(parts)


def write_customers(customers: DataFrame, text: set[str], target: Path) -> None:
    """customers.csv: every input column as read (text that a spreadsheet would run as a formula
    neutralised) plus the segment columns."""
    write_single_csv(
        customers.select(
            *[
                (_neutralised(c) if c in text else F.col(f"`{c}`")).alias(c)
                for c in customers.columns
            ]
        ),
        target,
    )


def text_columns(data: PreparedData) -> set[str]:
    """The input columns read as text (whose values customers.csv neutralises)."""
    report = data.report
    return {c for c in report.columns if report.profiles[c].kind == "text"}


def write_results(
    out_dir: Path,
    data: PreparedData,
    seg: Segmentation,
    params: SegmentationParams,
    timings: Callable[[], Mapping[str, float]],
    progress: Callable[[float, str], None],
    in_sweep: bool = False,
    model_source: ModelSource | None = None,
) -> Manifest:
    """Write one segmentation's results folder atomically and return its manifest.

    A single run's folder holds customers.csv; a k of a sweep (`in_sweep`) points to the
    sweep's customers.csv, which holds every k's segments. `timings` gives the run's stage
    times so far, read as the manifest is written (the last moment the file can know).
    """
    # Absolute: a Spark Connect server resolves relative paths against its own working folder.
    partial = out_dir.absolute().parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    try:
        if not in_sweep:
            progress(0.1, "Writing customers.csv")
            write_customers(customers_table(data, [seg]), text_columns(data), partial / CUSTOMERS)
        progress(0.8, "Writing profiles and the chart sample")
        seg.segments.to_csv(partial / SEGMENTS, index=False)
        seg.mix.to_csv(partial / MIX, index=False)
        assert seg.sample is not None  # every measured k has its chart sample drawn
        seg.sample.to_parquet(partial / SAMPLE, index=False)
        if seg.rfm is not None:
            seg.rfm.to_csv(partial / RFM, index=False)
        if seg.spark_model is not None:
            # Spark ML's own format, for KMeansModel.load; written by the engine (a Connect
            # server too), hence the absolute path.
            seg.spark_model.write().save(str(partial / SPARK_MODEL))
        manifest = replace(
            _manifest(data, seg, params, timings(), in_sweep), model_source=model_source
        )
        (partial / MANIFEST).write_text(to_json(manifest))
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _manifest(
    data: PreparedData,
    seg: Segmentation,
    params: SegmentationParams,
    timings: Mapping[str, float],
    in_sweep: bool,
) -> Manifest:
    report, source = data.report, data.source
    spark = data.scaled.sparkSession
    return Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        input=InputFile(
            name=display_name(source),
            location=source,
            format=report.source,
            bytes=file_size(source),
            sha256=sha256_of(source),
            rows=report.rows,
            columns=report.columns,
            mapping=report.mapping,
        ),
        params=params,
        features=report.features,
        categorical=report.categorical,
        rows_in=report.rows,
        rows_out=data.rows_out,
        repairs=replace(data.repairs, notes=data.repairs.notes + seg.notes),
        warnings=[p.message for p in report.warnings if not p.repair],
        versions={**engine_info(spark), "python": platform.python_version()},
        timings=dict(timings),
        transactions=data.origin,
        metrics=seg.quality,
        model=Model(
            features=data.model,
            centres={str(seg.order[c]): [float(v) for v in seg.centres[c]] for c in seg.order},
        ),
        segments=[
            SegmentSummary(**row)
            for row in seg.segments[["segment", "name", "reason", "size", "share"]].to_dict(
                "records"
            )
        ],
        files=Files(
            customers=f"../{CUSTOMERS}" if in_sweep else CUSTOMERS,
            segments=SEGMENTS,
            categorical_mix=MIX,
            chart_sample=SAMPLE,
            rfm_overlap=RFM if seg.rfm is not None else None,
            spark_model=SPARK_MODEL if seg.spark_model is not None else None,
        ),
        rfm=data.rfm.to_dict() if data.rfm else None,
        sweep_k=seg.k if in_sweep else None,
        customer_columns=segment_columns(seg.k) if in_sweep else None,
    )


@dataclass
class Results:
    """A finished run as the app shows it: manifest, segments, chart sample, categorical mix."""

    out_dir: Path
    manifest: Manifest
    segments: pd.DataFrame
    sample: pd.DataFrame
    mix: pd.DataFrame
    rfm: pd.DataFrame | None = None  # segment, rfm_segment, customers
    renamed: dict[int, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.manifest.features)

    @property
    def k(self) -> int:
        """The k of this segmentation (one k of a sweep, or the single run's)."""
        return self.manifest.k

    @property
    def roles(self) -> dict[str, str]:
        return dict(self.manifest.input.mapping)

    def with_names(self, names: Mapping[int, str]) -> Results:
        """The same results with segment names the analyst edited."""
        if not names:
            return self
        rename = {**self.renamed, **{int(k): v for k, v in names.items() if v}}
        segments = self.segments.copy()
        segments["name"] = [
            rename.get(s, n) for s, n in zip(segments["segment"], segments["name"], strict=True)
        ]
        sample = self.sample.copy()
        sample["segment_name"] = sample["segment"].map(
            dict(zip(segments["segment"], segments["name"], strict=True))
        )
        return Results(self.out_dir, self.manifest, segments, sample, self.mix, self.rfm, rename)

    def profile_table(self) -> pd.DataFrame:
        """The segments table as the analyst reads it: one row per segment, figures per feature."""
        table = pd.DataFrame(
            {
                "segment": self.segments["segment"],
                "name": self.segments["name"],
                "customers": self.segments["size"],
                "share": (self.segments["share"] * 100).round(1),
            }
        )
        for feature in self.features:
            for stat in ("mean", "median", "min", "max"):
                table[f"{feature} {stat}"] = self.segments[f"{feature}_{stat}"].round(2)
        for column in self.segments.columns:
            if column.endswith("_top"):
                table[f"top {column[:-4]}"] = self.segments[column]
        return table

    def model_table(self) -> pd.DataFrame:
        """What KMeans saw of each segment: its centre per feature as a z-score of the model's
        inputs (after capping and log transforms, standardized)."""
        table = self.segments[["segment", "name"]].copy()
        for feature in self.features:
            table[f"{feature} z"] = self.segments[f"{feature}_z"].round(2)
        return table

    def rfm_overlap(self) -> pd.DataFrame | None:
        """Customers per segment (rows, with names) and RFM segment (columns, best first);
        None when the run had no Recency, Frequency and Spend."""
        if self.rfm is None:
            return None
        table = self.rfm.pivot_table(
            index="segment", columns="rfm_segment", values="customers", aggfunc="sum", fill_value=0
        )
        table = table.reindex(
            index=self.segments["segment"],
            columns=[s for s in RFM_SEGMENTS if s in table.columns],
            fill_value=0,
        )
        names = dict(zip(self.segments["segment"], self.segments["name"], strict=True))
        table.index = [f"{s} · {names[s]}" for s in table.index]
        table.columns.name = None
        return table

    @property
    def customers_ready(self) -> bool:
        """Whether the customer file exists yet (a sweep writes it once every k is measured)."""
        return (self.out_dir / self.manifest.files.customers).exists()

    def write_customers(self, target: BinaryIO) -> None:
        """Stream this segmentation's customers.csv to `target`: every input column, `segment`
        and `segment_name` (as the analyst renamed them), and RFM scores when the run has them.
        A k of a sweep takes its two columns from the sweep's file, which holds every k."""
        source = self.out_dir / self.manifest.files.customers
        columns = self.manifest.customer_columns
        if not self.renamed and not columns:
            with open(source, "rb") as fh:
                shutil.copyfileobj(fh, target)
            return
        columns = columns or segment_columns(None)
        scores = list(SCORE_COLUMNS) if self.manifest.rfm else []
        chunks = pd.read_csv(
            source,
            dtype=str,
            keep_default_na=False,
            chunksize=200_000,
            usecols=[*self.manifest.input.columns, *columns.values(), *scores],
        )
        for number, chunk in enumerate(chunks):
            chunk = chunk.rename(columns={v: k for k, v in columns.items()})
            chunk["segment_name"] = [
                self.renamed.get(int(s), n) if s else n
                for s, n in zip(chunk["segment"], chunk["segment_name"], strict=True)
            ]
            ordered = chunk[[*self.manifest.input.columns, "segment", "segment_name", *scores]]
            target.write(ordered.to_csv(index=False, header=number == 0).encode("utf-8"))


def save_segment_names(out_dir: Path, names: Mapping[int, str]) -> None:
    """Keep the names the analyst gave the segments in the results folder itself, so that the
    folder, copied or scored against, carries them (blank names fall back to the run's)."""
    kept = {str(int(s)): str(n).strip() for s, n in sorted(names.items()) if str(n).strip()}
    partial = out_dir / f".{NAMES}.partial"
    partial.write_text(json.dumps(kept, indent=2))
    os.replace(partial, out_dir / NAMES)


def saved_segment_names(out_dir: Path) -> dict[int, str]:
    """The names the analyst gave this folder's segments ({} when none)."""
    try:
        return {int(s): n for s, n in json.loads((out_dir / NAMES).read_text()).items()}
    except FileNotFoundError:
        return {}


def names_changed(out_dir: Path) -> float | None:
    """When the analyst last renamed a folder's segments (None when never)."""
    try:
        return (out_dir / NAMES).stat().st_mtime
    except FileNotFoundError:
        return None


def load_results(out_dir: str | Path) -> Results:
    """Read a finished run's small files (never the customer table itself), with the names the
    analyst gave its segments."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    mix = pd.read_csv(out_dir / MIX, dtype={"value": str}, keep_default_na=False)
    rfm = manifest.files.rfm_overlap
    return Results(
        out_dir=out_dir,
        manifest=manifest,
        segments=pd.read_csv(out_dir / SEGMENTS, keep_default_na=False, na_values=[""]),
        sample=pd.read_parquet(out_dir / SAMPLE),
        mix=mix,
        rfm=pd.read_csv(out_dir / rfm, keep_default_na=False) if rfm else None,
    ).with_names(saved_segment_names(out_dir))


def k_folder(k: int) -> str:
    """Name of the results folder of one k inside a sweep."""
    return f"k={k}"


@dataclass
class Sweep:
    """A k sweep as the app shows it: per-k figures, the suggestion and how segments split.

    While a sweep runs its folder already holds the k measured so far (`ks`); the suggestion
    comes once every planned k is measured (`complete`).
    """

    out_dir: Path
    manifest: SweepManifest
    table: pd.DataFrame
    splits: pd.DataFrame

    @property
    def complete(self) -> bool:
        return self.manifest.complete

    @property
    def ks(self) -> list[int]:
        """The k whose results can be opened."""
        return list(self.manifest.k_done)

    @property
    def planned(self) -> list[int]:
        """Every k the sweep fits."""
        return list(self.manifest.k_values)

    @property
    def suggested_k(self) -> int | None:
        """The suggested k; None until every k is measured."""
        return self.manifest.suggested_k

    @property
    def progress_text(self) -> str:
        """Which k can be opened, and which are still being measured."""
        waiting = [k for k in self.planned if k not in self.ks]
        text = f"k = {', '.join(map(str, self.ks))} ready"
        return text + (
            f"; k = {', '.join(map(str, waiting))} still being measured" if waiting else ""
        )

    def folder(self, k: int) -> Path:
        """The ordinary results folder of one k."""
        return self.out_dir / k_folder(k)


def load_sweep(out_dir: str | Path) -> Sweep | None:
    """A sweep's summary (so far, while it runs), or None when the folder holds a single
    segmentation or nothing yet."""
    out_dir = Path(out_dir)
    try:
        manifest = read_sweep_manifest(out_dir)
    except FileNotFoundError:
        return None
    if manifest is None:
        return None
    done = manifest.k_done
    table = pd.read_csv(out_dir / SWEEP_TABLE)
    splits = pd.read_csv(out_dir / SPLITS)
    # The tables may already hold a batch the manifest does not list yet.
    return Sweep(
        out_dir=out_dir,
        manifest=manifest,
        table=table[table["k"].isin(done)].reset_index(drop=True),
        splits=splits[splits["k"].isin(done) & splits["k"].add(1).isin(done)].reset_index(
            drop=True
        ),
    )


def sweep_state(out_dir: str | Path) -> float | None:
    """When a results folder's manifest last changed (None without one): a running sweep
    rewrites it as each batch of k is measured."""
    try:
        return (Path(out_dir) / MANIFEST).stat().st_mtime
    except FileNotFoundError:
        return None
