"""Order logs to customer tables: exact figures, returns, dropped lines, date formats, joins."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from segmentation import order_dates
from segmentation.columns import detect_mapping
from segmentation.customer_attributes import join_attributes
from segmentation.errors import InputError
from segmentation.loading import LoadOptions, load_customer_table
from segmentation.manifest import plain
from segmentation.order_dates import DATE_FORMATS, date_expr, detect_date_format
from segmentation.order_log import build_customer_table, detect_input_kind, detect_roles
from segmentation.order_report import DominantId
from segmentation.reading import read_table
from segmentation.synthetic import (
    TRANSACTION_COLUMNS,
    TRANSACTIONS_REFERENCE,
    make_transactions,
    write_transactions,
)
from tests.helpers import real_shaped_log

REFERENCE = pd.Timestamp(TRANSACTIONS_REFERENCE).date()
LOG_COLUMNS = ", ".join(f"{c} string" for c in TRANSACTION_COLUMNS)


def customers_frame(df) -> pd.DataFrame:
    """The (small) customer table on the driver, in CustomerID order."""
    return df.toPandas().sort_values("CustomerID", ignore_index=True)


def assert_same_customers(found: pd.DataFrame, expected: pd.DataFrame, shift: int = 0) -> None:
    assert found["CustomerID"].tolist() == expected["CustomerID"].tolist()
    for column in ("Recency", "Frequency", "Tenure"):
        extra = shift if column in ("Recency", "Tenure") else 0
        assert found[column].tolist() == (expected[column] + extra).tolist(), column
    for column in ("Spend", "AvgOrderValue"):
        wrong = ~np.isclose(found[column], expected[column], atol=1e-9)
        assert not wrong.any(), pd.concat([found[wrong], expected[wrong]], axis=1)


def order_log(spark, rows: list[tuple], columns: str = LOG_COLUMNS):
    return spark.createDataFrame(rows, columns)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated order log as a CSV file (read the way the app reads it) and its answer."""
    path = tmp_path_factory.mktemp("orders") / "orders.csv"
    log, expected = make_transactions(400, seed=5, returns_only_rate=0.02)
    write_transactions(path, 400, seed=5, returns_only_rate=0.02)
    return path, log, expected


def test_generated_log_yields_exactly_the_known_customer_table(spark, generated):
    path, log, expected = generated
    df = read_table(spark, str(path)).df

    customers, report = build_customer_table(df)  # reference: the day after the last line
    found = customers_frame(customers)

    assert report.reference_date == report.last_date + timedelta(days=1)
    assert list(found.columns) == [
        "CustomerID",
        "Recency",
        "Frequency",
        "Spend",
        "Tenure",
        "AvgOrderValue",
        "Country",
    ]
    assert_same_customers(found, expected, shift=(report.reference_date - REFERENCE).days)
    countries = log.dropna(subset=["CustomerID"]).groupby("CustomerID")["Country"].first()
    assert found["Country"].tolist() == [countries[int(c)] for c in found["CustomerID"]]
    assert (found["Frequency"] >= 1).all() and (found["Recency"] >= 1).all()

    with_id = log[log["CustomerID"].notna()]
    returns = with_id[(with_id["Quantity"] < 0) | with_id["InvoiceNo"].str.startswith("C")]
    cancelled = with_id[with_id["InvoiceNo"].str.startswith("C")]
    assert report.rows_in == len(log)
    assert report.rows_without_customer == log["CustomerID"].isna().sum() > 0
    assert report.return_lines == len(returns) > 0
    assert report.return_value == pytest.approx(
        (returns["Quantity"].abs() * returns["UnitPrice"]).sum(), abs=0.005
    )
    assert report.cancelled_invoices == cancelled["InvoiceNo"].nunique() > 0
    assert report.returns_only_customers == 400 - len(expected) > 0
    assert report.customers == len(expected)
    assert report.dominant_id is None  # 400 customers with heavy-tailed spend: no till account
    assert report.unparseable_dates == report.unreadable_amounts == 0
    assert report.date_format == "iso"
    assert report.frequency_basis == "orders"
    assert report.roles == {
        "customer_id": "CustomerID",
        "order_id": "InvoiceNo",
        "date": "InvoiceDate",
        "quantity": "Quantity",
        "unit_price": "UnitPrice",
    }
    text = " ".join(report.messages())
    assert "no customer id" in text and "subtracted" in text and "only returned" in text
    manifest = plain(report)
    assert manifest["reference_date"] == report.reference_date.isoformat()
    assert manifest["customers"] == len(expected)
    # The pipeline's column detection finds the customer table's roles.
    assert {"customer_id", "spend", "recency", "frequency"} <= detect_mapping(found.columns).keys()


def test_reference_date_is_editable_and_the_result_can_be_cached(spark, generated):
    path, _, expected = generated
    df = read_table(spark, str(path)).df

    customers, report = build_customer_table(df, reference_date=date(2024, 2, 1), cache=True)
    try:
        assert customers.is_cached
        assert report.reference_date == date(2024, 2, 1)
        assert_same_customers(customers_frame(customers), expected, shift=31)
    finally:
        customers.unpersist()
    with pytest.raises(InputError, match="before the last order"):
        build_customer_table(df, reference_date=date(2023, 6, 1))


@pytest.mark.parametrize("date_format", ["month-first", "day-first", "yyyymmdd"])
def test_each_date_format_is_detected_and_gives_the_known_table(spark, tmp_path, date_format):
    log, expected = make_transactions(60, seed=11, date_format=date_format)
    path = tmp_path / "orders.csv"
    write_transactions(path, 60, seed=11, date_format=date_format)

    customers, report = build_customer_table(
        read_table(spark, str(path)).df, reference_date=REFERENCE
    )

    assert report.date_format == date_format
    assert report.unparseable_dates == 0
    assert_same_customers(customers_frame(customers), expected)


def test_returns_and_cancellations_are_netted_and_counted(spark):
    rows = [
        # invoice, stock, qty, date, price, customer, country
        ("1001", "A", "2", "2024-03-01 10:00", "10.00", "7", "UK"),
        ("1001", "B", "1", "2024-03-01 10:00", "5.00", "7", "UK"),
        ("1002", "A", "1", "2024-03-05", "10.00", "7", "UK"),
        ("C1003", "A", "-1", "2024-03-06", "10.00", "7", "UK"),  # cancellation
        ("1004", "B", "-1", "2024-03-07", "5.00", "7", "UK"),  # plain return line
        ("c1005", "A", "-2", "2024-03-08", "10.00", "8", "UK"),  # returns-only customer
        ("1006", "B", "3", "2024-03-02", "5.00", "9", "UK"),
        ("1007", "B", "3", "2024-03-02", "5.00", "", "UK"),  # no customer id
        ("1008", "B", "3", "2024-03-02", "5.00", None, "UK"),  # no customer id
    ]
    customers, report = build_customer_table(
        order_log(spark, rows), reference_date=date(2024, 3, 10)
    )
    found = customers_frame(customers).set_index("CustomerID")

    assert found.index.tolist() == ["7", "9"]
    assert found.loc["7"].tolist() == [5, 2, 20.0, 9, 17.5]  # 35 bought, 15 returned
    assert found.loc["9"].tolist() == [8, 1, 15.0, 8, 15.0]
    assert report.rows_in == 9
    assert report.rows_without_customer == 2
    assert report.return_lines == 3
    assert report.return_value == 35.0
    assert report.cancelled_invoices == 2
    assert report.returns_only_customers == 1
    assert report.returns_only_value == 20.0
    assert report.customers == 2
    assert report.first_date == date(2024, 3, 1) and report.last_date == date(2024, 3, 8)
    text = " ".join(report.messages())
    assert "2 order lines have no customer id" in text
    assert "3 return lines, including 2 cancelled invoices, worth 35.00" in text
    assert "1 customer only returned" in text


def test_amount_column_without_order_id_counts_purchase_days(spark):
    df = spark.createDataFrame(
        [
            ("a", "2024-01-02", "$1,200.50"),
            ("a", "2024-01-02", "10"),
            ("a", "2024-01-05", "-50"),  # a refund
            ("a", "2024-01-09", "20"),
            ("b", "2024-01-09", "n/a"),  # unreadable amount
            ("b", "2024-01-03", "30"),
        ],
        "customer_id string, order_date string, total string",
    )
    customers, report = build_customer_table(df, reference_date=date(2024, 1, 10))
    found = customers_frame(customers).set_index("CustomerID")

    assert report.roles == {"customer_id": "customer_id", "date": "order_date", "amount": "total"}
    assert report.frequency_basis == "days"
    assert found.loc["a"].tolist() == [1, 2, 1180.5, 8, 615.25]
    assert found.loc["b"].tolist() == [7, 1, 30.0, 7, 30.0]
    assert report.unreadable_amounts == 1
    assert report.return_lines == 1 and report.cancelled_invoices == 0
    assert any("distinct days" in m for m in report.messages())


def test_unparseable_dates_are_dropped_counted_and_shown(spark):
    rows = [
        ("1", "A", "1", "2024-03-01", "4.00", "7", "UK"),
        ("6", "A", "1", "2024-03-02", "4.00", "7", "UK"),
        ("2", "A", "1", "yesterday", "4.00", "7", "UK"),
        ("3", "A", "1", "2024-13-45", "4.00", "7", "UK"),
        ("4", "A", "1", "", "4.00", "7", "UK"),
        ("5", "A", "1", "soon", "4.00", "", "UK"),  # no customer: counted there only
    ]
    customers, report = build_customer_table(order_log(spark, rows))

    assert report.unparseable_dates == 3
    assert sorted(report.unparseable_examples) == ["'2024-13-45'", "'yesterday'"]
    assert report.rows_without_customer == 1
    assert customers_frame(customers)["Frequency"].tolist() == [2]
    assert any("no readable date" in m and "'yesterday'" in m for m in report.messages())


def test_every_date_format_parses_in_spark(spark):
    cases = {
        "iso": {
            "2024-03-01": date(2024, 3, 1),
            "2024-03-01 23:59:59": date(2024, 3, 1),
            "2024-3-1T08:00:00": date(2024, 3, 1),
            "2024/03/02": date(2024, 3, 2),
            "01/03/2024": None,
        },
        "yyyymmdd": {"20240301": date(2024, 3, 1), "20241231": date(2024, 12, 31)},
        "day-first": {
            "13/03/2024": date(2024, 3, 13),
            "1.3.2024": date(2024, 3, 1),
            "01-03-2024 8:26": date(2024, 3, 1),
            "1/3/24": date(2024, 3, 1),
            "31/12/2024 11:59 PM": date(2024, 12, 31),
            "03/13/2024": None,
        },
        "month-first": {
            "03/13/2024": date(2024, 3, 13),
            "12/1/2010 8:26": date(2010, 12, 1),
            "3/1/2024 8:26:10 pm": date(2024, 3, 1),
            "13/03/2024": None,
        },
    }
    values = sorted({v for case in cases.values() for v in case})
    df = spark.createDataFrame([(v,) for v in values], "d string")
    parsed = df.select(
        "d", *[date_expr(df, "d", DATE_FORMATS[name]).alias(name) for name in cases]
    ).collect()
    by_value = {row["d"]: row for row in parsed}

    for name, case in cases.items():
        for value, expected in case.items():
            assert by_value[value][name] == expected, (name, value)


def test_detect_date_format_from_samples():
    assert detect_date_format(["2024-03-01", "2024-03-02 10:00:00"]).name == "iso"
    assert detect_date_format(["20240301", "20241231"]).name == "yyyymmdd"
    assert detect_date_format(["01/03/2024", "31/03/2024"]).name == "day-first"
    assert detect_date_format(["1.3.2024 10:00", "13.3.2024"]).name == "day-first"
    assert detect_date_format(["03/01/2024", "12/31/2024 8:26"]).name == "month-first"
    with pytest.raises(InputError, match="not in a format"):
        detect_date_format(["soon", "later"])
    with pytest.raises(InputError, match="mix day-first and month-first"):
        detect_date_format(["13/01/2024", "01/13/2024"])


def test_ambiguous_slash_dates_raise_instead_of_guessing(spark):
    with pytest.raises(InputError) as raised:
        detect_date_format(["01/03/2024", "02/03/2024", "12/11/2024"])
    message = str(raised.value)
    assert "ambiguous" in message and "'01/03/2024'" in message
    assert "--date-format day-first" in message and "month-first" in message

    rows = [
        ("1", "A", "1", "01/03/2024", "4.00", "7", "UK"),
        ("2", "A", "2", "02/03/2024", "4.00", "8", "UK"),
    ]
    df = order_log(spark, rows)
    with pytest.raises(InputError, match="ambiguous"):
        build_customer_table(df)
    customers, report = build_customer_table(df, date_format="day-first")
    assert report.date_format == "day-first"
    assert report.last_date == date(2024, 3, 2)
    _, report = build_customer_table(df, date_format="month-first")
    assert report.last_date == date(2024, 2, 3)
    with pytest.raises(InputError, match="not a date format"):
        build_customer_table(df, date_format="weekday")


def test_a_telling_date_beyond_the_sample_settles_the_format(spark, monkeypatch):
    looked = []
    telling = order_dates._telling_dates
    monkeypatch.setattr(order_dates, "DATE_SAMPLE_SIZE", 2)
    monkeypatch.setattr(
        order_dates, "_telling_dates", lambda *args: looked.append(1) or telling(*args)
    )
    rows = [
        ("1", "A", "1", "01/03/2024", "4.00", "7", "UK"),
        ("2", "A", "1", "02/03/2024", "4.00", "7", "UK"),
        ("3", "A", "1", "03/25/2024", "4.00", "8", "UK"),
    ]
    _, report = build_customer_table(order_log(spark, rows).coalesce(1))

    assert looked  # the first two dates alone are ambiguous
    assert report.date_format == "month-first"


def test_c_prefix_is_not_a_cancellation_when_every_order_id_has_it(spark):
    rows = [
        ("CO-1", "A", "1", "2024-03-01", "4.00", "7", "UK"),
        ("CO-2", "A", "2", "2024-03-02", "4.00", "7", "UK"),
        ("CO-3", "A", "-1", "2024-03-03", "4.00", "7", "UK"),
    ]
    customers, report = build_customer_table(order_log(spark, rows))

    assert customers_frame(customers)[["Frequency", "Spend"]].values.tolist() == [[2, 8.0]]
    assert report.return_lines == 1 and report.cancelled_invoices == 0
    assert not report.cancellations_by_prefix
    assert any("start with 'C'" in m for m in report.messages())


def test_missing_roles_and_bad_overrides_are_explained(spark):
    df = spark.createDataFrame([("7", "2024-03-01")], "CustomerID string, InvoiceDate string")
    with pytest.raises(InputError, match="a line amount"):
        build_customer_table(df)
    with pytest.raises(InputError, match="not an order-log role"):
        detect_roles(["a", "b"], {"shoe_size": "a"})
    with pytest.raises(InputError, match="'Nope' chosen for order date is not in the file"):
        detect_roles(["CustomerID"], {"date": "Nope"})


def test_detect_roles_aliases_and_overrides():
    columns = ["order_id", "customer_id", "order_date", "qty", "price", "line_total"]
    assert detect_roles(columns) == {
        "customer_id": "customer_id",
        "order_id": "order_id",
        "date": "order_date",
        "amount": "line_total",
        "quantity": "qty",
        "unit_price": "price",
    }
    overridden = detect_roles(columns, {"amount": "", "date": "order_id", "order_id": "order_date"})
    assert "amount" not in overridden
    assert overridden["date"] == "order_id" and overridden["order_id"] == "order_date"


@pytest.mark.parametrize(
    ("columns", "kind"),
    [
        (list(TRANSACTION_COLUMNS), "transactions"),
        (["order_id", "customer_id", "order_date", "revenue"], "transactions"),
        (["Invoice", "Customer ID", "timestamp", "Qty", "Price"], "transactions"),
        (["CustomerID", "Age", "Spend", "Recency", "Frequency"], "customers"),
        (["CustomerID", "date", "amount", "Recency", "Frequency"], "customers"),
        (["CustomerID", "InvoiceDate", "Quantity"], "customers"),  # no price: not an order log
        (["id", "date", "total"], "customers"),  # a bare "id" is not a customer id here
    ],
)
def test_detect_input_kind(columns, kind):
    assert detect_input_kind(columns) == kind


def test_join_attributes_reports_missing_and_unmatched_customers(spark):
    customers = spark.createDataFrame(
        [("12346", 10, 2, 50.0), ("12347", 5, 1, 20.0), ("12348", 1, 4, 90.0)],
        "CustomerID string, Recency int, Frequency int, Spend double",
    )
    attributes = spark.createDataFrame(
        [
            ("12346.0", "34", "North", "1"),
            ("12347", "51", "South", "2"),
            ("12347", "51", "South", "2"),  # repeated
            ("99999", "40", "West", "3"),  # no such customer
            ("", "22", "East", "4"),  # no id
        ],
        "`Customer ID` string, Age string, Region string, Spend string",
    )
    joined, report = join_attributes(customers, attributes)
    found = joined.toPandas().sort_values("CustomerID", ignore_index=True)

    assert len(found) == 3
    assert found["Age"].tolist()[:2] == ["34", "51"] and pd.isna(found["Age"][2])
    assert found["Spend"].tolist() == [50.0, 20.0, 90.0]  # the customer table's own Spend
    assert found["Spend_attr"].tolist()[:2] == ["1", "2"]
    assert report.id_column == "Customer ID"
    assert report.columns == ["Age", "Region", "Spend_attr"]
    assert report.renamed == {"Spend": "Spend_attr"}
    assert report.customers == 3
    assert report.matched == 2
    assert report.customers_missing == 1
    assert report.unmatched_ids == 1
    assert report.duplicate_ids == 1
    assert report.rows_without_id == 1
    assert "1 customer of 3 has no row in the attribute table" in " ".join(report.messages())
    with pytest.raises(InputError, match="no customer id column"):
        join_attributes(customers, attributes.select("Age"))

    # The analyst's missing ids (any case, any spaces around) are no id here either.
    till = spark.createDataFrame([("walkin", "30", "West", "5")], attributes.schema)
    _, marked = join_attributes(
        customers, attributes.union(till), missing_ids=("99999", " WALKIN ")
    )
    assert (marked.unmatched_ids, marked.rows_without_id, marked.matched) == (0, 3, 2)


def test_written_log_equals_the_generated_one_across_chunks(tmp_path):
    log, expected = make_transactions(5000, seed=3, date_format="month-first")
    path = tmp_path / "orders.csv"

    lines = write_transactions(path, 5000, seed=3, date_format="month-first", chunk_customers=1)
    back = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "InvoiceDate": str})

    assert lines == len(log) == len(back)
    assert list(back.columns) == list(TRANSACTION_COLUMNS)
    assert back["InvoiceNo"].tolist() == log["InvoiceNo"].tolist()
    assert back["InvoiceDate"].tolist() == log["InvoiceDate"].tolist()
    assert np.allclose(back["UnitPrice"], log["UnitPrice"])
    assert back["CustomerID"].isna().tolist() == log["CustomerID"].isna().tolist()
    assert log["InvoiceNo"].str.startswith("C").any() and (log["Quantity"] < 0).any()
    assert (log.groupby("InvoiceNo").size() > 1).any()  # several lines per order
    assert expected["CustomerID"].is_unique and (expected["Frequency"] >= 1).all()
    assert (expected["Recency"].between(1, 365)).all()
    assert (expected["Tenure"] >= expected["Recency"]).all()


def test_placeholder_ids_and_a_till_account_in_a_real_shaped_log(spark, tmp_path):
    path = real_shaped_log(tmp_path / "gift-shop.csv")
    table, report = load_customer_table(spark, str(path))
    assert report is not None and report.date_format == "month-first"
    assert (report.rows_in, report.rows_without_customer, report.customers) == (100, 9, 25)
    assert report.missing_ids == {
        "(blank)": 3,
        "N/A": 2,
        "": 1,
        "(BLANK)": 1,
        "Guest": 1,
        "n / a": 1,
    }
    assert report.missing_id_spend_share == 0.086  # 9,000 of 104,650
    text = " ".join(report.messages())
    assert (
        "9 order lines (9% of spend) had no real customer id ('(blank)' 3, 'N/A' 2, empty 1, "
        "'(BLANK)' 1, 'Guest' 1, 'n / a' 1) and were left out." in text
    )
    assert report.dominant_id == DominantId("99999", 40, 0.4396, 0.0042, 13.3, "order lines")
    assert (
        "Customer id '99999' has 40 order lines (44% of the lines) and 0.4% of the spend, 13 "
        "times the next customer's order lines: it probably stands for orders without a "
        "customer"
        in text
        and "--missing-ids 99999" in text
    )
    found = customers_frame(table.df).set_index("CustomerID")
    assert list(found.columns) == [
        "Recency",
        "Frequency",
        "Spend",
        "Tenure",
        "AvgOrderValue",
        "Country",
    ]
    # Country is each customer's most frequent one; France and Germany tie: the first one.
    assert found.loc[["12346", "12347", "12348", "99999"], "Country"].tolist() == [
        "France",
        "Spain",
        "United Kingdom",
        "United Kingdom",
    ]
    assert found.loc[["12347", "12348", "12349"], "Spend"].tolist() == [3000.0, 3000.0, 5250.0]
    assert "'Country', as the customer's most frequent value" in text

    # Named as missing (the Upload page's field, --missing-ids), the till account is left out
    # like '(blank)'; the best real customer (5,250 of 95,250) is not named instead.
    table, report = load_customer_table(spark, str(path), LoadOptions(missing_ids=("99999",)))
    assert report is not None and report.dominant_id is None
    assert (report.rows_without_customer, report.customers) == (49, 24)
    assert list(report.missing_ids)[:2] == ["99999", "(blank)"]
    assert "99999" not in customers_frame(table.df)["CustomerID"].tolist()
