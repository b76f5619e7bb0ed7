"""Validation's rules on plain column profiles and counts: no Spark, exact messages."""

from __future__ import annotations

import pytest

from segmentation.columns import detect_mapping
from segmentation.reading import RaggedRows
from segmentation.validation import (
    ColumnProfile,
    Problem,
    ValidationReport,
    automatic_log,
    categorical_columns,
    column_kind,
    column_profiles,
    duplicate_id_problems,
    feature_problems,
    header_problems,
    negative_problems,
    no_rows_problem,
    nothing_to_segment_problems,
    ragged_problems,
    repair_problems,
    row_count_problems,
    text_features,
)


def profile(
    name: str,
    kind: str = "numeric",
    *,
    missing: int = 0,
    non_numeric: int = 0,
    negatives: int = 0,
    minimum: float | None = 1.0,
    maximum: float | None = 9.0,
    median: float | None = 5.0,
    distinct: int | None = None,
) -> ColumnProfile:
    return ColumnProfile(
        name=name,
        kind=kind,
        missing=missing,
        non_numeric=non_numeric,
        negatives=negatives,
        minimum=minimum,
        maximum=maximum,
        distinct=distinct,
        median=median,
    )


def by_name(*profiles: ColumnProfile) -> dict[str, ColumnProfile]:
    return {p.name: p for p in profiles}


def messages(problems: list[Problem]) -> list[tuple[str, str, str | None]]:
    return [(p.level, p.message, p.column) for p in problems]


# ---- the pass's aggregates as profiles ------------------------------------------------------


def test_column_kind_is_numeric_while_at_most_half_the_values_are_not_numbers():
    assert column_kind(present=0, non_numeric=0) == "empty"
    assert column_kind(present=10, non_numeric=5) == "numeric"
    assert column_kind(present=10, non_numeric=6) == "text"
    assert column_kind(present=1, non_numeric=1) == "text"


def test_column_profiles_from_the_aggregates_of_one_pass():
    counted = {
        "__rows": 10,
        # Spend, a feature: quantiles and skewness
        "m0": 2,
        "x0": 1,
        "n0": 3,
        "lo0": -4.0,
        "hi0": 90.0,
        "s0": 1.5,
        "q0": [2.0, 2.5, 4.0, 5.0, 6.0, 7.5, 8.0],
        # Region, not a feature: distinct values; sums over no values are null
        "m1": None,
        "x1": 10,
        "n1": None,
        "lo1": None,
        "hi1": None,
        "d1": 3,
        # Notes: every value missing, a feature without quantiles
        "m2": 10,
        "x2": 0,
        "n2": 0,
        "lo2": None,
        "hi2": None,
        "s2": None,
        "q2": None,
    }
    spend, region, notes = column_profiles(counted, ["Spend", "Region", "Notes"]).values()
    assert spend == ColumnProfile(
        name="Spend",
        kind="numeric",
        missing=2,
        non_numeric=1,
        negatives=3,
        minimum=-4.0,
        maximum=90.0,
        distinct=None,
        q1=2.5,
        median=5.0,
        q3=7.5,
        skewness=1.5,
        quintiles=[2.0, 4.0, 6.0, 8.0],
    )
    assert (region.kind, region.missing, region.non_numeric, region.negatives) == ("text", 0, 10, 0)
    assert region.distinct == 3 and region.quintiles is None and region.median is None
    assert (notes.kind, notes.missing, notes.quintiles, notes.q1) == ("empty", 10, None, None)


# ---- rows -----------------------------------------------------------------------------------


def test_a_header_without_rows():
    assert messages([no_rows_problem()]) == [
        (
            "error",
            "The file has a header but no customer rows. Export the table again with its data.",
            None,
        )
    ]


def test_fewer_rows_than_segments():
    assert row_count_problems(rows=4, k=4) == []
    assert messages(row_count_problems(rows=3, k=5)) == [
        (
            "error",
            "The file has 3 customer rows, fewer than the 5 segments asked for. Upload more "
            "customers or choose at most 3 segments.",
            None,
        )
    ]
    assert messages(row_count_problems(rows=1, k=2)) == [
        (
            "error",
            "The file has 1 customer row, fewer than the 2 segments asked for. Upload more "
            "customers.",
            None,
        )
    ]


# ---- features that cannot be clustered on ---------------------------------------------------


def test_each_unusable_feature_says_why_and_the_rest_are_used():
    profiles = by_name(
        profile("CustomerID"),
        profile("Age"),
        profile("Notes", "empty", missing=12, minimum=None, maximum=None),
        profile("Region", "text", missing=2, non_numeric=10, minimum=None, maximum=None),
        profile("Flag", minimum=3.0, maximum=3.0),
        profile("Spend", minimum=0.5, maximum=1550.0),
    )
    chosen = ["CustomerID", "Age", "Notes", "Region", "Flag", "Spend"]
    assert text_features(chosen, profiles, "CustomerID") == ["Region"]
    examples = {"Region": [("North", "C01"), ("South", None)]}
    usable, problems = feature_problems(chosen, profiles, 12, "CustomerID", examples)
    assert usable == ["Age", "Spend"]
    assert messages(problems) == [
        ("error", "'CustomerID' is the customer id; it cannot be a feature.", "CustomerID"),
        (
            "error",
            "Column 'Notes' has no values at all; it cannot be a feature. Fill it in or choose "
            "other features.",
            "Notes",
        ),
        (
            "error",
            "Column 'Region' holds text, not numbers (10 of 10 values, e.g. 'North' for customer "
            "C01, 'South'); it cannot be a feature. Choose numeric columns, or fix the export.",
            "Region",
        ),
        (
            "warning",
            "Column 'Flag' has the same value (3) for every customer, so it cannot tell segments "
            "apart; it is left out.",
            "Flag",
        ),
    ]


def test_a_text_feature_with_decimal_commas_says_how_to_export_it():
    profiles = by_name(profile("Spend", "text", non_numeric=1200, minimum=None, maximum=None))
    examples = {"Spend": [(" 12,50 ", "7"), ("1.550,00", "8")]}
    _, (problem,) = feature_problems(["Spend"], profiles, 1500, None, examples)
    assert problem.message == (
        "Column 'Spend' holds text, not numbers (1,200 of 1,500 values, e.g. ' 12,50 ' for "
        "customer 7, '1.550,00' for customer 8); it cannot be a feature. Values such as '12,50' "
        "use a decimal comma, which is not read as a number ('1,550' would be read as 1550): "
        "export the file with a decimal point (for example with English number settings), or "
        "replace the commas with points."
    )


def test_one_customer_is_no_constant_column():
    profiles = by_name(profile("Age", minimum=30.0, maximum=30.0))
    assert feature_problems(["Age"], profiles, 1, None, {}) == (["Age"], [])


def test_nothing_to_segment_on():
    no_variation = (
        "error",
        "No feature varies between customers; there is nothing to segment on. Choose other "
        "columns.",
        None,
    )
    constant = Problem("warning", "constant", "Age")
    assert messages(nothing_to_segment_problems(["Age"], [], [constant])) == [no_variation]
    # An error about a chosen feature already says why.
    refused = Problem("error", "text", "Age")
    assert nothing_to_segment_problems(["Age"], [], [refused]) == []
    assert nothing_to_segment_problems(["Age"], ["Age"], []) == []
    assert messages(nothing_to_segment_problems([], [], [])) == [
        ("error", "No numeric feature was chosen.", None)
    ]
    missing = Problem("error", "No 'Spend' column was found.", "Spend")
    assert nothing_to_segment_problems([], [], [missing]) == []


# ---- repairs --------------------------------------------------------------------------------


def test_repairs_are_reported_feature_by_feature():
    spend = profile("Spend", missing=2, non_numeric=1, negatives=3, minimum=-12.5, median=1550.0)
    spend.skewness = 4.2  # heavy-tailed, 3 negatives of 97 values: the signed log
    age = profile("Age", missing=1, median=41.25)
    recency = profile("Recency", negatives=1, minimum=-0.5)
    clean = profile("Frequency")
    examples = {"Spend": [("abc", "C07")]}
    assert messages(repair_problems([spend, age, recency, clean], examples, 100)) == [
        (
            "warning",
            "1 value in 'Spend' is not a number (e.g. 'abc' for customer C07); treated as missing.",
            "Spend",
        ),
        ("warning", "3 missing values in 'Spend' will be filled with the median (1,550).", "Spend"),
        (
            "warning",
            "3 negative values in 'Spend' (lowest -12.50); kept: the model sees "
            "sign(x)·log(1 + |x|) of this skewed feature (unless you choose otherwise), so they "
            "stay below zero and its top customers stay apart, not capped; the 'remove' outlier "
            "policy judges its IQR fences on that scale and removes the customers outside them. "
            "Check refunds or data entry.",
            "Spend",
        ),
        ("warning", "1 missing value in 'Age' will be filled with the median (41.25).", "Age"),
        (
            "warning",
            "1 negative value in 'Recency' (lowest -0.50); kept; outside the IQR fences the "
            "'cap' outlier policy caps them, 'remove' removes them and 'none' leaves them as they "
            "are. Check refunds or data entry.",
            "Recency",
        ),
    ]
    # The fills and the signed log are said again by the run's typed account, the rest not.
    repairs = repair_problems([spend, age, recency, clean], examples, 100)
    assert [p.repair for p in repairs] == [False, True, True, True, False]


@pytest.mark.parametrize(
    ("skewness", "policies"),
    [
        (4.2, {"cap": "not capped", "remove": "'remove' outlier policy judges", "none": "kept"}),
        (0.0, {"cap": "'cap' outlier policy caps", "remove": "'remove' removes", "none": "'none'"}),
    ],
)
def test_negative_values_are_said_as_each_outlier_policy_treats_them(skewness, policies):
    """The policy is chosen after the report: the warning says what each one does, never that
    every policy caps or removes them."""
    spend = profile("Spend", negatives=3, minimum=-12.5)
    spend.skewness = skewness
    (warning,) = negative_problems(spend, 100)
    for said in policies.values():
        assert said in warning.message
    assert "caps or removes" not in warning.message
    if skewness:  # the signed log keeps them below zero unless 'remove' removes them
        assert "stay below zero" in warning.message and "removes the customers" in warning.message


def test_a_skewed_feature_is_logged_signed_when_its_negatives_are_a_small_minority():
    spend = profile("Spend", missing=4, negatives=5, minimum=-50.0)
    spend.skewness = 3.0
    assert automatic_log(spend, 104) == "signed-log"  # 5 of 100 values: refunds
    assert automatic_log(spend, 103) is None  # 5 of 99: over 5%, the outlier policy decides
    assert automatic_log(profile("Orders"), 10) is None  # not skewed
    orders = profile("Orders")
    orders.skewness = 1.5
    assert automatic_log(orders, 10) == "log"


def test_values_that_are_not_numbers_are_counted_and_quoted():
    spend = profile("Spend", non_numeric=2, median=None)
    examples = {"Spend": [("12,50", None), ("x" * 50, "C1")]}
    (not_numbers, missing) = repair_problems([spend], examples, 2)
    assert not_numbers.message == (
        f"2 values in 'Spend' are not a number (e.g. '12,50', '{'x' * 40}' for customer C1); "
        "treated as missing. Values such as '12,50' use a decimal comma, which is not read as a "
        "number ('1,550' would be read as 1550): export the file with a decimal point (for "
        "example with English number settings), or replace the commas with points."
    )
    assert missing.message == "2 missing values in 'Spend' will be filled with the median (–)."


# ---- ids, categories, the header, ragged rows ------------------------------------------------


def test_duplicate_ids():
    assert messages(duplicate_id_problems("CustomerID", 2, "'C01' ×3, 'C02' ×2")) == [
        (
            "warning",
            "2 customer ids in 'CustomerID' appear more than once (e.g. 'C01' ×3, 'C02' ×2); "
            "each row is segmented on its own.",
            "CustomerID",
        )
    ]
    assert duplicate_id_problems("id", 1, "'7' ×2")[0].message.startswith("1 customer id in 'id'")
    assert duplicate_id_problems("CustomerID", 0, "") == []
    assert duplicate_id_problems(None, 0, "") == []


def test_categories_are_text_columns_with_a_few_values():
    profiles = by_name(
        profile("CustomerID", "text", distinct=20),
        profile("Region", "text", distinct=4),
        profile("Note", "text", distinct=51),
        profile("Constant", "text", distinct=1),
        profile("Unknown", "text"),
        profile("Age", distinct=20),
    )
    assert categorical_columns(list(profiles), profiles, "CustomerID") == ["Region"]


def test_header_names_the_file_did_not_give():
    profiles = by_name(
        profile("column_1", minimum=0.0, maximum=11.0),  # blank name, holds 0..11
        profile("column_2", minimum=5.0, maximum=9.0),  # blank name, other values
        profile("Spend_2"),  # a repeated name
        profile("Unnamed: 0", minimum=1.0, maximum=12.0),  # a saved index
        profile("index", minimum=0.0, maximum=11.0),  # the same, but chosen as a feature
        profile("Age", minimum=0.0, maximum=11.0),  # row numbers under a real name
    )
    renamed = [(1, "", "column_1"), (2, "", "column_2"), (4, "Spend", "Spend_2")]
    problems = header_problems(list(profiles), renamed, profiles, 12, chosen=["index"])
    row_numbers = (
        "an index saved with the table (pandas: to_csv(..., index=False) leaves it out); it is "
        "not used as a feature."
    )
    assert messages(problems) == [
        (
            "warning",
            f"Column 1 has no name in the header and holds row numbers (0 to 11), {row_numbers}",
            "column_1",
        ),
        ("warning", "Column 2 has no name in the header; it is read as 'column_2'.", "column_2"),
        (
            "warning",
            "'Spend' appears more than once in the header: column 4 is read as 'Spend_2', the "
            "first one keeps the name. Rename one in the file if the wrong one is used.",
            "Spend_2",
        ),
        (
            "warning",
            f"Column 'Unnamed: 0' holds row numbers (1 to 12), {row_numbers}",
            "Unnamed: 0",
        ),
    ]


def test_an_index_with_gaps_or_missing_values_is_not_row_numbers():
    profiles = by_name(
        profile("index", minimum=0.0, maximum=12.0),
        profile("Unnamed: 1", missing=1, minimum=0.0, maximum=11.0),
    )
    assert header_problems(list(profiles), [], profiles, 12, chosen=[]) == []


def test_ragged_rows():
    assert ragged_problems(None) == []
    assert ragged_problems(RaggedRows(5)) == []
    ragged = RaggedRows(5, more=1, fewer=2, more_examples=["C1,1,$1,550.00,3,4"])
    ragged.fewer_examples = ["C2,1", "C3,2"]
    assert messages(ragged_problems(ragged)) == [
        (
            "error",
            "1 row has more fields than the header's 5 (e.g. 'C1,1,$1,550.00,3,4'): a value "
            "probably contains the separator without quotes (such as '$1,550.00'), which shifts "
            "every value after it. Put such values in double quotes, or remove the thousands "
            "separators, and upload the file again.",
            None,
        ),
        (
            "warning",
            "2 rows have fewer fields than the header's 5 (e.g. 'C2,1', 'C3,2'); the fields they "
            "lack are treated as missing values.",
            None,
        ),
    ]


# ---- what the Upload page offers from a report ----------------------------------------------


def report(columns: dict[str, str], problems: list[Problem]) -> ValidationReport:
    """A report of a table with these columns (name -> kind), detected as the app would."""
    return ValidationReport(
        source="customers.csv",
        rows=20,
        columns=list(columns),
        mapping=detect_mapping(list(columns)),
        features=[],
        categorical=[],
        profiles=by_name(*(profile(name, kind) for name, kind in columns.items())),
        problems=problems,
    )


def test_default_features_are_the_numeric_rfm_and_age_columns_found():
    found = report(
        {"id": "numeric", "Age": "numeric", "total_spend": "numeric", "Region": "text"}, []
    )
    assert found.numeric_columns == ["Age", "total_spend"]  # the id is no feature
    assert found.default_features() == ["Age", "total_spend"]
    # The analyst maps Recency to a column and takes the age role away: offers follow.
    remapped = found.remapped({"recency": "id", "age": ""})
    assert remapped.mapping == {"spend": "total_spend", "recency": "id"}
    assert remapped.numeric_columns == ["id", "Age", "total_spend"]
    assert remapped.default_features() == ["total_spend", "id"]


def test_a_missing_default_column_is_a_hint_and_other_errors_block():
    missing = Problem("error", "No Recency column was found; map one above.", "Recency")
    empty = Problem("error", "The file has a header but no rows.", None)
    found = report({"Spend": "numeric"}, [missing, empty])
    assert found.missing_roles == [missing]
    assert found.blocking == [empty]


def test_estimated_distinct_counts_read_as_estimates():
    def profile(name, distinct, exact):
        return ColumnProfile(name, "text", 0, 0, 0, None, None, distinct, distinct_exact=exact)

    profiles = {
        "CustomerID": profile("CustomerID", 4_338, True),
        "Country": profile("Country", 4_105, False),
    }
    report = ValidationReport(
        "CSV", 4_338, list(profiles), {"customer_id": "CustomerID"}, [], [], profiles, []
    )
    assert [r["distinct"] for r in report.column_rows()] == ["4,338", "about 4,105"]
