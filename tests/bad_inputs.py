"""The "Hardening" corpus: small awkward customer tables, and what the app must do with each.

Every case builds its file's bytes (binary and odd encodings are easier to generate than to
commit) and states the one acceptable outcome: a refusal with a specific message (command line
exit 2, an error on the Upload page and no Start), or a repair the report explains as a warning,
with the values the results must then hold. `write_corpus(folder)` writes every file, to look at.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

HEADER = ("CustomerID", "Age", "Spend", "Recency", "Frequency")


@dataclass(frozen=True)
class Customer:
    """One row of the base table: two clear groups (young frequent buyers, older big spenders)."""

    id: str
    age: int
    spend: float
    recency: int
    frequency: int


CUSTOMERS = [
    Customer(
        id=f"C{i + 1:02d}",
        age=25 + i if i < 6 else 50 + i,
        spend=120.0 + 10 * i if i < 6 else 1500.0 + 100 * i,
        recency=5 + i if i < 6 else 60 + i,
        frequency=10 - i % 3 if i < 6 else 2 + i % 2,
    )
    for i in range(12)
]
SPEND = {c.id: c.spend for c in CUSTOMERS}


@dataclass(frozen=True)
class Case:
    """One file of the corpus and the outcome it must have.

    error: key words of the refusal (stderr with exit 2; an st.error on the Upload page).
    warnings: key words of the repair warnings (command line notes; st.warning on the page).
    values / features / filled: what the results of a repaired run must hold (the chart sample:
    parsed feature values per customer id; the features used; missing values filled).
    The app_* fields say where the Upload page differs from the command line, which runs with
    the default features and k.
    """

    name: str
    filename: str
    content: Callable[[], bytes]
    error: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    k: int = 2
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    features: tuple[str, ...] | None = None
    filled: dict[str, int] = field(default_factory=dict)
    rows: int = 12
    app_error: tuple[str, ...] | None = None  # None: the same as `error`
    app_warnings: tuple[str, ...] | None = None  # None: the same as `warnings`
    app_info: tuple[str, ...] = ()
    app_start: bool | None = None  # None: Start is offered exactly when there is no error

    @property
    def refused(self) -> bool:
        return bool(self.error)


# ---- builders ---------------------------------------------------------------------------


def table(
    rows: list[list[object]],
    header: tuple[str, ...] | list[str] = HEADER,
    sep: str = ",",
    eol: str = "\n",
    encoding: str = "utf-8",
) -> bytes:
    """A delimited text file, quoted where needed, as bytes in `encoding`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator=eol)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def base_rows(n: int = 12, spend: Callable[[Customer], object] | None = None) -> list[list]:
    """The first `n` base customers as rows of HEADER, Spend written by `spend` if given."""
    return [
        [c.id, c.age, spend(c) if spend else c.spend, c.recency, c.frequency] for c in CUSTOMERS[:n]
    ]


def base_csv(n: int = 12, **kwargs) -> bytes:
    return table(base_rows(n), **kwargs)


def with_column(name: str, value: Callable[[int], object], header_first: bool = False) -> bytes:
    """The base table plus one column (last, or first with `header_first`)."""
    rows = base_rows()
    if header_first:
        return table([[value(i), *r] for i, r in enumerate(rows)], header=(name, *HEADER))
    return table([[*r, value(i)] for i, r in enumerate(rows)], header=(*HEADER, name))


def spend_as(texts: list[str]) -> bytes:
    """The base table with Spend written as the given texts, one per customer."""
    return table([[*r[:2], t, *r[3:]] for r, t in zip(base_rows(), texts, strict=True)])


def xlsx() -> bytes:
    """A (minimal) Excel workbook: a zip archive with the parts a real .xlsx has."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:
        book.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        book.writestr("xl/workbook.xml", "<workbook/>")
        book.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return buffer.getvalue()


def binary() -> bytes:
    return b"\x7fELF\x02\x01\x01\x00" + random.Random(7).randbytes(2048)


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def string_parquet() -> bytes:
    """Parquet whose numbers were stored as text, the way some exports type every column."""
    frame = pd.DataFrame(base_rows(), columns=list(HEADER)).astype(str)
    frame["Spend"] = [f"${c.spend:,.2f}" for c in CUSTOMERS]
    return parquet(frame)


def wide() -> bytes:
    """201 columns: an id, the four features and 196 numeric measurements."""
    extra = [f"m{j:03d}" for j in range(196)]
    rows = [[*r, *[(i * 7 + j) % 13 for j in range(196)]] for i, r in enumerate(base_rows())]
    return table(rows, header=(*HEADER, *extra))


def ragged(extra_fields: bool) -> bytes:
    """Rows with missing trailing fields, or with an unquoted comma inside a number."""
    lines = [",".join(HEADER)]
    for c in CUSTOMERS:
        if extra_fields and c.id in ("C07", "C09"):  # '$2,100.00' unquoted: one field too many
            lines.append(f"{c.id},{c.age},${c.spend:,.2f},{c.recency},{c.frequency}")
        elif not extra_fields and c.id in ("C03", "C09"):
            lines.append(f"{c.id},{c.age},{c.spend}")
        else:
            lines.append(f"{c.id},{c.age},{c.spend},{c.recency},{c.frequency}")
    return ("\n".join(lines) + "\n").encode()


# ---- the corpus --------------------------------------------------------------------------

CORPUS = [
    # Files that are not a customer table at all.
    Case("empty", "empty.csv", lambda: b"", error=("The file is empty", "Export")),
    Case("blank_lines", "blank.csv", lambda: b"\n  \n\n", error=("The file is empty",)),
    Case("binary", "data.csv", binary, error=("binary data", "CSV export")),
    Case("xlsx_renamed", "customers.csv", xlsx, error=("Excel workbook", "save it as CSV")),
    Case(
        "xls_renamed",
        "customers.csv",
        lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512),
        error=("old Excel (.xls) workbook", "save it as CSV"),
    ),
    Case(
        "gzip_truncated",
        "customers.csv.gz",
        lambda: gzip.compress(base_csv())[:60],
        error=("gzip", "cannot be decompressed", "upload the uncompressed CSV"),
    ),
    Case(
        "parquet_damaged",
        "customers.parquet",
        lambda: b"PAR1" + bytes(64) + b"PAR1",
        error=("Parquet file could not be read", "upload a CSV"),
    ),
    # Too little data.
    Case(
        "header_only",
        "header.csv",
        lambda: base_csv(0),
        error=("header but no customer rows",),
    ),
    Case(
        "one_row",
        "one.csv",
        lambda: base_csv(1),
        error=("1 customer row,", "fewer than the 2 segments"),
        # The page's k slider goes up to max(3, rows) and starts there: it asks for 3.
        app_error=("1 customer row,", "fewer than the 3 segments"),
    ),
    Case(
        "fewer_rows_than_k",
        "three.csv",
        lambda: base_csv(3),
        k=4,
        error=("3 customer rows", "fewer than the 4 segments", "at most 3 segments"),
        app_error=(),  # the page offers k up to the number of rows: 3 rows, k=3
    ),
    Case(
        "only_id_column",
        "ids.csv",
        lambda: table([[c.id] for c in CUSTOMERS], header=("CustomerID",)),
        error=("No 'Age' column", "No 'Spend' column", "The file has: CustomerID", "--features"),
        app_error=("Choose at least one numeric feature",),
        app_info=("No 'Age' column", "No 'Spend' column", "No 'Recency' column"),
    ),
    Case(
        "near_miss_spendings",
        "near.csv",
        lambda: table(
            base_rows(), header=("CustomerID", "Age", "Spendings", "Recency", "Frequency")
        ),
        error=("No 'Spend' column", "Did you mean 'Spendings'", "--features"),
        # On the page this is a hint next to the role pickers; the other features still work.
        app_error=(),
        app_info=("No 'Spend' column", "Did you mean 'Spendings'"),
    ),
    Case(
        "all_missing_column",
        "no_recency.csv",
        lambda: table([[*r[:3], "", r[4]] for r in base_rows()]),
        error=("Column 'Recency' has no values at all", "choose other features"),
        app_error=(),  # the page leaves the empty column out of its features and says why
        app_info=("Column 'Recency' has no values at all",),
    ),
    Case(
        "text_instead_of_numbers",
        "words.csv",
        lambda: spend_as(["high" if c.spend > 1000 else "low" for c in CUSTOMERS]),
        error=("Column 'Spend' holds text, not numbers", "12 of 12 values", "'low'"),
        app_error=(),  # the page leaves the text column out of its features and says why
        app_info=("Column 'Spend' holds text, not numbers",),
    ),
    Case(
        "unquoted_separator_in_numbers",
        "shifted.csv",
        lambda: ragged(extra_fields=True),
        error=("2 rows have more fields than the header's 5", "'C07,56,$2,100.00,66,2'", "quotes"),
    ),
    # Dialects, encodings and containers read as they are.
    Case(
        "semicolon",
        "semicolon.csv",
        lambda: base_csv(sep=";"),
        values={"Spend": SPEND},
    ),
    Case("tab", "customers.tsv", lambda: base_csv(sep="\t"), values={"Spend": SPEND}),
    Case("crlf", "windows.csv", lambda: base_csv(eol="\r\n"), values={"Spend": SPEND}),
    Case(
        "utf8_bom",
        "bom.csv",
        lambda: b"\xef\xbb\xbf" + base_csv(),
        values={"Spend": SPEND},
        features=("Age", "Spend", "Recency", "Frequency"),
    ),
    Case(
        "latin1",
        "latin1.csv",
        lambda: table(
            [[f"Zoë-{r[0]}", *r[1:], "Île-de-France"] for r in base_rows()],
            header=(*HEADER, "Région"),
            encoding="latin-1",
        ),
        values={"Spend": {f"Zoë-{c.id}": c.spend for c in CUSTOMERS}},
    ),
    Case(
        "windows1252_euro",
        "euro.csv",
        lambda: table(
            [
                [*r[:2], f"€{c.spend:.2f}", *r[3:]]
                for r, c in zip(base_rows(), CUSTOMERS, strict=True)
            ],
            encoding="cp1252",
        ),
        values={"Spend": SPEND},
    ),
    Case(
        "utf16_excel_unicode_text",
        "unicode.txt",
        lambda: base_csv(sep="\t", eol="\r\n", encoding="utf-16"),
        values={"Spend": SPEND},
    ),
    Case(
        "gzip",
        "customers.csv.gz",
        lambda: gzip.compress(base_csv()),
        values={"Spend": SPEND},
    ),
    Case(
        "parquet_string_numbers",
        "typed_as_text.parquet",
        string_parquet,
        values={"Spend": SPEND},
        features=("Age", "Spend", "Recency", "Frequency"),
    ),
    Case(
        "quoted_commas_and_newlines",
        "notes.csv",
        lambda: with_column("Note", lambda i: f"likes red, blue\nand green ({i})"),
        values={"Spend": SPEND},
    ),
    Case(
        "long_field",
        "long.csv",
        lambda: with_column("Note", lambda i: ("x" * 100_000) if i == 4 else "short"),
        values={"Spend": SPEND},
    ),
    Case(
        "padded_and_mixed_case_names",
        "names.csv",
        lambda: table(
            base_rows(), header=(" customer_id", " AGE ", "spend", "Recency ", "FREQUENCY")
        ),
        values={"spend": SPEND},
        features=("AGE", "spend", "Recency", "FREQUENCY"),
    ),
    Case(
        "wide_201_columns",
        "wide.csv",
        wide,
        values={"Spend": SPEND},
        features=("Age", "Spend", "Recency", "Frequency"),
    ),
    # Values that need a repair, or a look.
    Case(
        "currency_and_thousands",
        "money.csv",
        lambda: spend_as(
            [
                f"${c.spend:,.2f}"
                if i % 4 == 0
                else f"€ {c.spend:,.0f}"
                if i % 4 == 1
                else f"{c.spend:,.0f}".replace(",", " ")
                if i % 4 == 2
                else f"£{c.spend:,.2f}"
                for i, c in enumerate(CUSTOMERS)
            ]
        ),
        values={"Spend": SPEND},
    ),
    Case(
        "numbers_as_text",
        "quoted_numbers.csv",
        lambda: spend_as(
            [
                f"'{c.spend:.0f}'"
                if i % 3 == 0
                else f"{c.spend:.1f}"
                if i % 3 == 1
                else f'"{c.spend:.0f}"'
                for i, c in enumerate(CUSTOMERS)
            ]
        ),
        values={"Spend": SPEND},
    ),
    Case(
        "missing_tokens",
        "gaps.csv",
        lambda: spend_as(["N/A", "null", "-", "", *[f"{c.spend}" for c in CUSTOMERS[4:]]]),
        warnings=("4 missing values", "'Spend'", "median"),  # to be filled, then filled
        filled={"Spend": 4},
        values={"Spend": {"C05": 160.0, "C01": 2200.0}},
    ),
    Case(
        "infinities",
        "inf.csv",
        lambda: spend_as(["inf", "Infinity", "-inf", *[f"{c.spend}" for c in CUSTOMERS[3:]]]),
        warnings=("3 values in 'Spend' are not a number", "'inf'", "treated as missing"),
        filled={"Spend": 3},
    ),
    Case(
        "huge_values",
        "huge.csv",
        lambda: spend_as(["1e308", *[f"{c.spend}" for c in CUSTOMERS[1:]]]),
        warnings=("1 value in 'Spend' is not a number", "'1e308'", "treated as missing"),
        filled={"Spend": 1},
    ),
    Case(
        "negative_spend",
        "refunds.csv",
        lambda: spend_as(["-250.00", "-10", *[f"{c.spend}" for c in CUSTOMERS[2:]]]),
        warnings=("2 negative values in 'Spend'", "lowest -250", "refunds"),
        values={"Spend": {"C01": -250.0, "C02": -10.0, "C12": SPEND["C12"]}},
    ),
    Case(
        "constant_column",
        "constant.csv",
        lambda: table([[*r[:4], 3] for r in base_rows()]),
        warnings=("'Frequency' has the same value (3) for every customer", "left out"),
        features=("Age", "Spend", "Recency"),
    ),
    Case(
        "duplicate_header_names",
        "twice.csv",
        lambda: table(
            [[*r, c.spend * 2] for r, c in zip(base_rows(), CUSTOMERS, strict=True)],
            header=(*HEADER, "Spend"),
        ),
        warnings=("'Spend' appears more than once in the header", "column 6 is read as 'Spend_2'"),
        values={"Spend": SPEND},
    ),
    Case(
        "duplicate_customer_ids",
        "dupes.csv",
        lambda: table([["C01" if r[0] == "C02" else r[0], *r[1:]] for r in base_rows()]),
        warnings=("1 customer id in 'CustomerID' appear", "'C01' ×2"),
    ),
    Case(
        "pandas_index_blank_header",
        "index.csv",
        lambda: with_column("", lambda i: i, header_first=True),
        warnings=("Column 1 has no name", "row numbers (0 to 11)", "not used as a feature"),
        features=("Age", "Spend", "Recency", "Frequency"),
        values={"Spend": SPEND},
    ),
    Case(
        "pandas_index_unnamed",
        "unnamed.csv",
        lambda: with_column("Unnamed: 0", lambda i: i, header_first=True),
        warnings=("Column 'Unnamed: 0' holds row numbers (0 to 11)", "not used as a feature"),
        features=("Age", "Spend", "Recency", "Frequency"),
    ),
    Case(
        "short_rows",
        "short_rows.csv",
        lambda: ragged(extra_fields=False),
        warnings=("2 rows have fewer fields than the header", "C03", "missing"),
        filled={"Recency": 2, "Frequency": 2},
    ),
    Case(
        "decimal_comma",
        "comma_decimals.csv",
        lambda: table(
            [
                [*r[:2], f"{c.spend:.2f}".replace(".", ","), *r[3:]]
                for r, c in zip(base_rows(), CUSTOMERS, strict=True)
            ],
            sep=";",
        ),
        error=("Column 'Spend' holds text", "decimal comma", "'120,00'"),
        app_error=(),
        app_info=("Column 'Spend' holds text", "decimal comma"),
    ),
]


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write every file of the corpus into `folder` (one sub-folder per case)."""
    paths = {}
    for case in CORPUS:
        path = folder / case.name / case.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.content())
        paths[case.name] = path
    return paths


if __name__ == "__main__":  # python -m tests.bad_inputs FOLDER: write the files to look at
    import sys

    for name, path in write_corpus(Path(sys.argv[1])).items():
        print(f"{name:35} {path}")
