"""The manifest of a results folder: what a run read, chose, repaired, fitted and measured.

One dataclass per part, so the engine writes and the pages read attributes, never string keys.
JSON goes in and out here only (`to_json`, `read_manifest`, `read_sweep_manifest`); dacite
turns the JSON back into the dataclasses and refuses a file whose fields have the wrong types.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import dacite

from segmentation.errors import InputError
from segmentation.order_report import TransactionReport
from segmentation.params import SegmentationParams
from segmentation.wording import counted as _count
from segmentation.wording import listed as _listed

MANIFEST = "manifest.json"
T = TypeVar("T")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class InputFile:
    """The file a run read: where it was, its fingerprint and the columns' roles."""

    name: str
    location: str
    format: str
    bytes: int | None
    sha256: str | None
    rows: int
    columns: list[str]
    mapping: dict[str, str]  # role (customer_id, spend, ...) -> column


@dataclass(frozen=True)
class Fill:
    """One feature's missing (or unreadable) values, filled with one value (the median)."""

    feature: str
    customers: int
    value: float


@dataclass(frozen=True)
class Fence:
    """One feature's IQR fences in real units and the customers below and above them, who sit
    at the cap (policy "cap") or were removed (policy "remove")."""

    feature: str
    low: float
    high: float
    below: int
    above: int


@dataclass(frozen=True)
class LogTransform:
    """A feature the model sees on a log scale, which one and why."""

    feature: str
    transform: str  # "log" or "signed-log" (see FeatureModel.transform)
    skewness: float | None
    negatives: int
    chosen_by: str  # "automatic" (SKEWED, FEW_NEGATIVES), "analyst", or "model" (an assignment)


@dataclass(frozen=True)
class Repairs:
    """What cleaning did to the customers, and the notes the analyst reads about it. The lists
    are the typed account of each repair (empty in results written before they were kept)."""

    filled_missing: dict[str, int]
    outliers: dict[str, int]
    outlier_policy: str
    rows_removed: int
    log_transformed: list[str]
    notes: list[str]
    fills: list[Fill] = field(default_factory=list)
    fences: list[Fence] = field(default_factory=list)
    transforms: list[LogTransform] = field(default_factory=list)

    def sentences(self) -> list[str]:
        """Every typed repair (fills, transforms, fences, removals) in one plain sentence; with
        the notes, `RunBasics.told` sorts what Results and the command line say."""
        lines = [
            f"Filled {_count(f.customers, 'missing value')} of '{f.feature}' with the median, "
            f"{_number(f.value)}."
            for f in self.fills
        ]
        # Under "remove" a logged feature is fenced on its log scale: its negatives may go.
        judged = {f.feature for f in self.fences} if self.outlier_policy == "remove" else set()
        lines += [_transform_sentence(t, t.feature in judged) for t in self.transforms]
        outside = [f for f in self.fences if f.below or f.above]
        lines += [_fence_sentence(f, self.outlier_policy) for f in outside]
        if inside := [f"'{f.feature}'" for f in self.fences if f not in outside]:
            lines.append(
                f"No customer lies outside the IQR fences of {_listed(inside)}: none "
                f"{'capped' if self.outlier_policy == 'cap' else 'removed'} there."
            )
        if self.rows_removed:
            lines.append(
                f"{_count(self.rows_removed, 'customer')} outside the IQR fences "
                f"{'were' if self.rows_removed != 1 else 'was'} removed before the fit."
            )
        return lines


@dataclass(frozen=True)
class Told:
    """What a run tells the analyst, sorted as Results and the command line show it."""

    repaired: list[str]  # every repair, an order log's left-out lines among them
    notes: list[str]  # what else to know: validation warnings, segments, how the log was read
    warnings: list[str]  # what asks for action, e.g. an id that is probably a till account


TRANSFORM_FORMULAS = {
    "none": "the value",
    "log": "log(1 + x)",
    "signed-log": "sign(x)·log(1 + |x|)",
}
_CHOSEN = {
    "automatic": "chosen automatically: skewness {skew} above 1",
    "analyst": "chosen in the run's settings",
    "model": "as the saved segmentation does",
}


def _transform_sentence(t: LogTransform, fenced: bool) -> str:
    skew = "n/a" if t.skewness is None else f"{t.skewness:.1f}"
    why = _CHOSEN[t.chosen_by].format(skew=skew)
    if t.negatives:  # plain log only in an assignment to a model saved without negatives
        fate = "stay below zero" if t.transform == "signed-log" else "count as 0"
        fate += " unless outside its fences, below" if fenced else ""
        why += f"; its {_count(t.negatives, 'negative value')} {fate}"
    return (
        f"The model sees '{t.feature}' as {TRANSFORM_FORMULAS[t.transform]} ({why}), so its top "
        "customers stay apart instead of sharing a cap; it is not capped."
    )


def _fence_sentence(f: Fence, policy: str) -> str:
    fences = f"its IQR fences {_number(f.low)} and {_number(f.high)}"
    if policy == "remove":
        return (
            f"'{f.feature}': {_count(f.below, 'customer')} below and {f.above:,} above {fences} "
            "were removed."
        )
    return (
        f"'{f.feature}' is capped for the model at {fences}: {_count(f.below, 'customer')} "
        f"{'sit' if f.below != 1 else 'sits'} at the lower cap, {f.above:,} at the upper."
    )


def _number(value: float) -> str:
    """A figure as the analyst reads it: thousands separated, at most two decimals."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class FeatureModel:
    """How one feature becomes a model input: fill, cap at the fences, transform, standardize."""

    fill: float | None
    fences: list[float] | None
    mean: float
    std: float
    # "none", "log" (log(1 + x), negatives as 0) or "signed-log" (sign(x)·log(1 + |x|), for a
    # feature with negatives); older manifests say only `log: true/false` (see _upgraded)
    transform: str = "none"

    @property
    def log(self) -> bool:
        """Whether the model sees this feature on a log scale (plain or signed)."""
        return self.transform != "none"


@dataclass(frozen=True)
class Model:
    """Everything needed to place a customer: per-feature treatment and the segments' centres
    (standardized, keyed by segment number)."""

    features: dict[str, FeatureModel]
    centres: dict[str, list[float]]


@dataclass(frozen=True)
class Quality:
    """How well one k separates the customers, measured over every customer."""

    silhouette: float | None
    silhouette_kind: str
    within_ss: float | None
    calinski_harabasz: float | None
    davies_bouldin: float | None
    k_requested: int
    segments_found: int
    sizes: dict[int, int] = field(default_factory=dict)  # segment number -> customers
    fitted_on: int | None = None  # None in results written before centres came from a sample
    fit_kind: str | None = None
    iterations: int | None = None  # Lloyd's iterations (None: written before, or not fitted)
    converged: bool | None = None  # False when the iteration cap stopped the fit

    @property
    def convergence_warning(self) -> str | None:
        """What the analyst is told when the iteration cap, not convergence, ended the fit."""
        if self.converged is not False:
            return None
        return (
            f"KMeans for k={self.k_requested} stopped at its cap of {self.iterations} "
            f"iteration{'' if self.iterations == 1 else 's'} "
            "before its centres settled, so these segments may be slightly worse than a "
            "converged fit's. Run it again with a higher cap (--max-iter on the command line)."
        )


@dataclass(frozen=True)
class SegmentSummary:
    """One segment as the job history and the manifest's reader see it."""

    segment: int
    name: str
    reason: str
    size: int
    share: float


@dataclass(frozen=True)
class Files:
    """The files of a results folder, relative to it (a k of a sweep shares the sweep's
    customers.csv, one folder up)."""

    customers: str
    segments: str
    categorical_mix: str
    chart_sample: str
    rfm_overlap: str | None = None
    spark_model: str | None = None  # Spark ML's KMeansModel, when fitted on every customer


@dataclass(frozen=True)
class ModelSource:
    """The saved segmentation a file's customers were placed in (an assignment, not a fit)."""

    folder: str  # its results folder
    k: int
    created_at: str  # when it was made
    input_name: str  # the file it was made from


@dataclass(frozen=True, kw_only=True)
class RunBasics:
    """What a single run and a sweep share: the input, the choices, the cleaning."""

    format_version: int = FORMAT_VERSION
    created_at: str
    input: InputFile
    params: SegmentationParams
    features: list[str]
    categorical: list[str]
    rows_in: int
    rows_out: int
    repairs: Repairs
    warnings: list[str]
    versions: dict[str, str | None]
    timings: dict[str, float]
    transactions: TransactionReport | None = None  # the order log the customers were built from

    def told(self) -> Told:
        """The repairs apart from the notes and from what needs action: one sorting for the
        Results page and the command line. The validation warnings that were repairs to be are
        not in `warnings` (results.py), so each repair is said once."""
        origin = self.transactions
        alarms = origin.warnings() if origin else []
        left_out = origin.repairs() if origin else []
        notes = self.repairs.notes
        return Told(
            repaired=self.repairs.sentences() + [n for n in notes if n in left_out],
            notes=self.warnings + [n for n in notes if n not in left_out and n not in alarms],
            warnings=[n for n in notes if n in alarms],
        )

    def basics(self) -> dict[str, Any]:
        """The shared fields, to build a sweep's manifest from one of its k."""
        return {f.name: getattr(self, f.name) for f in fields(RunBasics)}


@dataclass(frozen=True, kw_only=True)
class Manifest(RunBasics):
    """One segmentation: a single run, or one k of a sweep (`sweep_k`)."""

    metrics: Quality
    segments: list[SegmentSummary]
    files: Files
    model: Model | None = None  # None in results written before the model was kept
    rfm: dict[str, Any] | None = None  # RFM cut points and rule, when the run scored customers
    sweep_k: int | None = None
    customer_columns: dict[str, str] | None = None  # in a sweep: segment columns of this k
    model_source: ModelSource | None = None  # set when customers were assigned, not fitted

    @property
    def k(self) -> int:
        """The k of this segmentation (one k of a sweep, or the single run's)."""
        return self.sweep_k or self.params.k


@dataclass(frozen=True)
class SweepFiles:
    customers: str | None  # written once every k is measured
    sweep: str
    splits: str
    per_k: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class SweepManifest(RunBasics):
    """A k sweep: which k are measured, their figures and, once complete, the suggestion."""

    kind: str = "sweep"
    complete: bool
    k_values: list[int]
    k_done: list[int]
    sweep: list[dict[str, Any]]  # one row of sweep.csv per k
    files: SweepFiles
    suggested_k: int | None = None
    suggestion: str | None = None
    opinions: dict[str, int] | None = None  # what each measure would choose
    metrics: Quality | None = None  # the suggested k's figures, for the job history


def plain(value: Any) -> Any:
    """JSON-ready form of any manifest part: dataclasses as objects, dates as ISO text, NaN and
    infinity as null."""
    if isinstance(value, SegmentationParams):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(manifest: RunBasics) -> str:
    """The manifest as the JSON file a results folder holds."""
    return json.dumps(plain(manifest), indent=2)


def _upgraded(feature: dict[str, Any]) -> dict[str, Any]:
    """A feature's model as this version reads it: older manifests say `log: true/false`, which
    meant log(1 + x)."""
    if "transform" in feature:
        return feature
    return {**feature, "transform": "log" if feature.get("log") else "none"}


_CONFIG = dacite.Config(
    type_hooks={
        FeatureModel: _upgraded,
        SegmentationParams: SegmentationParams.from_dict,
        date: date.fromisoformat,
        dict[int, int]: lambda sizes: {int(k): int(v) for k, v in sizes.items()},
    },
    cast=[float],
)


def _typed(kind: type[T], folder: Path, data: dict[str, Any]) -> T:
    try:
        return dacite.from_dict(kind, data, _CONFIG)
    except dacite.DaciteError as error:
        raise InputError(
            f"The results in {folder} were written by another version of the app and cannot "
            f"be read ({error}); run the segmentation again."
        ) from error


def read_manifest(folder: Path) -> Manifest:
    """The manifest of one segmentation's results folder."""
    return _typed(Manifest, folder, json.loads((folder / MANIFEST).read_text()))


def read_sweep_manifest(folder: Path) -> SweepManifest | None:
    """The manifest of a sweep's folder; None when the folder holds one segmentation."""
    data = json.loads((folder / MANIFEST).read_text())
    if data.get("kind") != "sweep":
        return None
    return _typed(SweepManifest, folder, data)
