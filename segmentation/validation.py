"""Column mapping and the validation report an analyst reads before any clustering."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from pyspark.sql import functions as F

from segmentation.errors import InputError
from segmentation.measurement import SKETCH_K
from segmentation.reading import (
    MALFORMED,
    RaggedRows,
    Table,
    missing_expr,
    missing_sql,
    number_expr,
    number_sql,
    ragged_aggregates,
    ragged_rows,
)
from segmentation.session import engine_failure
from segmentation.sql import quoted

ROLE_LABELS = {
    "customer_id": "CustomerID",
    "age": "Age",
    "spend": "Spend",
    "recency": "Recency",
    "frequency": "Frequency",
}
DEFAULT_FEATURE_ROLES = ("age", "spend", "recency", "frequency")
# Names of a customer id column, most telling first (an order log shares them, except "id").
CUSTOMER_ID_ALIASES = (
    "customerid",
    "customer",
    "id",
    "clientid",
    "client",
    "userid",
    "custid",
    "customerno",
    "customernumber",
    "customerkey",
    "memberid",
    "accountid",
    "buyerid",
    "shopperid",
)
ALIASES = {
    "customer_id": CUSTOMER_ID_ALIASES,
    "age": ("age", "customerage", "ageyears", "years"),
    "spend": (
        "spend",
        "totalspend",
        "monetary",
        "amount",
        "totalamount",
        "revenue",
        "sales",
        "totalspent",
        "spent",
        "spending",
        "totalsales",
        "monetaryvalue",
        "totalrevenue",
        "totalpurchase",
        "purchaseamount",
        "value",
        "ltv",
        "clv",
    ),
    "recency": (
        "recency",
        "dayssincelastorder",
        "dayssincelastpurchase",
        "lastpurchasedays",
        "recencydays",
        "dayssincepurchase",
        "daysinactive",
        "lastorderdays",
    ),
    "frequency": (
        "frequency",
        "orders",
        "numpurchases",
        "purchases",
        "ordercount",
        "numorders",
        "norders",
        "nbrorders",
        "purchasecount",
        "transactions",
        "numtransactions",
        "totalorders",
        "orderfrequency",
        "visits",
    ),
}
MAX_CATEGORIES = 50
QUINTILES = (0.2, 0.4, 0.6, 0.8)  # the cut points of RFM scores
# Of each feature, from one sketch: quartiles for the outlier fences and the imputation, quintiles.
QUANTILES = (0.2, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8)
NUMERIC_SHARE = 0.5  # a column is numeric when most of its values are numbers (the rest: warned)
# '12,50' or '1.550,00': a decimal comma, which number_expr does not read ('1,550' is ambiguous)
_DECIMAL_COMMA = re.compile(r"[+-]?\d{1,3}(\.\d{3})*,\d+|[+-]?\d+,(\d{1,2}|\d{4,})")


def normalise(name: str) -> str:
    """Compare column names ignoring case, spaces and punctuation ('Total Spend' = 'total_spend')."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_roles(
    columns: Sequence[str],
    aliases: Mapping[str, Sequence[str]],
    labels: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
    kind: str = "a column",
) -> dict[str, str]:
    """Which column plays which role, from normalised aliases; the analyst's overrides win."""
    by_norm: dict[str, str] = {}
    for column in columns:
        by_norm.setdefault(normalise(column), column)
    mapping: dict[str, str] = {}
    for role, names in aliases.items():
        for alias in names:
            column = by_norm.get(alias)
            if column and column not in mapping.values():
                mapping[role] = column
                break
    for role, column in (overrides or {}).items():
        if role not in labels:
            raise InputError(f"'{role}' is not {kind} role; use one of {', '.join(labels)}.")
        if column and column not in columns:
            raise InputError(f"The column '{column}' chosen for {labels[role]} is not in the file.")
        mapping = {r: c for r, c in mapping.items() if c != column and r != role}
        if column:
            mapping[role] = column
    return mapping


def detect_mapping(
    columns: Sequence[str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Which column of a customer table plays which role (CustomerID, Age, Spend, ...)."""
    return match_roles(columns, ALIASES, ROLE_LABELS, overrides)


def closest_columns(
    wanted: str, columns: Sequence[str], n: int = 3, taken: Sequence[str] = ()
) -> list[str]:
    """Column names that look like `wanted`, to offer when a column is missing.

    Columns in `taken` (already playing another role, such as the customer id) are not offered.
    """
    norm = {normalise(c): c for c in columns if c not in taken}
    keys = list(norm)
    candidates = set(difflib.get_close_matches(normalise(wanted), keys, n=n, cutoff=0.6))
    role = next(
        (r for r, label in ROLE_LABELS.items() if normalise(label) == normalise(wanted)), None
    )
    for alias in ALIASES.get(role, ()):
        candidates.update(difflib.get_close_matches(alias, keys, n=n, cutoff=0.75))
        candidates.update(k for k in keys if len(alias) >= 4 and alias in k)
    ranked = sorted(
        candidates,
        key=lambda k: -difflib.SequenceMatcher(None, normalise(wanted), k).ratio(),
    )
    return [norm[k] for k in ranked[:n]]


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
    distinct: int | None  # approximate; not counted for features
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    skewness: float | None = None
    quintiles: list[float] | None = None  # 20th, 40th, 60th and 80th percentiles (RFM scores)
    bad_examples: list[str] = field(default_factory=list)


@dataclass
class Problem:
    """One finding: an error blocks the job, a warning explains a repair."""

    level: str  # "error" or "warning"
    message: str
    column: str | None = None


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
                    "distinct (approx.)": p.distinct,
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
    df = table.df
    columns = table.columns
    mapping = detect_mapping(columns, overrides)
    chosen, problems = _resolve_features(features, columns, mapping)
    numbers = numbers or {}

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
    aggs = ["count(1) AS __rows"]
    sketches = []
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
            sketches.append(f"approx_count_distinct(r{i}) AS d{i}")
    try:
        # Sums, minima and maxima compile to fast code, which sketches turn off for a whole
        # aggregation: two passes, and the second reads what the first one cached.
        stats = {
            **parsed.agg(*map(F.expr, aggs), *ragged_aggregates(table)).collect()[0].asDict(),
            **parsed.selectExpr(*sketches).collect()[0].asDict(),
        }
    except Exception as exc:
        if engine_failure(exc):  # not the file's fault: the job's error says what happened
            raise
        raise InputError(
            "The file could not be read as a table: " + str(exc).strip().splitlines()[0][:200],
            hint="Check that it is a CSV or Parquet export of the customer table.",
        ) from exc

    rows = stats["__rows"]
    profiles: dict[str, ColumnProfile] = {}
    for i, column in enumerate(columns):
        present = rows - (stats[f"m{i}"] or 0)  # sums over no rows are null
        non_numeric = stats[f"x{i}"] or 0
        if present == 0:
            kind = "empty"
        elif non_numeric <= (1 - NUMERIC_SHARE) * present:
            kind = "numeric"
        else:
            kind = "text"
        quantiles = dict(zip(QUANTILES, stats.get(f"q{i}") or [], strict=False))
        profiles[column] = ColumnProfile(
            name=column,
            kind=kind,
            missing=stats[f"m{i}"] or 0,
            non_numeric=non_numeric,
            negatives=stats[f"n{i}"] or 0,
            minimum=stats[f"lo{i}"],
            maximum=stats[f"hi{i}"],
            distinct=stats.get(f"d{i}"),
            q1=quantiles.get(0.25),
            median=quantiles.get(0.5),
            q3=quantiles.get(0.75),
            quintiles=[quantiles[q] for q in QUINTILES] if quantiles else None,
            skewness=stats.get(f"s{i}"),
        )

    id_column = mapping.get("customer_id")
    if rows == 0:
        problems = [
            Problem(
                "error",
                "The file has a header but no customer rows. Export the table again with its data.",
            )
        ]
        return ValidationReport(
            table.format.describe(), 0, columns, mapping, [], [], profiles, problems
        )
    if rows < k:
        problems.append(
            Problem(
                "error",
                f"The file has {rows} customer row{'s' * (rows != 1)}, fewer than the {k} segments "
                "asked for. Upload more customers"
                + (f" or choose at most {rows} segments." if rows >= 2 else "."),
            )
        )

    usable: list[str] = []
    for column in chosen:
        p = profiles[column]
        if column == id_column:
            problems.append(
                Problem("error", f"'{column}' is the customer id; it cannot be a feature.", column)
            )
        elif p.kind == "empty":
            problems.append(
                Problem(
                    "error",
                    f"Column '{column}' has no values at all; it cannot be a feature. "
                    "Fill it in or choose other features.",
                    column,
                )
            )
        elif p.kind == "text":
            bad = _bad_values(table, column, id_column)
            problems.append(
                Problem(
                    "error",
                    f"Column '{column}' holds text, not numbers ({p.non_numeric:,} of "
                    f"{rows - p.missing:,} values, e.g. {', '.join(_quoted(bad)) or '–'}); it "
                    "cannot be a feature. "
                    + (_decimal_comma_hint(bad) or "Choose numeric columns, or fix the export."),
                    column,
                )
            )
        elif p.minimum == p.maximum and rows > 1:
            problems.append(
                Problem(
                    "warning",
                    f"Column '{column}' has the same value ({_fmt(p.minimum)}) for every "
                    "customer, so it cannot tell segments apart; it is left out.",
                    column,
                )
            )
        else:
            usable.append(column)
    if (
        chosen
        and not usable
        and not any(p.level == "error" and p.column in chosen for p in problems)
    ):
        problems.append(
            Problem(
                "error",
                "No feature varies between customers; there is nothing "
                "to segment on. Choose other columns.",
            )
        )
    if not chosen and not problems:
        problems.append(Problem("error", "No numeric feature was chosen."))

    for column in usable:
        p = profiles[column]
        if p.non_numeric:
            bad = _bad_values(table, column, id_column)
            p.bad_examples = _quoted(bad)
            hint = _decimal_comma_hint(bad)
            problems.append(
                Problem(
                    "warning",
                    f"{p.non_numeric:,} value{'s' * (p.non_numeric != 1)} in '{column}' "
                    f"{'are' if p.non_numeric != 1 else 'is'} not a number "
                    f"(e.g. {', '.join(p.bad_examples)}); treated as missing."
                    + (f" {hint}" if hint else ""),
                    column,
                )
            )
        missing = p.missing + p.non_numeric
        if missing:
            problems.append(
                Problem(
                    "warning",
                    f"{missing:,} missing value{'s' * (missing != 1)} in '{column}' will be filled "
                    f"with the median ({_fmt(p.median)}).",
                    column,
                )
            )
        if p.negatives:
            problems.append(
                Problem(
                    "warning",
                    f"{p.negatives:,} negative value{'s' * (p.negatives != 1)} in '{column}' "
                    f"(lowest {_fmt(p.minimum)}); kept as they are. Check refunds or data entry.",
                    column,
                )
            )

    if id_column and not table.unique_ids:
        duplicates, examples = _duplicate_ids(table, id_column)
        if duplicates:
            problems.append(
                Problem(
                    "warning",
                    f"{duplicates:,} customer id{'s' * (duplicates != 1)} in '{id_column}' appear "
                    f"more than once (e.g. {examples}); each row is segmented on its own.",
                    id_column,
                )
            )
    else:
        duplicates = 0
    # How the file was laid out comes first: it can explain the findings about values.
    ragged = ragged_rows(table, stats if MALFORMED in df.columns else None)
    problems[:0] = _ragged_problems(ragged) + _header_problems(table, profiles, rows, chosen)

    categorical = [
        c
        for c in columns
        if profiles[c].kind == "text"
        and c != id_column
        and 1 < (profiles[c].distinct or 0) <= MAX_CATEGORIES
    ]
    return ValidationReport(
        source=table.format.describe(),
        rows=rows,
        columns=columns,
        mapping=mapping,
        features=usable,
        categorical=categorical,
        profiles=profiles,
        problems=problems,
        duplicate_ids=duplicates,
    )


def _bad_values(table: Table, column: str, id_column: str | None) -> list[tuple[str, str | None]]:
    """Up to three values of `column` that are not numbers, with their customer ids."""
    df = table.df
    bad = ~missing_expr(df, column) & number_expr(df, column).isNull()
    picked = [F.col(f"`{column}`").cast("string").alias("value")]
    if id_column:
        picked.append(F.col(f"`{id_column}`").cast("string").alias("id"))
    found = df.filter(bad).select(*picked).limit(3).collect()
    return [(r["value"], r["id"] if id_column else None) for r in found]


def _quoted(values: list[tuple[str, str | None]]) -> list[str]:
    return [f"'{value[:40]}'" + (f" for customer {who}" if who else "") for value, who in values]


def _decimal_comma_hint(values: list[tuple[str, str | None]]) -> str:
    """What to do when numbers are written with a decimal comma ('12,50'), which is ambiguous."""
    commas = [v for v, _ in values if _DECIMAL_COMMA.fullmatch(v.strip())]
    if not commas:
        return ""
    return (
        f"Values such as '{commas[0].strip()}' use a decimal comma, which is not read as a "
        "number ('1,550' would be read as 1550): export the file with a decimal point (for "
        "example with English number settings), or replace the commas with points."
    )


def _header_problems(
    table: Table, profiles: Mapping[str, ColumnProfile], rows: int, chosen: Sequence[str]
) -> list[Problem]:
    """Warnings about header names the file did not give: blank, repeated, or a saved index."""
    problems = []
    renamed = {new: (position, old) for position, old, new in table.format.renamed}
    for column in table.columns:
        p = profiles[column]
        index_like = (
            column not in chosen
            and p.kind == "numeric"
            and p.missing == 0
            and p.non_numeric == 0
            and p.minimum in (0, 1)
            and p.maximum == p.minimum + rows - 1
        )
        where = renamed.get(column)
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


def _ragged_problems(ragged: RaggedRows | None) -> list[Problem]:
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


def _duplicate_ids(table: Table, id_column: str) -> tuple[int, str]:
    """How many ids appear more than once, and a few of them with their counts.

    Grouped by a 64-bit hash of the id first, which shuffles far less than the text: when no
    hash repeats, no id does. Only when one does are those rows grouped by the ids themselves
    (a repeated hash may also be two ids that collide).
    """
    ids = F.col(f"`{id_column}`")
    present = table.df.where(ids.isNotNull()).withColumn("__hash", F.xxhash64(ids))
    repeated_hashes = present.groupBy("__hash").count().where("count > 1").select("__hash")
    if not repeated_hashes.limit(1).count():
        return 0, ""
    repeated = (
        present.join(repeated_hashes, "__hash")
        .groupBy(ids.alias("id"))
        .count()
        .where("count > 1")
        .cache()
    )
    try:
        found = repeated.count()
        examples = repeated.orderBy(F.desc("count"), "id").limit(3).collect() if found else []
    finally:
        repeated.unpersist()
    return found, ", ".join(f"'{e['id']}' ×{e['count']}" for e in examples)
