"""Assign new customers to a saved segmentation, without refitting.

A results folder is a model: its manifest holds the column roles, each feature's fill value,
outlier fences and log transform, the scaler and the segments' centres; `segment_names.json`
holds the names the analyst gave. Customers placed with it get exactly the segment and name
the saved run would have given them. The model is plain JSON read on the driver, so it works
the same in local mode, on a cluster and over Spark Connect.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from segmentation.errors import InputError
from segmentation.fitting import describe, draw_sample, measure
from segmentation.loading import LoadOptions, load_customer_table
from segmentation.manifest import FeatureModel, LogTransform, Manifest, Model, ModelSource
from segmentation.params import missing_id_list
from segmentation.pipeline import SegmentationResult
from segmentation.preparation import (
    PreparedData,
    Progress,
    ProgressCallback,
    Treatment,
    account,
    apply_treatment,
    load_input,
    measure_inputs,
    number_column,
    standardize,
)
from segmentation.profiles import SavedSegment, named_rfm_segment
from segmentation.reading import Table
from segmentation.results import load_results, load_sweep, write_results
from segmentation.rfm import RfmScores
from segmentation.spark_engine import unpersist
from segmentation.validation import (
    NOTHING_TO_SEGMENT,
    ValidationReport,
    feature_problem,
    negative_problem,
    negative_problems,
    validate,
)

# A feature whose median moved this many times away from the model's was probably measured in
# other units (cents for euros, days for months).
UNITS_RATIO = 20.0


@dataclass(frozen=True)
class SavedSegmentation:
    """One finished segmentation read as a model."""

    folder: Path
    manifest: Manifest
    model: Model
    segments: list[SavedSegment]  # one per centre, in the centres' order

    @property
    def k(self) -> int:
        return self.manifest.k

    @property
    def centres(self) -> np.ndarray:
        """The standardized centres, one row per segment, in the order of `segments`."""
        centres = self.model.centres
        return np.array([centres[str(s.number)] for s in self.segments], dtype=float)

    @property
    def source(self) -> ModelSource:
        return ModelSource(
            folder=str(self.folder),
            k=self.k,
            created_at=self.manifest.created_at,
            input_name=self.manifest.input.name,
        )


def load_model(results_dir: str | Path, k: int | None = None) -> SavedSegmentation:
    """The segmentation in a results folder; for a sweep, its k (by default the suggested one)."""
    folder = Path(results_dir)
    if not (folder / "manifest.json").is_file():
        raise InputError(f"{folder} is not a results folder (it has no manifest.json).")
    sweep = load_sweep(folder)
    if sweep is not None:
        chosen = k or sweep.suggested_k
        if chosen not in sweep.ks:
            raise InputError(
                f"This sweep has k = {', '.join(map(str, sweep.ks))}"
                + (f", not {k}." if k else "; choose one with --k.")
            )
        folder = sweep.folder(chosen)
    results = load_results(folder)
    manifest = results.manifest
    if k and results.k != k:
        raise InputError(f"{folder} is a segmentation with k={results.k}, not k={k}.")
    if manifest.model_source:
        raise InputError(
            f"{folder} holds customers assigned to another segmentation; assign to that one: "
            f"{manifest.model_source.folder}."
        )
    if manifest.model is None:
        raise InputError(f"{folder} was made before segmentations kept their model; run it again.")
    numbers = [int(n) for n in manifest.model.centres]
    names = dict(zip(results.segments["segment"], results.segments["name"], strict=True))
    rfm_names = _rfm_names(results.segments)
    segments = [SavedSegment(n, names[n], rfm_names[n]) for n in numbers]
    return SavedSegmentation(folder, manifest, manifest.model, segments)


def _rfm_names(segments: pd.DataFrame) -> dict[int, str]:
    """The RFM segment each saved segment was named by, as the run's cards count it, whatever
    the analyst renamed it to; results written before segments.csv kept it read it from the
    name."""
    if "rfm_name" in segments:
        kept = segments["rfm_name"].fillna("")
    else:
        kept = segments["name"].map(named_rfm_segment)
    return dict(zip(segments["segment"], kept, strict=True))


def _check_columns(columns: list[str], model: Manifest) -> None:
    """Stop a file that lacks a feature the model places customers by."""
    labels = {column: role for role, column in model.input.mapping.items()}
    missing = [f for f in model.features if f not in columns]
    if missing:
        needed = ", ".join(f"'{f}'" + (f" ({labels[f]})" if f in labels else "") for f in missing)
        raise InputError(
            f"This segmentation places customers by {', '.join(model.features)}; the file has "
            f"no column {needed}. Its columns: {', '.join(columns[:15])}.",
            hint="Rename the column to the name the segmentation was made with, or assign a "
            "file exported the same way.",
        )


def _check_numbers(report: ValidationReport, model: Manifest, saved: Model) -> None:
    """Stop a feature that held numbers when the model was made and holds text now."""
    for feature in model.features:
        profile = report.profiles[feature]
        if profile.kind == "text":
            examples = ", ".join(f"'{v}'" for v in profile.bad_examples[:3])
            raise InputError(
                f"'{feature}' held numbers when this segmentation was made (median "
                f"{saved.features[feature].fill or 0:,.2f}); here it holds text"
                + (f" (e.g. {examples})" if examples else "")
                + ". The segmentation expects numbers in the same units.",
            )


def _unit_notes(report: ValidationReport, saved: Model) -> list[str]:
    """Warn when a feature's typical value moved by an order of magnitude or more."""
    notes = []
    for feature, treatment in saved.features.items():
        before, now = treatment.fill, report.profiles[feature].median
        if before and now and max(now / before, before / now) >= UNITS_RATIO:
            notes.append(
                f"The median of '{feature}' is {now:,.2f} here and was {before:,.2f} when the "
                "segmentation was made: check that it is in the same units."
            )
    return notes


def _negative_fate(saved: FeatureModel, model: Manifest) -> tuple[str, bool]:
    """What the saved segmentation does with a feature's negative values, and whether the
    assignment's typed account says it again (a transform's sentence counts them)."""
    if saved.transform == "signed-log":
        return (
            "kept: the saved segmentation sees sign(x)·log(1 + |x|) of this feature, so they "
            "stay below zero.",
            True,
        )
    if saved.transform == "log":
        return (
            "counted as 0: the saved segmentation sees log(1 + x) of this feature, which was "
            "made without negatives.",
            True,
        )
    if saved.fences and model.repairs.outlier_policy == "cap":
        return (
            f"kept; below the saved lower fence ({saved.fences[0]:,.2f}) they are placed as if "
            "at it, as the saved segmentation caps this feature.",
            False,
        )
    return "kept: the saved segmentation places them as they are.", False


def _validated(
    table: Table, model: Manifest, saved: Model, numbers: dict[str, str]
) -> ValidationReport:
    """The file checked for what the model needs. Only the roles whose column is here are
    passed on (a customer id or Age the model does not place by may be missing). A feature
    that does not vary here, or has no values (every customer gets the saved fill), is kept:
    the saved model places customers by every one of its features as they are."""
    _check_columns(table.columns, model)
    roles = {
        role: column for role, column in model.input.mapping.items() if column in table.columns
    }
    report = validate(table, 1, model.features, roles, numbers)
    if not report.rows:
        report.raise_for_errors()  # an empty file: nothing to place
    _check_numbers(report, model, saved)
    waived = [feature_problem(report.profiles[f], report.rows, None, []) for f in model.features]
    # Negatives are treated as the saved model says, not as this file's skew would choose.
    waived += [
        p for f in model.features for p in negative_problems(report.profiles[f], report.rows)
    ]
    report.problems = [
        p for p in report.problems if p not in waived and p.message != NOTHING_TO_SEGMENT
    ]
    report.problems += [
        negative_problem(report.profiles[f], *_negative_fate(saved.features[f], model))
        for f in model.features
        if report.profiles[f].negatives
    ]
    report.features = list(model.features)
    report.raise_for_errors()
    return report


def assignment_options(model: Manifest, options: LoadOptions) -> LoadOptions:
    """How a file is read for a saved model: the model's missing ids and the analyst's. The
    model's segments were measured without its till or guest accounts, so they stay missing
    whether or not the analyst repeats them; ids named for this file are added. Un-marking an id
    means segmenting again: the saved segments have no place measured for it."""
    return replace(
        options, missing_ids=missing_id_list([*model.params.missing_ids, *options.missing_ids])
    )


def check_input(
    spark: SparkSession, source: str, model: SavedSegmentation, options: LoadOptions
) -> ValidationReport:
    """What the Upload page asks before an assignment starts: can this file be placed in the
    model (the columns it needs, as numbers)? Raises InputError when not."""
    table, _ = load_customer_table(spark, source, assignment_options(model.manifest, options))
    return _validated(table, model.manifest, model.model, {})


def prepare_for_model(
    spark: SparkSession,
    source: str,
    saved: SavedSegmentation,
    options: LoadOptions,
    tracker: Progress,
) -> PreparedData:
    """Loading to scaling with the saved fills, fences, transforms and scaler, never ones
    measured on this file, so each customer gets the inputs the saved run would have given it.
    No customer is removed: under the 'remove' policy an outlier is placed like any other."""
    model = saved.manifest
    options = assignment_options(model, options)
    params = replace(
        model.params,
        features=tuple(model.features),
        column_mapping={},  # the roles are checked against this file in _validated
        input_kind=options.input_kind,
        date_format=options.date_format,
        reference_date=options.reference_date,
        attributes=options.attributes,
        missing_ids=options.missing_ids,
    )
    treatments = saved.model.features
    cached: list[DataFrame] = []
    try:
        with tracker.stage("loading", "Reading the file"):
            table, origin, chosen, cached = load_input(spark, source, params, tracker)
        with tracker.stage("validating", "Checking the columns the segmentation needs"):
            report = _validated(table, model, saved.model, {c: number_column(c) for c in chosen})
        with tracker.stage("preprocessing", "Filling and treating values as the saved run did"):
            capped = model.repairs.outlier_policy == "cap"  # 'remove' removes no one here
            plans = {
                f: Treatment(
                    s.fill or 0.0,
                    (s.fences[0], s.fences[1]) if s.fences and capped else None,
                    s.transform,
                )
                for f, s in treatments.items()
            }
            prepared, value_cols, inputs = apply_treatment(
                table, plans, model.repairs.outlier_policy, remove=False
            )
        with tracker.stage("features", "Counting customers"):
            fenced = sum(1 for plan in plans.values() if plan.fences)
            counts = measure_inputs(prepared, fenced, inputs, 1)
        with tracker.stage("scaling", "Standardizing with the saved means and deviations"):
            scaled, model_cols = standardize(
                prepared, inputs, [(s.mean, s.std) for s in treatments.values()]
            )
    except BaseException:
        unpersist(cached)
        raise
    values = dict(zip(model.features, value_cols, strict=True))
    cuts = (model.rfm or {}).get("cuts")
    rfm_values = {role: values[model.input.mapping[role]] for role in cuts or {}}
    transforms = [
        LogTransform(
            f, plan.transform, report.profiles[f].skewness, report.profiles[f].negatives, "model"
        )
        for f, plan in plans.items()
        if plan.transform != "none"
    ]
    repairs = account(
        report,
        plans,
        counts,
        model.repairs.outlier_policy,
        transforms,
        (origin.messages() if origin else []) + _unit_notes(report, saved.model),
        rows_removed=0,
    )
    return PreparedData(
        source,
        table,
        report,
        scaled,
        model_cols,
        value_cols,
        counts["rows"],
        repairs,
        dict(treatments),
        cached,
        origin,
        RfmScores(rfm_values, cuts) if cuts else None,
    )


def run_scoring(
    spark: SparkSession,
    model_dir: str | Path,
    source: str,
    out_dir: str | Path,
    k: int | None = None,
    options: LoadOptions | None = None,
    progress: ProgressCallback | None = None,
) -> SegmentationResult:
    """Place the customers of `source` in the saved segmentation of `model_dir` and write a
    results folder like a run's: customers.csv with segment and name, profiles of these
    customers, and a manifest naming the model."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; results are never overwritten.")
    model = load_model(model_dir, k)
    tracker = Progress(progress)
    options = assignment_options(model.manifest, options or model.manifest.params.load_options)
    data = prepare_for_model(spark, source, model, options, tracker)
    params = replace(
        model.manifest.params,
        k=model.k,
        k_range=None,
        stability_seeds=0,
        missing_ids=options.missing_ids,
    )
    try:
        with tracker.stage("clustering", f"Placing customers in the {model.k} saved segments"):
            centres = draw_sample(data, params.seed)
            centres.by_k[model.k] = model.centres
        with tracker.stage("evaluation", "Measuring every customer: sizes, silhouette, spread"):
            measured, profiled = measure(data, centres, [model.k])
        with tracker.stage("profiling", "Describing the segments of these customers"):
            seg = describe(
                data, centres, [model.k], measured, profiled, params.seed, model.segments
            )
            seg[model.k].quality = replace(
                seg[model.k].quality,
                fitted_on=None,
                fit_kind=f"the saved centres of {model.folder} (k={model.k}), not refitted; every "
                "customer is assigned and every figure is computed over all of them",
            )
        with tracker.stage("saving", "Writing the results"):
            manifest = write_results(
                out_dir,
                data,
                seg[model.k],
                params,
                tracker.so_far,
                tracker.report,
                model_source=model.source,
            )
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        data.release()
    manifest = replace(manifest, timings=dict(tracker.timings))
    return SegmentationResult(out_dir=out_dir, manifest=manifest, segments=seg[model.k].segments)
