"""The table every k is fitted on: load, validate, clean, scale (and the pieces an assignment to
a saved segmentation reuses with the saved figures).

Each stage of a run reports progress through a callback `(stage, fraction, message, timings)`;
the fraction is the whole run's progress from 0 to 1, the timings the finished stages' seconds. The input is read once: the pass that checks
it also fills the cache, and every later step works on the cached, prepared table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from segmentation.errors import InputError
from segmentation.loading import load_customer_table
from segmentation.manifest import FeatureModel, Fence, Fill, LogTransform, Repairs
from segmentation.order_log import TRANSACTION_FEATURES
from segmentation.order_report import TransactionReport
from segmentation.params import SegmentationParams
from segmentation.reading import Table, number_expr, quoted_column
from segmentation.rfm import ROLES as RFM_ROLES
from segmentation.rfm import RfmScores
from segmentation.spark_engine import unpersist
from segmentation.validation import (
    ColumnProfile,
    ValidationReport,
    automatic_log,
    feature_columns,
    validate,
)

# stage, whole-run progress 0..1, what is happening, seconds of each finished stage
ProgressCallback = Callable[[str, float, str, Mapping[str, float]], None]

# Marks a customer outside a fence under the "remove" policy (see apply_treatment, kept).
REMOVED = "__removed"

STAGES = (
    "loading",
    "validating",
    "preprocessing",
    "features",
    "scaling",
    "clustering",
    "evaluation",
    "profiling",
    "saving",
)
_WEIGHTS = dict(zip(STAGES, (0.03, 0.17, 0.15, 0.02, 0.05, 0.25, 0.13, 0.08, 0.12), strict=True))


class Progress:
    """The one clock of a run: times its stages (for the manifest and the Job Monitor) and turns
    within-stage progress into whole-run progress."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.timings: dict[str, float] = {}
        self._stage = STAGES[0]
        self._started = time.perf_counter()

    def _done_before(self, stage: str) -> float:
        return sum(_WEIGHTS[s] for s in STAGES[: STAGES.index(stage)])

    def report(self, fraction: float, message: str) -> None:
        """Tell the caller how far the current stage is (0..1) and what is happening."""
        if self.callback:
            overall = self._done_before(self._stage) + _WEIGHTS[self._stage] * fraction
            self.callback(self._stage, min(overall, 1.0), message, dict(self.timings))

    def so_far(self) -> dict[str, float]:
        """Seconds of the finished stages and of the current one until now."""
        running = {self._stage: round(time.perf_counter() - self._started, 3)}
        return {**self.timings, **({} if self._stage in self.timings else running)}

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        """Run one stage: report its start, time it."""
        self._stage = name
        self._started = time.perf_counter()
        self.report(0.0, message)
        yield
        self.timings[name] = round(time.perf_counter() - self._started, 3)


def skewed_features(
    profiles: Mapping[str, ColumnProfile], features: Sequence[str], rows: int
) -> list[str]:
    """The features a run log-transforms unless told otherwise: strongly skewed (skewness above
    `SKEWED`) with no or few negatives, like spend and order counts (see `automatic_log`).
    Capping such a feature at the IQR fence gives its best customers one value; a log keeps
    them apart."""
    return [f for f in features if automatic_log(profiles[f], rows)]


def _transforms(
    report: ValidationReport, params: SegmentationParams
) -> tuple[dict[str, LogTransform], list[str]]:
    """The features the model sees on a log scale, and a note when none matched the choice.
    A feature with negatives gets the signed log, so a refund stays below zero instead of
    becoming 0."""
    if params.log_features is None:
        logged = skewed_features(report.profiles, report.features, report.rows)
    else:
        wanted = {name.lower() for name in params.log_features}
        logged = [c for c in report.features if c.lower() in wanted]
        if params.log_features and not logged:
            return {}, ["No chosen feature matched the columns to log-transform."]
    profiles = report.profiles
    return {
        c: LogTransform(
            feature=c,
            transform="signed-log" if profiles[c].negatives else "log",
            skewness=profiles[c].skewness,
            negatives=profiles[c].negatives,
            chosen_by="automatic" if params.log_features is None else "analyst",
        )
        for c in logged
    }, []


def _signed_log(x: float) -> float:
    return float(np.sign(x) * np.log1p(abs(x)))


def _signed_exp(y: float) -> float:
    return float(np.sign(y) * np.expm1(abs(y)))


# Each transform as numpy on one figure, and back: fences are judged on the model's scale.
_SCALES: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "none": (float, float),
    "log": (lambda q: float(np.log1p(max(q, 0.0))), lambda y: float(np.expm1(y))),
    "signed-log": (_signed_log, _signed_exp),
}


def _fences(p: ColumnProfile, transform: str) -> tuple[float, float, bool]:
    """IQR fences in real units, judged on the scale the model sees (the transforms are
    monotone, so the quartiles of the transformed feature are the transformed quartiles), and
    whether there is any spread to judge by."""
    forward, back = _SCALES[transform]
    q1, q3 = (forward(_measured(q, p.name)) for q in (p.q1, p.q3))
    iqr = q3 - q1
    return back(q1 - 1.5 * iqr), back(q3 + 1.5 * iqr), iqr > 0


def model_scale(value: Column, transform: str) -> Column:
    """A feature on the scale the model sees it (see FeatureModel.transform)."""
    if transform == "log":
        return F.log1p(F.greatest(value, F.lit(0.0)))
    if transform == "signed-log":
        return F.signum(value) * F.log1p(F.abs(value))
    return value


def _measured(value: float | None, column: str) -> float:
    """A quantile the validation pass measures of every usable feature (each has numbers)."""
    if value is None:
        raise RuntimeError(f"The validation pass measured no quantiles of the feature '{column}'.")
    return value


@dataclass(frozen=True)
class Treatment:
    """How one feature becomes a model input before scaling: the value a missing one gets,
    the IQR fences (None when not treated) and the transform ("none", "log", "signed-log")."""

    fill: float
    fences: tuple[float, float] | None
    transform: str


def _plan(
    report: ValidationReport, params: SegmentationParams
) -> tuple[dict[str, Treatment], dict[str, LogTransform], list[str]]:
    """Each feature's treatment from this data: the median fills, fences by the IQR rule.

    A log-transformed feature is not capped: the log already pulls its tail in, and capping
    would again make its top customers identical. Removal judges it on the log scale.
    """
    logged, notes = _transforms(report, params)
    plans = {}
    for column in report.features:
        p = report.profiles[column]
        transform = logged[column].transform if column in logged else "none"
        low, high, spread = _fences(p, transform)
        treated = params.outliers == "remove" or (params.outliers == "cap" and column not in logged)
        if treated and not spread:
            notes.append(f"'{column}': most values are equal, so no outliers were treated.")
        fences = (low, high) if treated and spread else None
        plans[column] = Treatment(float(_measured(p.median, column)), fences, transform)
    return plans, logged, notes


def apply_treatment(
    table: Table, plans: Mapping[str, Treatment], policy: str, remove: bool
) -> tuple[DataFrame, list[str], list[str]]:
    """The treatment as expressions, not yet run: fill, flag (and cap or remove) outliers,
    log-transform. Feature values come parsed from the cached table (`__n<column>`), so no
    text is parsed twice. Each fenced feature gets two flags, below (`__o<2j>`) and above
    (`__o<2j+1>`) its fences, which `measure_inputs` counts; under `remove` a customer outside
    any fence is marked `REMOVED`, and `kept` filters it out after that count."""
    df = table.df
    value_cols, model_cols, outlier_flags = [], [], []
    select = [quoted_column(c) for c in table.columns]
    for i, (column, plan) in enumerate(plans.items()):
        parsed = number_column(column)
        value = F.coalesce(
            F.col(parsed) if parsed in df.columns else number_expr(df, column),
            F.lit(plan.fill),
        )
        # The value in real units (after imputation) is what profiles and charts describe;
        # capping and the log transform only shape what the model sees.
        select.append(value.alias(f"__v{i}"))
        value_cols.append(f"__v{i}")
        model_value = None
        if plan.fences:
            low, high = plan.fences
            outlier_flags += [value < low, value > high]
            if policy == "cap":
                model_value = F.least(F.greatest(F.col(f"__v{i}"), F.lit(low)), F.lit(high))
        if plan.transform != "none":
            model_value = model_scale(F.col(f"__v{i}"), plan.transform)
        model_cols.append((f"__x{i}", model_value))
    prepared = df.select(*select, *[f.alias(f"__o{j}") for j, f in enumerate(outlier_flags)])
    if remove and outlier_flags:
        # Flagged, not yet filtered: `measure_inputs` counts the flags of every customer and
        # measures the kept ones in the same pass; `kept` then drops the removed.
        flags = [F.col(f"__o{j}") for j in range(len(outlier_flags))]
        prepared = prepared.withColumn(REMOVED, F.greatest(*flags) if len(flags) > 1 else flags[0])
    inputs = []
    for (name, expr), value_col in zip(model_cols, value_cols, strict=True):
        if expr is None:
            inputs.append(value_col)
        else:
            prepared = prepared.withColumn(name, expr)
            inputs.append(name)
    return prepared, value_cols, inputs


def _rfm_scores(report: ValidationReport, value_cols: Sequence[str]) -> RfmScores | None:
    """RFM scoring of the customers when Recency, Frequency and Spend are all features."""
    values = dict(zip(report.features, value_cols, strict=True))
    scored: dict[str, str] = {}
    cuts: dict[str, list[float]] = {}
    for role in RFM_ROLES:
        column = report.mapping.get(role)
        if column is None or column not in values:
            return None
        quintiles = report.profiles[column].quintiles
        if not quintiles:
            return None
        scored[role] = values[column]
        cuts[role] = list(quintiles)
    return RfmScores(scored, cuts)


def _standardized(column: str, mean: float | None, std: float | None) -> Column:
    """(x - mean) / standard deviation (the sample's, as Spark's StandardScaler); 0 when the
    feature no longer varies."""
    if not std:
        return F.lit(0.0)
    return (F.col(column) - F.lit(float(mean or 0.0))) / F.lit(float(std))


def standardize(
    prepared: DataFrame, inputs: Sequence[str], scaler: Sequence[tuple[float | None, float | None]]
) -> tuple[DataFrame, list[str]]:
    """The prepared table with each model input standardized (`__z<i>`), and those columns."""
    model_cols = [f"__z{i}" for i in range(len(inputs))]
    scaled = prepared.select(
        "*",
        *[
            _standardized(c, mean, std).alias(z)
            for c, z, (mean, std) in zip(inputs, model_cols, scaler, strict=True)
        ],
    )
    return scaled, model_cols


def number_column(column: str) -> str:
    """Name of the cached, parsed-as-number copy of an input column."""
    return f"__n_{column}"


@dataclass
class PreparedData:
    """The cleaned, scaled customer table, cached once and shared by every k fitted on it."""

    source: str
    table: Table
    report: ValidationReport
    scaled: DataFrame
    model_cols: list[str]  # the standardized features KMeans sees
    value_cols: list[str]
    rows_out: int
    repairs: Repairs
    model: dict[str, FeatureModel]  # per feature: the fill value, fences, log, mean and std
    cached: list[DataFrame]
    origin: TransactionReport | None = None  # how a customer table was built from an order log
    rfm: RfmScores | None = None  # with Recency, Frequency and Spend among the features

    @property
    def value_columns(self) -> dict[str, str]:
        """Each feature and the column holding it in real units: imputed, never capped or
        transformed, so that profiles describe the customers themselves."""
        return dict(zip(self.report.features, self.value_cols, strict=True))

    def release(self) -> None:
        """Free the cached table (a long-lived app must not accumulate cached data)."""
        unpersist(self.cached)


def load_input(
    spark: SparkSession, source: str, params: SegmentationParams, tracker: Progress
) -> tuple[Table, TransactionReport | None, list[str], list[DataFrame]]:
    """Read the input (building customers from an order log) and cache it with each chosen
    feature parsed as a number: the validation pass fills this cache, every later stage reads
    it, so the file is read once."""
    table, origin = load_customer_table(
        spark, source, params.load_options, params.transaction_roles or None, cache=True
    )
    cached = [table.df] if origin else []
    if origin:
        tracker.report(1.0, f"Built {origin.customers:,} customers from the order log")
    features = params.features or (TRANSACTION_FEATURES if origin else None)
    chosen = feature_columns(table.columns, features, params.column_mapping)
    parsed = table.df.select(
        "*", *[number_expr(table.df, c).alias(number_column(c)) for c in chosen]
    ).cache()
    cached.append(parsed)
    # replace, not a new Table: the analyst's missing ids must reach the run's validation.
    table = replace(table, df=parsed, names=table.columns)
    return table, origin, chosen, cached


def account(
    report: ValidationReport,
    plans: Mapping[str, Treatment],
    counts: Row,
    policy: str,
    transforms: list[LogTransform],
    notes: list[str],
    rows_removed: int,
) -> Repairs:
    """The typed account of what a run (or an assignment) did to the customers, from the plans
    and the counts of `measure_inputs`."""
    missing = {c: report.profiles[c].missing + report.profiles[c].non_numeric for c in plans}
    fenced = [(c, plan.fences) for c, plan in plans.items() if plan.fences]
    fences = [
        Fence(c, low, high, counts[f"o{2 * j}"], counts[f"o{2 * j + 1}"])
        for j, (c, (low, high)) in enumerate(fenced)
    ]
    return Repairs(
        filled_missing=missing,
        outliers={f.feature: f.below + f.above for f in fences},
        outlier_policy=policy,
        rows_removed=rows_removed,
        log_transformed=[t.feature for t in transforms],
        notes=notes,
        fills=[Fill(c, n, plans[c].fill) for c, n in missing.items() if n],
        fences=fences,
        transforms=transforms,
    )


def kept(prepared: DataFrame) -> DataFrame:
    """The customers the fit sees: without those `apply_treatment` marked for removal."""
    return prepared.where(~F.col(REMOVED)) if REMOVED in prepared.columns else prepared


def measure_inputs(prepared: DataFrame, fenced: int, inputs: Sequence[str], min_k: int) -> Row:
    """One pass: rows left, customers below (`o<2j>`) and above (`o<2j+1>`) the fences of each
    fenced feature (counted before any removal, so the account names whom it removed), and
    each kept model input's mean and standard deviation for the scaling."""
    keep = ~F.col(REMOVED) if REMOVED in prepared.columns else F.lit(True)
    counts = prepared.agg(
        F.count(F.when(keep, 1)).alias("rows"),
        *[F.sum(F.col(f"__o{j}").cast("int")).alias(f"o{j}") for j in range(2 * fenced)],
        *[F.avg(F.when(keep, F.col(c))).alias(f"mean{i}") for i, c in enumerate(inputs)],
        *[F.stddev_samp(F.when(keep, F.col(c))).alias(f"std{i}") for i, c in enumerate(inputs)],
    ).collect()[0]
    if counts["rows"] < min_k:
        raise InputError(
            f"After removing outliers only {counts['rows']} customers are left, fewer than the "
            f"{min_k} segments asked for. Use the 'cap' outlier policy or fewer segments."
        )
    return counts


def prepare(
    spark: SparkSession, source: str, params: SegmentationParams, tracker: Progress, min_k: int
) -> PreparedData:
    """Loading to scaling: read, validate, clean, assemble and standardize; cache the result."""
    cached: list[DataFrame] = []
    try:
        with tracker.stage("loading", "Reading the file"):
            table, origin, chosen, cached = load_input(spark, source, params, tracker)

        with tracker.stage("validating", "Checking columns and values"):
            numbers = {c: number_column(c) for c in chosen}
            features = params.features or (TRANSACTION_FEATURES if origin else None)
            report = validate(table, min_k, features, params.column_mapping, numbers)
            report.raise_for_errors()
            tracker.report(1.0, f"{report.rows:,} customers, {len(report.features)} features")

        with tracker.stage("preprocessing", "Filling missing values and treating outliers"):
            plans, transforms, notes = _plan(report, params)
            prepared, value_cols, inputs = apply_treatment(
                table, plans, params.outliers, remove=params.outliers == "remove"
            )
            rfm = _rfm_scores(report, value_cols)
            fences = {c: plan.fences for c, plan in plans.items() if plan.fences}

        with tracker.stage("features", "Counting customers and measuring each feature"):
            counts = measure_inputs(prepared, len(fences), inputs, min_k)

        with tracker.stage("scaling", "Standardizing features (mean 0, standard deviation 1)"):
            scaler = [(counts[f"mean{i}"], counts[f"std{i}"]) for i in range(len(inputs))]
            scaled, model_cols = standardize(kept(prepared), inputs, scaler)
    except BaseException:
        unpersist(cached)
        raise
    repairs = account(
        report,
        plans,
        counts,
        params.outliers,
        list(transforms.values()),
        (origin.messages() if origin else []) + notes,
        rows_removed=report.rows - counts["rows"],
    )
    model = {
        column: FeatureModel(
            fill=report.profiles[column].median,
            fences=list(fences[column]) if column in fences else None,
            transform=plans[column].transform,
            mean=counts[f"mean{i}"],
            std=counts[f"std{i}"],
        )
        for i, column in enumerate(report.features)
    }
    return PreparedData(
        source,
        table,
        report,
        scaled,
        model_cols,
        value_cols,
        counts["rows"],
        repairs,
        model,
        cached,
        origin,
        rfm,
    )
