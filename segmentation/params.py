"""What the analyst chose for a run, checked once, in the form the job store and manifest keep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date

from segmentation.errors import InputError
from segmentation.loading import LoadOptions

OUTLIER_POLICIES = ("cap", "remove", "none")
FIT_KINDS = ("sample", "full")  # centres from a driver sample, or Spark ML on every customer


MIN_K, MAX_K = 2, 30


MAX_FEATURES = 50


@dataclass(frozen=True)
class SegmentationParams:
    """What the analyst chose; every field has the default a first run should use."""

    k: int = 4
    features: tuple[str, ...] | None = None  # None: Age, Spend, Recency, Frequency
    seed: int = 42
    max_iter: int = 300  # a cap, not a budget: Lloyd stops when the centres settle
    fit: str = "sample"  # one of FIT_KINDS
    outliers: str = "cap"
    log_features: tuple[str, ...] | None = None  # None: every skewed, non-negative feature
    column_mapping: Mapping[str, str] = field(default_factory=dict)
    k_range: tuple[int, int] | None = None  # sweep every k in this range instead of one k
    stability_seeds: int = 0  # extra seeds per k in a sweep, to see which k gives stable segments
    input_kind: str = "auto"  # "customers", "transactions" (an order log) or "auto"
    transaction_roles: Mapping[str, str] = field(default_factory=dict)  # order-log columns
    date_format: str | None = None  # of an order log: iso, yyyymmdd, day-first, month-first
    reference_date: str | None = None  # ISO date Recency is counted to (default: day after last)
    attributes: str | None = None  # a customer attributes table joined to an order log
    missing_ids: tuple[str, ...] = ()  # customer ids read as missing (a till or guest account)

    @property
    def load_options(self) -> LoadOptions:
        return LoadOptions(
            self.input_kind,
            self.date_format,
            self.reference_date,
            self.attributes,
            self.missing_ids,
        )

    def __post_init__(self) -> None:
        if not MIN_K <= self.k <= MAX_K:
            raise InputError(
                f"The number of segments must be between {MIN_K} and {MAX_K}; got {self.k}."
            )
        if self.outliers not in OUTLIER_POLICIES:
            raise InputError(
                f"Outlier policy '{self.outliers}' is unknown; use one of {', '.join(OUTLIER_POLICIES)}."
            )
        if self.features and len(self.features) > MAX_FEATURES:
            raise InputError(
                f"{len(self.features)} features were chosen; at most {MAX_FEATURES} can be used. "
                "Pick the columns that describe how customers buy."
            )
        if self.max_iter < 1:
            raise InputError("The number of KMeans iterations must be at least 1.")
        if self.fit not in FIT_KINDS:
            raise InputError(f"Fit '{self.fit}' is unknown; use one of {', '.join(FIT_KINDS)}.")
        if self.k_range is not None:
            object.__setattr__(self, "k_range", _checked_k_range(self.k_range))
        if not 0 <= self.stability_seeds <= 10:
            raise InputError("The stability check takes 0 to 10 extra seeds per k.")
        object.__setattr__(self, "features", tuple(self.features) if self.features else None)
        if self.log_features is not None:
            object.__setattr__(self, "log_features", tuple(self.log_features))
        object.__setattr__(self, "column_mapping", dict(self.column_mapping))
        object.__setattr__(self, "transaction_roles", dict(self.transaction_roles))
        object.__setattr__(self, "missing_ids", missing_id_list(self.missing_ids))
        if self.reference_date:
            _check_reference_date(self.reference_date)

    def to_dict(self) -> dict:
        """JSON-ready form for the manifest and the job store."""
        data = asdict(self)
        data["features"] = list(self.features) if self.features else None
        data["log_features"] = None if self.log_features is None else list(self.log_features)
        data["k_range"] = list(self.k_range) if self.k_range else None
        data["missing_ids"] = list(self.missing_ids)
        return data

    @property
    def k_values(self) -> list[int]:
        """The k of a single run, or every k of a sweep."""
        return list(range(self.k_range[0], self.k_range[1] + 1)) if self.k_range else [self.k]

    @classmethod
    def from_dict(cls, data: Mapping) -> SegmentationParams:
        """Inverse of to_dict (unknown keys are ignored so old jobs still load)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def missing_id_list(ids: Sequence[str] | str) -> tuple[str, ...]:
    """Ids to treat as missing, from a list or comma-separated text ('99999, WALKIN'): trimmed,
    blanks and repeats dropped, in the order given."""
    items = ids.split(",") if isinstance(ids, str) else ids
    return tuple(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))


def _checked_k_range(k_range: tuple[int, int]) -> tuple[int, int]:
    """A range of k as two integers, low to high, within MIN_K..MAX_K."""
    low, high = (int(v) for v in k_range)
    if not MIN_K <= low < high <= MAX_K:
        raise InputError(
            f"A range of k must go from {MIN_K} to at most {MAX_K}, low to high; got {low}-{high}."
        )
    return low, high


def _check_reference_date(reference_date: str) -> None:
    """Refuse a reference date that is not an ISO date."""
    try:
        date.fromisoformat(str(reference_date))
    except ValueError as exc:
        raise InputError(
            f"The reference date '{reference_date}' is not a date like 2024-12-31."
        ) from exc
