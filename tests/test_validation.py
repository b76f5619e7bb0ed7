"""Validation: the mapping used, per-column findings, and every error that blocks clustering."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentation.columns import closest_columns, detect_mapping
from segmentation.errors import InputError
from segmentation.loading import LoadOptions, load_customer_table
from segmentation.params import SegmentationParams
from segmentation.preparation import Progress, load_input, number_column
from segmentation.reading import read_table
from segmentation.spark_engine import unpersist
from segmentation.validation import validate
from tests.helpers import SAMPLE, write_text


def report_for(spark, tmp_path, text, k=2, features=None, overrides=None):
    path = write_text(tmp_path / "in.csv", text)
    return validate(read_table(spark, str(path)), k, features, overrides)


def test_aliases_map_case_and_space_insensitively():
    mapping = detect_mapping(
        ["customer_id", "AGE", "Total Spend", "days_since_last_order", "orders"]
    )
    assert mapping == {
        "customer_id": "customer_id",
        "age": "AGE",
        "spend": "Total Spend",
        "recency": "days_since_last_order",
        "frequency": "orders",
    }
    assert detect_mapping(["id", "monetary", "num_purchases"])["frequency"] == "num_purchases"


def test_overrides_win_over_detection():
    mapping = detect_mapping(["amount", "revenue"], {"spend": "revenue"})
    assert mapping == {"spend": "revenue"}


def test_near_miss_names_are_offered():
    assert closest_columns("Spend", ["Age", "Spendings", "Region"])[0] == "Spendings"


def test_clean_sample_has_no_problems(spark):
    report = validate(read_table(spark, str(SAMPLE)), 3)
    assert report.ok and not report.warnings
    assert report.rows == 30
    assert report.features == ["Age", "Spend", "Recency", "Frequency"]
    assert report.categorical == ["Category", "Region"]
    assert report.id_column == "CustomerID"
    spend = sorted(pd.read_csv(SAMPLE)["Spend"])
    assert report.profiles["Spend"].median == spend[14]  # the lower middle of 30 values


def test_missing_default_column_is_an_error_with_the_closest_name(spark, tmp_path):
    report = report_for(spark, tmp_path, "Age,Spendings,Recency,Frequency\n1,2,3,4\n2,3,4,5\n")
    assert not report.ok
    (error,) = report.errors
    assert "'Spend'" in error.message and "'Spendings'" in error.message
    with pytest.raises(InputError, match="Did you mean 'Spendings'"):
        report.raise_for_errors()


def test_fewer_rows_than_k(spark, tmp_path):
    report = report_for(spark, tmp_path, "Age,Spend,Recency,Frequency\n1,2,3,4\n2,3,4,5\n", k=3)
    assert any("fewer than the 3 segments" in p.message for p in report.errors)


def test_header_only(spark, tmp_path):
    report = report_for(spark, tmp_path, "Age,Spend,Recency,Frequency\n")
    assert [p.message for p in report.errors] == [
        "The file has a header but no customer rows. Export the table again with its data."
    ]


def test_text_feature_is_refused_with_examples(spark, tmp_path):
    text = "Age,Spend,Region\n1,2,North\n2,3,South\n3,4,East\n"
    report = report_for(spark, tmp_path, text, features=["Age", "Region"])
    (error,) = report.errors
    assert "'Region' holds text" in error.message and "'North'" in error.message


def test_no_usable_numeric_feature(spark, tmp_path):
    text = "Name,Spend\nann,5\nbob,5\ncid,5\n"
    report = report_for(spark, tmp_path, text, features=["Spend"])
    assert any("No feature varies" in p.message for p in report.errors)


def test_unknown_feature_is_an_error(spark, tmp_path):
    report = report_for(spark, tmp_path, "Age,Spend\n1,2\n2,3\n", features=["Income"])
    assert "No 'Income' column" in report.errors[0].message


def test_warnings_for_what_will_be_repaired(spark, tmp_path):
    text = (
        "CustomerID,Age,Spend,Recency,Frequency,Store\n"
        "C1,30,100,10,3,1\n"
        "C2,,abc,20,4,1\n"
        "C2,50,-20,N/A,5,1\n"
        'C4,60,"$1,200.00",40,6,1\n'
    )
    report = report_for(
        spark, tmp_path, text, features=["Age", "Spend", "Recency", "Frequency", "Store"]
    )
    assert report.ok
    messages = " | ".join(p.message for p in report.warnings)
    assert "1 value in 'Spend' is not a number (e.g. 'abc' for customer C2)" in messages
    assert "1 missing value in 'Age' will be filled with the median" in messages
    assert "1 missing value in 'Recency'" in messages
    assert "1 negative value in 'Spend' (lowest -20)" in messages
    assert "'Store' has the same value (1) for every customer" in messages
    assert "1 customer id in 'CustomerID' appear" in messages and "'C2' ×2" in messages
    assert report.features == ["Age", "Spend", "Recency", "Frequency"]
    assert report.profiles["Spend"].maximum == 1200


def test_all_missing_feature_column(spark, tmp_path):
    text = "Age,Spend\n,1\n,2\n,3\n"
    report = report_for(spark, tmp_path, text, features=["Age", "Spend"])
    assert any("'Age' has no values at all" in p.message for p in report.errors)


def test_report_table_rows_name_roles(spark):
    report = validate(read_table(spark, str(SAMPLE)), 3)
    rows = {r["column"]: r for r in report.column_rows()}
    assert rows["Spend"]["role"] == "Spend" and rows["Spend"]["type"] == "numeric"
    assert rows["Region"]["type"] == "text"
    # Counted in a small table (an estimate says 3 for these 4 regions).
    assert rows["CustomerID"]["distinct"] == "30" and rows["Region"]["distinct"] == "4"


def test_placeholder_ids_are_missing_ids_not_one_repeated_customer(spark, tmp_path):
    text = (
        "CustomerID,Spend\n"
        "(blank),10\n (Blank) ,11\nN/A,12\nn / a,13\nGUEST,14\n0,15\n,16\n"
        "C1,20\nC1,21\nC2,30\nC3,40\n99999,50\n99999,51\n"
    )
    path = write_text(tmp_path / "in.csv", text)
    report = validate(read_table(spark, str(path)), 2, ["Spend"])
    messages = " | ".join(p.message for p in report.warnings)
    assert (
        "6 rows in 'CustomerID' have no real customer id ('(Blank)' ×1, '(blank)' ×1, "
        "'0' ×1, 'GUEST' ×1, 'N/A' ×1, 'n / a' ×1); read as missing ids" in messages
    )
    assert report.duplicate_ids == 2  # C1 and 99999, not '(blank)'
    assert "'99999' ×2, 'C1' ×2" in messages
    profile = report.profiles["CustomerID"]
    assert (profile.missing, profile.distinct, profile.distinct_exact) == (7, 4, True)
    rows = {r["column"]: r for r in report.column_rows()}
    assert rows["CustomerID"]["distinct"] == "4"

    # The analyst's own 'no customer' id (the LoadOptions field) is read as missing too.
    table = load_customer_table(spark, str(path), LoadOptions(missing_ids=("99999",)))[0]
    report = validate(table, 2, ["Spend"])
    assert report.duplicate_ids == 1 and report.profiles["CustomerID"].missing == 9
    assert "8 rows in 'CustomerID' have no real customer id ('99999' ×2, '(Blank)'" in " ".join(
        p.message for p in report.warnings
    )

    # A run's own reading (parsed numbers cached beside the text) keeps them missing too.
    params = SegmentationParams(features=("Spend",), missing_ids=("99999",))
    table, _, chosen, cached = load_input(spark, str(path), params, Progress(None))
    report = validate(table, 2, ["Spend"], numbers={c: number_column(c) for c in chosen})
    unpersist(cached)
    assert report.duplicate_ids == 1 and report.profiles["CustomerID"].missing == 9
    assert "more than once (e.g. 'C1' ×2);" in " ".join(p.message for p in report.warnings)
