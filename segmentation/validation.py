"""The validation report an analyst reads before any clustering.

One Spark pass profiles every column (profile_table); small rules turn those plain profiles and
counts into the report's problems, so each rule is tested without Spark.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pyspark.sql import functions as F

from segmentation.columns import (
    DEFAULT_FEATURE_ROLES,
    ROLE_LABELS,
    closest_columns,
    detect_mapping,
    normalise,
)
from segmentation.errors import InputError
from segmentation.measurement import SKETCH_K
from segmentation.reading import (
    MALFORMED,
    RaggedRows,
    Table,
    customer_id_expr,
    id_as_written,
    missing_expr,
    missing_sql,
    number_expr,
    number_sql,
    ragged_aggregates,
    ragged_rows,
)
from segmentation.spark_engine import engine_failure
from segmentation.sql import quoted

MAX_CATEGORIES = 50
EXACT_DISTINCT_ROWS = 100_000  # up to this many rows, distinct values are counted, not estimated
QUINTILES = (0.2, 0.4, 0.6, 0.8)  # the cut points of RFM scores
# Of each feature, from one sketch: quartiles for the outlier fences and the imputation, quintiles.
QUANTILES = (0.2, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8)
# Skewness above 1 is the usual mark of a highly skewed feature; spend and order counts of
# real shops lie far above it (a public CD shop's log: 17.7 and 10.5).
SKEWED = 1.0
# Up to this share of negative values a skewed feature is still a positive quantity with a few
# refunds or corrections (a gift shop's log: 9 of 4,300 customers); more, and it is a quantity
# that is often negative (a balance, a profit), which the analyst should choose to log.
FEW_NEGATIVES = 0.05
NUMERIC_SHARE = 0.5  # a column is numeric when most of its values are numbers (the rest: warned)
# '12,50' or '1.550,00': a decimal comma, which number_expr does not read ('1,550' is ambiguous)
_DECIMAL_COMMA = re.compile(r"[+-]?\d{1,3}(\.\d{3})*,\d+|[+-]?\d+,(\d{1,2}|\d{4,})")


@dataclass
class ColumnProfile:
    """What one pass over the data found in a column."""

    name: str
    kind: str  # "numeric", "text" or "empty"
    missing: int
    non_numeric: int
    negatives: int
    minimum: float | None
    maximum: float | None
    distinct: int | None  # approximate unless distinct_exact; not counted for features
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    skewness: float | None = None
    quintiles: list[float] | None = None  # 20th, 40th, 60th and 80th percentiles (RFM scores)
    bad_examples: list[str] = field(default_factory=list)
    distinct_exact: bool = False  # counted (a small table, or the id column), not estimated


@dataclass
class Problem:
    """One finding: an error blocks the job, a warning explains a repair."""

    level: str  # "error" or "warning"
    message: str
    column: str | None = None
    # A repair the run's typed account (manifest.Repairs) says again once it is made, so only
    # the Upload page, before a run, shows this warning.
    repair: bool = False


@dataclass
class ValidationReport:
    """Everything checked before clustering: sizes, mapping, per-column findings, problems."""

    source: str
    rows: int
    columns: list[str]
    mapping: dict[str, str]
    features: list[str]
    categorical: list[str]
    profiles: dict[str, ColumnProfile]
    problems: list[Problem]
    duplicate_ids: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def id_column(self) -> str | None:
        return self.mapping.get("customer_id")

    @property
    def numeric_columns(self) -> list[str]:
        """Columns that can be features (the id column excluded)."""
        return [
            c for c in self.columns if self.profiles[c].kind == "numeric" and c != self.id_column
        ]

    def remapped(self, overrides: Mapping[str, str]) -> ValidationReport:
        """This report with the analyst's choice of column per role ('' for none): what the
        Upload page offers as features before it validates again with that choice."""
        return replace(self, mapping=detect_mapping(self.columns, overrides))

    def default_features(self) -> list[str]:
        """What to segment on unless the analyst chooses: the numeric Age, Spend, Recency and
        Frequency columns that were found."""
        numeric = self.numeric_columns
        return [self.mapping[r] for r in DEFAULT_FEATURE_ROLES if self.mapping.get(r) in numeric]

    @property
    def missing_roles(self) -> list[Problem]:
        """Problems that say a default feature's column was not found: hints, since the analyst
        can map a column to it or choose other features."""
        labels = {ROLE_LABELS[r] for r in DEFAULT_FEATURE_ROLES}
        return [p for p in self.errors if p.column in labels]

    @property
    def blocking(self) -> list[Problem]:
        """The errors that are not about a missing default feature."""
        return [p for p in self.errors if p not in self.missing_roles]

    def raise_for_errors(self) -> None:
        """Stop the job with every error in one message the analyst can act on."""
        if self.errors:
            raise InputError(" ".join(p.message for p in self.errors))

    def column_rows(self) -> list[dict]:
        """One row per column for the report table in the UI."""
        roles = {c: ROLE_LABELS[r] for r, c in self.mapping.items()}
        rows = []
        for name in self.columns:
            p = self.profiles[name]
            rows.append(
                {
                    "column": name,
                    "role": roles.get(name, "feature" if name in self.features else ""),
                    "type": p.kind,
                    "missing": p.missing,
                    "not numbers": p.non_numeric if p.kind == "numeric" else None,
                    "negatives": p.negatives if p.kind == "numeric" else None,
                    "min": p.minimum,
                    "max": p.maximum,
                    "distinct": _distinct_text(p),
                }
            )
        return rows

    def to_dict(self) -> dict:
        """JSON-ready form for the manifest."""
        data = asdict(self)
        data["profiles"] = {k: asdict(v) for k, v in self.profiles.items()}
        return data


def feature_columns(
    columns: Sequence[str], features: Sequence[str] | None, overrides: Mapping[str, str] | None
) -> list[str]:
    """The input columns that the requested (or default) features name, as far as they exist."""
    try:
        return _resolve_features(features, columns, detect_mapping(columns, overrides))[0]
    except InputError:  # a bad override: validate() reports it
        return []


def _resolve_features(
    requested: Sequence[str] | None, columns: Sequence[str], mapping: dict[str, str]
) -> tuple[list[str], list[Problem]]:
    problems: list[Problem] = []
    features: list[str] = []
    if requested:
        by_norm = {normalise(c): c for c in columns}
        by_label = {normalise(ROLE_LABELS[r]): c for r, c in mapping.items()}
        for name in requested:
            column = (
                name
                if name in columns
                else by_norm.get(normalise(name)) or by_label.get(normalise(name))
            )
            if column is None:
                problems.append(_missing_column(name, columns, taken=list(mapping.values())))
            elif column not in features:
                features.append(column)
        return features, problems
    for role in DEFAULT_FEATURE_ROLES:
        if role in mapping:
            features.append(mapping[role])
        else:
            problems.append(
                _missing_column(
                    ROLE_LABELS[role], columns, default=True, taken=list(mapping.values())
                )
            )
    return features, problems


def _missing_column(
    name: str, columns: Sequence[str], default: bool = False, taken: Sequence[str] = ()
) -> Problem:
    close = closest_columns(name, columns, taken=taken)
    offer = (
        f" Did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else f" The file has: {', '.join(columns[:12])}{' …' if len(columns) > 12 else ''}."
    )
    todo = (
        " Rename that column, map it to this role on the Upload page, or choose the features "
        "to use (command line: --features)."
        if default
        else " Pick features from the file's numeric columns."
    )
    what = f"No '{name}' column was found" + (" (a default feature)" if default else "")
    return Problem("error", f"{what}.{offer}{todo}", column=name)


def _distinct_text(profile: ColumnProfile) -> str | None:
    """A column's distinct values for the report table: exact ('4,338') or 'about 4,105'."""
    if profile.distinct is None:
        return None
    return f"{profile.distinct:,}" if profile.distinct_exact else f"about {profile.distinct:,}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"


def quantiles_of(values: str) -> str:
    """SQL text of a numeric column's quantiles at QUANTILES (null when it has no values), from a
    KLL sketch: rank error about 0.05%, a third of percentile_approx's cost."""
    sketch = f"kll_sketch_agg_double({values}, {SKETCH_K})"
    points = ", ".join(f"{q}D" for q in QUANTILES)
    return (
        f"CASE WHEN count({values}) > 0 THEN "
        f"kll_sketch_get_quantile_double({sketch}, array({points})) END"
    )


BadValue = tuple[str, str | None]  # a value that is not a number, and its customer's id


@dataclass
class TableProfile:
    """What the one pass over a table found: its rows, each column's profile, and every
    aggregate it counted (ragged rows' counts among them)."""

    rows: int
    profiles: dict[str, ColumnProfile]
    counted: dict[str, Any]


def validate(
    table: Table,
    k: int,
    features: Sequence[str] | None = None,
    overrides: Mapping[str, str] | None = None,
    numbers: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Check a loaded table in one Spark pass and say what blocks clustering or will be repaired.

    `numbers` names columns of the table that already hold an input column parsed as a number
    (number_expr), so the pass does not parse it twice.
    """
    columns = table.columns
    mapping = detect_mapping(columns, overrides)
    chosen, problems = _resolve_features(features, columns, mapping)
    id_column = mapping.get("customer_id")
    found = profile_table(table, chosen, numbers or {}, id_column)
    rows, profiles = found.rows, found.profiles
    if rows == 0:
        return ValidationReport(
            table.format.describe(), 0, columns, mapping, [], [], profiles, [no_rows_problem()]
        )
    problems += row_count_problems(rows, k)

    examples = _bad_values_of(table, text_features(chosen, profiles, id_column), id_column)
    usable, refused = feature_problems(chosen, profiles, rows, id_column, examples)
    problems += refused
    problems += nothing_to_segment_problems(chosen, usable, problems)

    repaired = [c for c in usable if profiles[c].non_numeric]
    examples.update(_bad_values_of(table, repaired, id_column))
    for column in repaired:
        profiles[column].bad_examples = _quoted(examples[column])
    problems += repair_problems([profiles[c] for c in usable], examples, rows)

    duplicates = _checked_ids(table, id_column, profiles, rows) if id_column else None
    if id_column and duplicates:
        problems += placeholder_id_problems(id_column, duplicates.placeholders)
        problems += duplicate_id_problems(id_column, duplicates.repeated, duplicates.examples)
    # How the file was laid out comes first: it can explain the findings about values.
    ragged = ragged_rows(table, found.counted if MALFORMED in table.df.columns else None)
    problems[:0] = ragged_problems(ragged) + header_problems(
        columns, table.format.renamed, profiles, rows, chosen
    )
    return ValidationReport(
        source=table.format.describe(),
        rows=rows,
        columns=columns,
        mapping=mapping,
        features=usable,
        categorical=categorical_columns(columns, profiles, id_column),
        profiles=profiles,
        problems=problems,
        duplicate_ids=duplicates.repeated if duplicates else 0,
    )


# ---- the pass over the data ---------------------------------------------------------------


def profile_table(
    table: Table,
    chosen: Sequence[str],
    numbers: Mapping[str, str],
    id_column: str | None = None,
) -> TableProfile:
    """Profile every column in one Spark pass (quartiles for the `chosen` features, distinct
    counts for the other columns); the rules below work on its plain values. The customer id
    column's missing values include placeholders ('(blank)', 'guest', …: customer_id_expr)."""
    counted = _aggregate(table, chosen, numbers, id_column)
    return TableProfile(counted["__rows"], column_profiles(counted, table.columns), counted)


def _aggregate(
    table: Table, chosen: Sequence[str], numbers: Mapping[str, str], id_column: str | None
) -> dict[str, Any]:
    """Per column `i`: missing (m), non-numeric (x) and negative (n) counts, minimum (lo) and
    maximum (hi); skewness (s) and quantiles (q) of features, distinct values (d) of others."""
    df = table.df
    columns = table.columns
    # Compute each column's missing flag and number once, then aggregate plain columns:
    # far cheaper to plan and compile than repeating the parsing expressions in every aggregate.
    # Written as SQL text: one call to the JVM per expression, not one per operation.
    parsed = df.selectExpr(
        *[
            expr
            for i, column in enumerate(columns)
            for expr in (
                f"{missing_sql(df, column)} AS m{i}",
                f"{quoted(numbers[column]) if column in numbers else number_sql(df, column)} AS v{i}",
                f"{quoted(column)} AS r{i}",
            )
        ],
        *[quoted(c) for c in df.columns if c == MALFORMED],
    )
    if id_column in columns:
        i = columns.index(id_column)
        parsed = parsed.withColumn(
            f"m{i}", customer_id_expr(parsed, f"r{i}", table.missing_ids).isNull()
        )
    aggs = ["count(1) AS __rows"]
    sketches, others = [], []
    for i, column in enumerate(columns):
        aggs += [
            f"sum(CAST(m{i} AS INT)) AS m{i}",
            f"sum(CAST(NOT m{i} AND v{i} IS NULL AS INT)) AS x{i}",
            f"sum(CAST(v{i} < 0 AS INT)) AS n{i}",
            f"min(v{i}) AS lo{i}",
            f"max(v{i}) AS hi{i}",
        ]
        if column in chosen:  # features need quartiles; min and max show a constant column
            aggs.append(f"skewness(v{i}) AS s{i}")
            sketches.append(f"{quantiles_of(f'v{i}')} AS q{i}")
        else:  # other columns: how many distinct values, to find categories
            others.append(i)
    try:
        # Sums, minima and maxima compile to fast code, which sketches turn off for a whole
        # aggregation: two passes, and the second reads what the first one cached.
        counted = parsed.agg(*map(F.expr, aggs), *ragged_aggregates(table)).collect()[0].asDict()
        # A small table's distinct values are counted exactly (an estimate can say 3 for 4).
        counted["__exact_distinct"] = counted["__rows"] <= EXACT_DISTINCT_ROWS
        count = (
            "count(DISTINCT r{0})" if counted["__exact_distinct"] else "approx_count_distinct(r{0})"
        )
        sketches += [f"{count.format(i)} AS d{i}" for i in others]
        return {**counted, **parsed.selectExpr(*sketches).collect()[0].asDict()}
    except Exception as exc:
        if engine_failure(exc):  # not the file's fault: the job's error says what happened
            raise
        raise InputError(
            "The file could not be read as a table: " + str(exc).strip().splitlines()[0][:200],
            hint="Check that it is a CSV or Parquet export of the customer table.",
        ) from exc


def column_profiles(counted: Mapping[str, Any], columns: Sequence[str]) -> dict[str, ColumnProfile]:
    """Each column's profile from the aggregates of the pass (see _aggregate)."""
    rows = counted["__rows"]
    profiles: dict[str, ColumnProfile] = {}
    for i, column in enumerate(columns):
        missing = counted[f"m{i}"] or 0  # sums over no rows are null
        non_numeric = counted[f"x{i}"] or 0
        quantiles = dict(zip(QUANTILES, counted.get(f"q{i}") or [], strict=False))
        profiles[column] = ColumnProfile(
            name=column,
            kind=column_kind(rows - missing, non_numeric),
            missing=missing,
            non_numeric=non_numeric,
            negatives=counted[f"n{i}"] or 0,
            minimum=counted[f"lo{i}"],
            maximum=counted[f"hi{i}"],
            distinct=counted.get(f"d{i}"),
            distinct_exact=bool(counted.get("__exact_distinct")),
            q1=quantiles.get(0.25),
            median=quantiles.get(0.5),
            q3=quantiles.get(0.75),
            quintiles=[quantiles[q] for q in QUINTILES] if quantiles else None,
            skewness=counted.get(f"s{i}"),
        )
    return profiles


def column_kind(present: int, non_numeric: int) -> str:
    """'empty' without values, 'numeric' when most values are numbers, else 'text'."""
    if present == 0:
        return "empty"
    return "numeric" if non_numeric <= (1 - NUMERIC_SHARE) * present else "text"


# ---- rules: plain profiles and counts in, problems out ------------------------------------


def no_rows_problem() -> Problem:
    """The file has a header and nothing else."""
    return Problem(
        "error",
        "The file has a header but no customer rows. Export the table again with its data.",
    )


def row_count_problems(rows: int, k: int) -> list[Problem]:
    """An error when there are fewer customers than segments asked for."""
    if rows >= k:
        return []
    return [
        Problem(
            "error",
            f"The file has {rows} customer row{'s' * (rows != 1)}, fewer than the {k} segments "
            "asked for. Upload more customers"
            + (f" or choose at most {rows} segments." if rows >= 2 else "."),
        )
    ]


def text_features(
    chosen: Sequence[str], profiles: Mapping[str, ColumnProfile], id_column: str | None
) -> list[str]:
    """The chosen features that hold text, whose refusal shows a few of their values."""
    return [c for c in chosen if c != id_column and profiles[c].kind == "text"]


def feature_problems(
    chosen: Sequence[str],
    profiles: Mapping[str, ColumnProfile],
    rows: int,
    id_column: str | None,
    examples: Mapping[str, list[BadValue]],
) -> tuple[list[str], list[Problem]]:
    """The chosen features that can be clustered on, and why each other one cannot.

    `examples` holds values that are not numbers of each text feature (text_features).
    """
    usable: list[str] = []
    problems: list[Problem] = []
    for column in chosen:
        problem = feature_problem(profiles[column], rows, id_column, examples.get(column, []))
        if problem is None:
            usable.append(column)
        else:
            problems.append(problem)
    return usable, problems


def feature_problem(
    profile: ColumnProfile, rows: int, id_column: str | None, examples: list[BadValue]
) -> Problem | None:
    """Why a chosen feature cannot be one (the customer id, no values, text) or is left out
    (one value for every customer); None when it can be clustered on."""
    column = profile.name
    if column == id_column:
        return Problem("error", f"'{column}' is the customer id; it cannot be a feature.", column)
    if profile.kind == "empty":
        return Problem(
            "error",
            f"Column '{column}' has no values at all; it cannot be a feature. "
            "Fill it in or choose other features.",
            column,
        )
    if profile.kind == "text":
        return text_feature_problem(profile, rows, examples)
    if profile.minimum == profile.maximum and rows > 1:
        return constant_column_problem(profile)
    return None


def text_feature_problem(profile: ColumnProfile, rows: int, examples: list[BadValue]) -> Problem:
    """A feature whose values are mostly not numbers, with a few of them."""
    return Problem(
        "error",
        f"Column '{profile.name}' holds text, not numbers ({profile.non_numeric:,} of "
        f"{rows - profile.missing:,} values, e.g. {', '.join(_quoted(examples)) or '–'}); it "
        "cannot be a feature. "
        + (_decimal_comma_hint(examples) or "Choose numeric columns, or fix the export."),
        profile.name,
    )


def constant_column_problem(profile: ColumnProfile) -> Problem:
    """A feature with one value for every customer, which is left out."""
    return Problem(
        "warning",
        f"Column '{profile.name}' has the same value ({_fmt(profile.minimum)}) for every "
        "customer, so it cannot tell segments apart; it is left out.",
        profile.name,
    )


NOTHING_TO_SEGMENT = (
    "No feature varies between customers; there is nothing to segment on. Choose other columns."
)


def nothing_to_segment_problems(
    chosen: Sequence[str], usable: Sequence[str], problems: Sequence[Problem]
) -> list[Problem]:
    """An error when no feature is left to segment on and nothing in `problems` (those found
    so far) already says why."""
    if (
        chosen
        and not usable
        and not any(p.level == "error" and p.column in chosen for p in problems)
    ):
        return [Problem("error", NOTHING_TO_SEGMENT)]
    if not chosen and not problems:
        return [Problem("error", "No numeric feature was chosen.")]
    return []


def repair_problems(
    features: Sequence[ColumnProfile], examples: Mapping[str, list[BadValue]], rows: int
) -> list[Problem]:
    """Warnings about what will be repaired in the usable features, feature by feature.

    `examples` holds values that are not numbers of each feature that has some.
    """
    problems: list[Problem] = []
    for p in features:
        problems += non_numeric_problems(p, examples.get(p.name, []))
        problems += missing_problems(p)
        problems += negative_problems(p, rows)
    return problems


def non_numeric_problems(profile: ColumnProfile, examples: list[BadValue]) -> list[Problem]:
    """Values of a feature that are not numbers, which are treated as missing."""
    n = profile.non_numeric
    if not n:
        return []
    hint = _decimal_comma_hint(examples)
    return [
        Problem(
            "warning",
            f"{n:,} value{'s' * (n != 1)} in '{profile.name}' "
            f"{'are' if n != 1 else 'is'} not a number "
            f"(e.g. {', '.join(_quoted(examples))}); treated as missing."
            + (f" {hint}" if hint else ""),
            profile.name,
        )
    ]


def missing_problems(profile: ColumnProfile) -> list[Problem]:
    """Missing values of a feature (not-numbers included), which the median fills."""
    missing = profile.missing + profile.non_numeric
    if not missing:
        return []
    return [
        Problem(
            "warning",
            f"{missing:,} missing value{'s' * (missing != 1)} in '{profile.name}' will be filled "
            f"with the median ({_fmt(profile.median)}).",
            profile.name,
            repair=True,
        )
    ]


def automatic_log(profile: ColumnProfile, rows: int) -> str | None:
    """The log transform a run gives a feature unless told otherwise: "log" (log(1 + x)) when it
    is strongly skewed with no negatives, "signed-log" (sign(x)·log(1 + |x|)) when its negatives
    are a small minority (a few refunds must not send its whole tail to a cap), None otherwise
    (the outlier policy treats it)."""
    if (profile.skewness or 0) <= SKEWED:
        return None
    if not profile.negatives:
        return "log"
    values = rows - profile.missing - profile.non_numeric
    return "signed-log" if profile.negatives <= FEW_NEGATIVES * values else None


def negative_problems(profile: ColumnProfile, rows: int) -> list[Problem]:
    """Negative values of a feature, which are kept, and what a run does with them under each
    outlier policy (the policy is chosen after this report, so every one is said)."""
    if not profile.negatives:
        return []
    if automatic_log(profile, rows) == "signed-log":
        fate = (
            "kept: the model sees sign(x)·log(1 + |x|) of this skewed feature (unless you choose "
            "otherwise), so they stay below zero and its top customers stay apart, not capped; "
            "the 'remove' outlier policy judges its IQR fences on that scale and removes the "
            "customers outside them."
        )
        return [negative_problem(profile, fate, repair=True)]
    fate = (
        "kept; outside the IQR fences the 'cap' outlier policy caps them, 'remove' removes them "
        "and 'none' leaves them as they are."
    )
    return [negative_problem(profile, fate)]


def negative_problem(profile: ColumnProfile, fate: str, repair: bool = False) -> Problem:
    """The warning about a feature's negative values, saying their `fate` (a run's, or a saved
    segmentation's for an assignment)."""
    n = profile.negatives
    return Problem(
        "warning",
        f"{n:,} negative value{'s' * (n != 1)} in '{profile.name}' "
        f"(lowest {_fmt(profile.minimum)}); {fate} Check refunds or data entry.",
        profile.name,
        repair=repair,
    )


def placeholder_id_problems(id_column: str, placeholders: Mapping[str, int]) -> list[Problem]:
    """Ids such as '(blank)' or 'N/A' (with their rows), read as customers without an id."""
    if not placeholders:
        return []
    rows = sum(placeholders.values())
    named = ", ".join(f"'{token}' ×{count:,}" for token, count in placeholders.items())
    return [
        Problem(
            "warning",
            f"{rows:,} row{'s' * (rows != 1)} in '{id_column}' {'have' if rows != 1 else 'has'} "
            f"no real customer id ({named}); read as missing ids (customers without an id), "
            "not as one customer.",
            id_column,
        )
    ]


def duplicate_id_problems(id_column: str | None, duplicates: int, examples: str) -> list[Problem]:
    """Customer ids that appear more than once (`examples`: a few of them with their counts)."""
    if not id_column or not duplicates:
        return []
    return [
        Problem(
            "warning",
            f"{duplicates:,} customer id{'s' * (duplicates != 1)} in '{id_column}' appear "
            f"more than once (e.g. {examples}); each row is segmented on its own.",
            id_column,
        )
    ]


def categorical_columns(
    columns: Sequence[str], profiles: Mapping[str, ColumnProfile], id_column: str | None
) -> list[str]:
    """Text columns with a few distinct values (up to MAX_CATEGORIES), to profile segments by."""
    return [
        c
        for c in columns
        if profiles[c].kind == "text"
        and c != id_column
        and 1 < (profiles[c].distinct or 0) <= MAX_CATEGORIES
    ]


def header_problems(
    columns: Sequence[str],
    renamed: Sequence[tuple[int, str, str]],
    profiles: Mapping[str, ColumnProfile],
    rows: int,
    chosen: Sequence[str],
) -> list[Problem]:
    """Warnings about header names the file did not give: blank, repeated, or a saved index.

    `renamed` holds (position, name in the file, name used) of columns whose name was blank
    or repeated (SourceFormat.renamed).
    """
    problems = []
    by_name = {new: (position, old) for position, old, new in renamed}
    for column in columns:
        p = profiles[column]
        index_like = column not in chosen and _holds_row_numbers(p, rows)
        where = by_name.get(column)
        row_numbers = (
            f"holds row numbers ({_fmt(p.minimum)} to {_fmt(p.maximum)}), an index saved with "
            "the table (pandas: to_csv(..., index=False) leaves it out); it is not used as a "
            "feature"
        )
        if where and not where[1]:
            what = f"Column {where[0]} has no name in the header"
            problems.append(
                Problem(
                    "warning",
                    f"{what} and {row_numbers}."
                    if index_like
                    else f"{what}; it is read as '{column}'.",
                    column,
                )
            )
        elif where:
            problems.append(
                Problem(
                    "warning",
                    f"'{where[1]}' appears more than once in the header: column {where[0]} is "
                    f"read as '{column}', the first one keeps the name. Rename one in the file "
                    "if the wrong one is used.",
                    column,
                )
            )
        elif index_like and re.fullmatch(r"(?i)unnamed: ?\d+|index", column):
            problems.append(Problem("warning", f"Column '{column}' {row_numbers}.", column))
    return problems


def _holds_row_numbers(p: ColumnProfile, rows: int) -> bool:
    """Whether a column counts the rows from 0 or 1, as an index saved with a table does."""
    return (
        p.kind == "numeric"
        and p.missing == 0
        and p.non_numeric == 0
        and p.minimum in (0, 1)
        and p.maximum == p.minimum + rows - 1
    )


def ragged_problems(ragged: RaggedRows | None) -> list[Problem]:
    """Rows with too many fields are refused (their values shifted); short rows are warned."""
    if ragged is None:
        return []
    problems = []
    if ragged.more:
        problems.append(
            Problem(
                "error",
                f"{ragged.more:,} row{'s have' if ragged.more != 1 else ' has'} more fields than "
                f"the header's {ragged.fields} (e.g. "
                + ", ".join(f"'{e}'" for e in ragged.more_examples)
                + "): a value probably contains the separator without quotes (such as "
                "'$1,550.00'), which shifts every value after it. Put such values in double "
                "quotes, or remove the thousands separators, and upload the file again.",
            )
        )
    if ragged.fewer:
        problems.append(
            Problem(
                "warning",
                f"{ragged.fewer:,} row{'s have' if ragged.fewer != 1 else ' has'} fewer fields "
                f"than the header's {ragged.fields} (e.g. "
                + ", ".join(f"'{e}'" for e in ragged.fewer_examples)
                + "); the fields they lack are treated as missing values.",
            )
        )
    return problems


# ---- what the rules quote, fetched from the data --------------------------------------------


def _bad_values_of(
    table: Table, columns: Sequence[str], id_column: str | None
) -> dict[str, list[BadValue]]:
    """Up to three values that are not numbers of each of `columns`."""
    return {column: _bad_values(table, column, id_column) for column in columns}


def _bad_values(table: Table, column: str, id_column: str | None) -> list[BadValue]:
    """Up to three values of `column` that are not numbers, with their customer ids."""
    df = table.df
    bad = ~missing_expr(df, column) & number_expr(df, column).isNull()
    picked = [F.col(f"`{column}`").cast("string").alias("value")]
    if id_column:
        picked.append(F.col(f"`{id_column}`").cast("string").alias("id"))
    found = df.filter(bad).select(*picked).limit(3).collect()
    return [(r["value"], r["id"] if id_column else None) for r in found]


def _quoted(values: list[BadValue]) -> list[str]:
    return [f"'{value[:40]}'" + (f" for customer {who}" if who else "") for value, who in values]


def _decimal_comma_hint(values: list[BadValue]) -> str:
    """What to do when numbers are written with a decimal comma ('12,50'), which is ambiguous."""
    commas = [v for v, _ in values if _DECIMAL_COMMA.fullmatch(v.strip())]
    if not commas:
        return ""
    return (
        f"Values such as '{commas[0].strip()}' use a decimal comma, which is not read as a "
        "number ('1,550' would be read as 1550): export the file with a decimal point (for "
        "example with English number settings), or replace the commas with points."
    )


@dataclass(frozen=True)
class IdCheck:
    """What checking the customer ids found: placeholders read as missing ids, repeated ids."""

    placeholders: dict[str, int]  # id as written ('(blank)', 'N/A') -> rows
    repeated: int  # ids that appear more than once
    examples: str  # a few of them with their counts
    extra_rows: int  # rows beyond each id's first


def _checked_ids(
    table: Table, id_column: str, profiles: dict[str, ColumnProfile], rows: int
) -> IdCheck:
    """Placeholder and repeated customer ids; sets the id column's exact distinct count (the
    duplicate check knows it, where the profile's count is approximate)."""
    profile = profiles[id_column]
    if table.unique_ids:  # built from an order log: one row per clean id
        found = IdCheck({}, 0, "", 0)
    else:
        placeholders = _placeholder_ids(table, id_column) if profile.missing else {}
        found = IdCheck(placeholders, *_duplicate_ids(table, id_column))
    present = rows - profile.missing
    profiles[id_column] = replace(profile, distinct=present - found.extra_rows, distinct_exact=True)
    return found


def _placeholder_ids(table: Table, id_column: str) -> dict[str, int]:
    """Rows per id as written that is read as missing though not empty ('(blank)', 'N/A', …),
    the most frequent first (at most ten)."""
    df = table.df
    written = id_as_written(df, id_column)
    found = (
        df.where(customer_id_expr(df, id_column, table.missing_ids).isNull() & (written != ""))
        .groupBy(written.alias("id"))
        .count()
        .orderBy(F.desc("count"), "id")
        .limit(10)
        .collect()
    )
    return {r["id"]: int(r["count"]) for r in found}


def _duplicate_ids(table: Table, id_column: str) -> tuple[int, str, int]:
    """How many ids appear more than once, a few of them with their counts, and the rows beyond
    each id's first; ids as customer_id_expr reads them (placeholders are no id).

    Grouped by a 64-bit hash of the id first, which shuffles far less than the text: when no
    hash repeats, no id does. Only when one does are those rows grouped by the ids themselves
    (a repeated hash may also be two ids that collide).
    """
    ids = customer_id_expr(table.df, id_column, table.missing_ids)
    present = table.df.select(ids.alias("__id")).where("__id IS NOT NULL")
    present = present.withColumn("__hash", F.xxhash64("__id"))
    repeated_hashes = present.groupBy("__hash").count().where("count > 1").select("__hash")
    if not repeated_hashes.limit(1).count():
        return 0, "", 0
    repeated = (
        present.join(repeated_hashes, "__hash")
        .groupBy(F.col("__id").alias("id"))
        .count()
        .where("count > 1")
        .cache()
    )
    try:
        totals = repeated.agg(F.count(F.lit(1)), F.sum(F.col("count") - 1)).first()
        found, extra = (int(totals[0]), int(totals[1] or 0)) if totals else (0, 0)
        examples = repeated.orderBy(F.desc("count"), "id").limit(3).collect() if found else []
    finally:
        repeated.unpersist()
    return found, ", ".join(f"'{e['id']}' ×{e['count']}" for e in examples), extra
