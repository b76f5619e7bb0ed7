"""Reading: dialects, encodings, compression and Parquet, and files that are not tables."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from segmentation.errors import InputError
from segmentation.reading import clean_header, number_expr, read_table, sniff, storage_suffix
from tests.helpers import SAMPLE, write_text

HEADER = "CustomerID,Age,Spend,Recency,Frequency\n"
ROWS = "C1,30,100.5,10,3\nC2,40,200,20,4\nC3,50,300,30,5\n"


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        (HEADER + ROWS, ","),
        ((HEADER + ROWS).replace(",", ";"), ";"),
        ((HEADER + ROWS).replace(",", "\t"), "\t"),
    ],
)
def test_delimiter_is_detected_and_rows_read(spark, tmp_path, text, delimiter):
    path = write_text(tmp_path / "c.csv", text)
    table = read_table(spark, str(path))
    assert table.format.delimiter == delimiter
    assert table.columns == ["CustomerID", "Age", "Spend", "Recency", "Frequency"]
    assert [r["Spend"] for r in table.df.collect()] == ["100.5", "200", "300"]


def test_utf8_bom_does_not_leak_into_the_first_column_name(spark, tmp_path):
    path = write_text(tmp_path / "bom.csv", "\ufeff" + HEADER + ROWS)
    table = read_table(spark, str(path))
    assert table.columns[0] == "CustomerID"
    assert table.df.count() == 3


def test_latin1_is_read_with_its_accents(spark, tmp_path):
    path = write_text(
        tmp_path / "l1.csv", HEADER.strip() + ",Région\n" + "C1,30,100,10,3,Île\n", "latin-1"
    )
    table = read_table(spark, str(path))
    assert table.format.encoding == "ISO-8859-1"
    assert table.columns[-1] == "Région"
    assert table.df.collect()[0]["Région"] == "Île"


def test_gzip_csv_is_decompressed(spark, tmp_path):
    path = tmp_path / "c.csv.gz"
    path.write_bytes(gzip.compress((HEADER + ROWS).encode()))
    assert storage_suffix(str(path)) == ".csv.gz"
    table = read_table(spark, str(path))
    assert table.format.compression == "gzip"
    assert table.df.count() == 3


def test_parquet_keeps_its_types(spark, tmp_path):
    path = tmp_path / "c.parquet"
    pd.read_csv(SAMPLE).to_parquet(path)
    table = read_table(spark, str(path))
    assert table.format.kind == "parquet"
    assert table.df.count() == 30
    assert dict(table.df.dtypes)["Age"] == "bigint"


def test_quoted_fields_with_commas_and_newlines(spark, tmp_path):
    text = (
        HEADER.strip()
        + ",Note\n"
        + 'C1,30,100,10,3,"likes red, blue\nand green"\nC2,40,200,20,4,plain\n'
    )
    table = read_table(spark, str(write_text(tmp_path / "q.csv", text)))
    assert table.format.multiline
    notes = [r["Note"] for r in table.df.collect()]
    assert notes == ["likes red, blue\nand green", "plain"]


def test_numbers_with_currency_and_thousands_are_parsed(spark):
    df = spark.createDataFrame(
        [("$1,550.00",), (" 42 ",), ("1 200",), ("€3",), ("abc",), ("Infinity",), ("1,5",)], ["v"]
    )
    values = [r[0] for r in df.select(number_expr(df, "v")).collect()]
    assert values == [1550.0, 42.0, 1200.0, 3.0, None, None, None]


def test_header_names_are_cleaned_and_made_unique():
    assert clean_header([" Spend ", "spend", "", "a.b", "\ufeffId"]) == (
        "Spend",
        "spend_2",
        "column_3",
        "a_b",
        "Id",
    )


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"PK\x03\x04rest-of-a-zip", "Excel workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1", "old Excel"),
        (b"%PDF-1.7 ...", "PDF"),
        (b"abc\x00\x01\x02def", "binary"),
    ],
)
def test_files_that_are_not_tables_are_refused_clearly(tmp_path, content, needle):
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle):
        sniff(str(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        sniff(str(tmp_path / "nope.csv"))
