"""Reading customer tables: CSV (any common dialect, gzip) and Parquet, into Spark."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segmentation.errors import InputError
from segmentation.spark_engine import engine_failure
from segmentation.sql import quoted, string

SNIFF_BYTES = 256 * 1024
MALFORMED = "__malformed_row"  # Spark's copy of a CSV row whose field count is not the header's
MAX_MAGNITUDE = (
    1e150  # larger values overflow when squared (scaling, distances): not usable numbers
)
# What a number can start with once spaces are trimmed (signs, currencies, quotes, white space).
NUMBER_STARTS = tuple("0123456789+-.$€£¥%'\"’\u00a0\t\r\n\x0b\x0c")
NOISE = r"[\s$€£¥%\u00a0'\"’]"  # characters a number may carry: spaces, currencies, quotes
THOUSANDS = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"  # '1,550' or '1,550.00'
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none", "-", "--", "?", "#n/a", "missing")
# What exports write where a customer id is unknown, besides the missing-value tokens: a
# spreadsheet pivot writes '(blank)', shops '0', 'guest' or 'unknown'. Read as missing ids (never
# as one customer), compared without case and spaces ('Not Available', ' N / A ').
ID_PLACEHOLDERS = (
    *MISSING_TOKENS,
    "(blank)",
    "blank",
    "(empty)",
    "empty",
    "(null)",
    "(none)",
    "nil",
    "n.a.",
    "not available",
    "not applicable",
    "unknown",
    "(unknown)",
    "undefined",
    "#value!",
    "#ref!",
    "0",
    "-1",
    "guest",
    "anonymous",
    "no id",
)
_NOT_A_TABLE = {
    b"PK\x03\x04": "an Excel workbook or another zip archive",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) workbook",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
}


@dataclass(frozen=True)
class SourceFormat:
    """How a file is laid out, found by looking at its first bytes."""

    kind: str  # "csv" or "parquet"
    compression: str = ""  # "gzip" or ""
    delimiter: str = ","
    encoding: str = "UTF-8"
    multiline: bool = False
    header: tuple[str, ...] = field(default_factory=tuple)
    renamed: tuple[tuple[int, str, str], ...] = ()  # (position, name in the file, name used)

    def describe(self) -> str:
        """One line for the validation report, e.g. 'CSV, semicolon-separated, UTF-8'."""
        if self.kind == "parquet":
            return "Parquet"
        names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
        parts = [f"CSV, {names.get(self.delimiter, repr(self.delimiter))}-separated", self.encoding]
        if self.compression:
            parts.append(self.compression)
        return ", ".join(parts)


@dataclass
class Table:
    """A loaded input: the Spark DataFrame (all CSV columns as text) and where it came from."""

    df: DataFrame
    path: str
    format: SourceFormat
    names: list[str] | None = None  # the input's columns when df carries helper columns too
    unique_ids: bool = False  # one row per customer id by construction (built from an order log)
    missing_ids: tuple[str, ...] = ()  # ids the analyst says stand for no customer

    @property
    def columns(self) -> list[str]:
        return list(self.names) if self.names is not None else list(self.df.columns)


def _local_path(path: str) -> Path | None:
    if path.startswith("file://"):
        return Path(path[len("file://") :])
    return None if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) else Path(path)


def _head_bytes(path: Path) -> tuple[bytes, str]:
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as gz:
            try:
                return gz.read(SNIFF_BYTES), "gzip"
            except (OSError, EOFError) as exc:
                raise InputError(
                    "The file looks like gzip but cannot be decompressed.",
                    hint="Upload the file again, or upload the uncompressed CSV.",
                ) from exc
    return head, ""


def _decode(head: bytes) -> tuple[str, str]:
    if head.startswith(b"\xef\xbb\xbf"):
        return head[3:].decode("utf-8", errors="ignore"), "UTF-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="ignore"), "UTF-16"
    cut = head[: head.rfind(b"\n") + 1] or head
    try:
        return cut.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    # Bytes 0x80-0x9F are control characters in Latin-1 but '€', '…', curly quotes in Windows'
    # code page, which Excel writes on Windows: read as Latin-1, a '€1,550' would not be a number.
    if re.search(rb"[\x80-\x9f]", cut):
        try:
            return cut.decode("cp1252"), "windows-1252"
        except UnicodeDecodeError:
            pass
    return cut.decode("latin-1"), "ISO-8859-1"


def _delimiter(text: str) -> str:
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in ",;\t|"} if lines else {}
        best = max(counts, key=lambda d: counts[d], default=",")
        return best if counts.get(best) else ","


def clean_header(names: list[str]) -> tuple[str, ...]:
    """Trim names, name blank ones, and make repeated names unique (Spend, Spend_2)."""
    seen: dict[str, int] = {}
    result = []
    for position, raw in enumerate(names, start=1):
        name = raw.replace("\ufeff", "").strip() or f"column_{position}"
        name = re.sub(r"[.`]", "_", name)  # Spark treats dots and backticks specially
        key = name.lower()
        seen[key] = seen.get(key, 0) + 1
        result.append(name if seen[key] == 1 else f"{name}_{seen[key]}")
    return tuple(result)


def _renamed(raw: list[str], cleaned: tuple[str, ...]) -> tuple[tuple[int, str, str], ...]:
    """Columns whose header name was blank or repeated, and the name they are read under."""
    return tuple(
        (position, name.replace("\ufeff", "").strip(), new)
        for position, (name, new) in enumerate(zip(raw, cleaned, strict=True), start=1)
        if not name.replace("\ufeff", "").strip()
        or re.sub(r"[.`]", "_", name.replace("\ufeff", "").strip()) != new
    )


def sniff(path: str) -> SourceFormat:
    """Find the format, compression, delimiter, encoding and header of a local file."""
    local = _local_path(path)
    if local is None:
        return SourceFormat(kind="parquet" if "parquet" in path.lower() else "csv")
    if local.is_dir():
        return _sniff_folder(local)
    if not local.exists():
        raise InputError(f"The file '{local.name}' does not exist.")
    if local.stat().st_size == 0:
        raise InputError(
            "The file is empty.", hint="Export the customer table again and upload it."
        )
    head, compression = _head_bytes(local)
    if head.startswith(b"PAR1"):
        return SourceFormat(kind="parquet")
    _refuse_non_tables(head)
    return _sniff_csv(head, compression)


def _sniff_folder(folder: Path) -> SourceFormat:
    """A folder of Parquet parts, or of CSV files laid out like its first one."""
    files = [p for p in folder.iterdir() if not p.name.startswith(("_", "."))]
    if any(p.suffix == ".parquet" for p in files):
        return SourceFormat(kind="parquet")
    if not files:
        raise InputError(f"The folder '{folder.name}' holds no data files.")
    return sniff(str(sorted(files)[0]))


def _refuse_non_tables(head: bytes) -> None:
    """Refuse a file whose first bytes show it is no text table (a workbook, PDF, image...)."""
    for magic, what in _NOT_A_TABLE.items():
        if head.startswith(magic):
            raise InputError(
                f"This file is not a CSV or Parquet table; it looks like {what}.",
                hint="Open it in your spreadsheet program and save it as CSV (UTF-8).",
            )
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            "This file is not a text table: it contains binary data.",
            hint="Upload a CSV export (or a Parquet file) of the customer table.",
        )


def _sniff_csv(head: bytes, compression: str) -> SourceFormat:
    """The dialect, encoding and header of a CSV file from its first bytes (decompressed)."""
    text, encoding = _decode(head)
    if not text.strip():
        raise InputError(
            "The file is empty.", hint="Export the customer table again and upload it."
        )
    delimiter = _delimiter(text)
    records = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = next((r for r in records if any(cell.strip() for cell in r)), [])
    # Spark splits lines on the byte '\n' unless multiLine: UTF-16 text must be read whole.
    multiline = encoding == "UTF-16" or any(
        "\n" in cell or "\r" in cell for row in records for cell in row
    )
    names = clean_header(header)
    return SourceFormat(
        kind="csv",
        compression=compression,
        delimiter=delimiter,
        encoding=encoding,
        multiline=multiline,
        header=names,
        renamed=_renamed(header, names),
    )


def storage_suffix(path: str) -> str:
    """The file-name suffix Spark needs to read `path` (it picks gzip by suffix alone)."""
    fmt = sniff(path)
    if fmt.kind == "parquet":
        return ".parquet"
    return ".csv.gz" if fmt.compression else ".csv"


def read_table(spark: SparkSession, path: str, keep_malformed: bool = False) -> Table:
    """Load a CSV (every column as text, cleaned later) or Parquet file as a Spark DataFrame.

    With `keep_malformed`, a local CSV's DataFrame also carries Spark's copy of each row whose
    field count is not the header's (MALFORMED), so one pass can both read and check the file.
    """
    fmt = sniff(path)
    local = _local_path(path)
    # Absolute: a Spark Connect server or cluster resolves relative paths against its own
    # working directory, not this process's.
    location = str(local.absolute()) if local is not None else path
    if fmt.kind == "parquet":
        try:
            df = spark.read.parquet(location)
        except Exception as exc:
            if engine_failure(exc):
                raise
            raise InputError(
                "The Parquet file could not be read; it may be damaged or not Parquet at all.",
                hint="Export it again, or upload a CSV instead.",
            ) from exc
        renamed = clean_header(df.columns)
        fmt = replace(fmt, header=renamed, renamed=_renamed(df.columns, renamed))
        df = df.toDF(*renamed)
        return Table(df=df, path=path, format=fmt)
    if local is None:  # a cluster location (hdfs://, s3a://, ...): Spark reads the header itself
        df = spark.read.options(header=True, quote='"', escape='"', mode="PERMISSIVE").csv(location)
        return Table(df=df.toDF(*clean_header(df.columns)), path=path, format=fmt)
    if not fmt.header:
        raise InputError("The file has no header row.", hint="Add a first line naming the columns.")
    extra = (MALFORMED,) if keep_malformed else ()
    schema = T.StructType([T.StructField(name, T.StringType()) for name in (*fmt.header, *extra)])
    options = {"columnNameOfCorruptRecord": MALFORMED} if keep_malformed else {}
    df = _csv_reader(spark, fmt, **options).schema(schema).csv(location)
    if fmt.encoding == "windows-1252":
        df = df.select(*[_from_cp1252(name).alias(name) for name in fmt.header], *extra)
    return Table(df=df, path=path, format=fmt, names=list(fmt.header) if extra else None)


def _cp1252_pairs() -> tuple[str, str]:
    pairs = []
    for code in range(0x80, 0xA0):
        try:
            pairs.append((chr(code), bytes([code]).decode("cp1252")))
        except UnicodeDecodeError:  # five codes Windows leaves undefined
            continue
    return "".join(a for a, _ in pairs), "".join(b for _, b in pairs)


def _from_cp1252(name: str) -> Column:
    """A column read as Latin-1, with Windows' '€', '…', '’' etc. in place of 0x80-0x9F."""
    latin1, windows = _cp1252_pairs()
    return F.translate(F.col(f"`{name}`"), latin1, windows)


def _csv_reader(spark: SparkSession, fmt: SourceFormat, **options):
    # Spark reads no Windows code page: its bytes are read as Latin-1 and mapped (_from_cp1252).
    encoding = "ISO-8859-1" if fmt.encoding == "windows-1252" else fmt.encoding
    return spark.read.options(
        header=True,
        sep=fmt.delimiter,
        encoding=encoding,
        quote='"',
        escape='"',
        multiLine=fmt.multiline,
        mode="PERMISSIVE",
        enforceSchema=True,
        **options,
    )


@dataclass
class RaggedRows:
    """Rows whose number of fields differs from the header's, with a few of them as examples."""

    fields: int  # the header's
    more: int = 0
    fewer: int = 0
    more_examples: list[str] = field(default_factory=list)
    fewer_examples: list[str] = field(default_factory=list)


def _fields(raw: Column, fmt: SourceFormat) -> Column:
    """Fields of a malformed row's raw text: split on separators outside quotes, trailing empty
    ones ignored (a separator at the end of every line is harmless); null for other rows."""
    sep = re.escape(fmt.delimiter)
    trimmed = F.regexp_replace(raw, rf"[{sep}\s]+$", "")
    return F.when(raw.isNotNull(), F.size(F.split(trimmed, rf'{sep}(?=(?:[^"]*"[^"]*")*[^"]*$)')))


def ragged_aggregates(table: Table) -> list[Column]:
    """Counts of rows with more (`__more`) and fewer (`__fewer`) fields than the header, to add to
    a pass over a table read with keep_malformed; none for other tables."""
    if MALFORMED not in table.df.columns:
        return []
    fields = _fields(F.col(MALFORMED), table.format)
    wanted = len(table.format.header)
    return [
        F.sum((fields > wanted).cast("int")).alias("__more"),
        F.sum((fields < wanted).cast("int")).alias("__fewer"),
    ]


def ragged_rows(table: Table, counted: Mapping[str, Any] | None = None) -> RaggedRows | None:
    """Rows of a local CSV with more or fewer fields than its header (None for other inputs).

    Spark fills a short row with nulls and drops a long row's extra fields without a word, so
    an unquoted '1,550' would shift every later value of its row. `counted` holds the counts of
    ragged_aggregates from a pass already made; otherwise the file is parsed once more.
    """
    fmt = table.format
    local = _local_path(table.path)
    if fmt.kind != "csv" or not fmt.header or local is None:
        return None
    if counted is not None and MALFORMED in table.df.columns:
        rows = table.df
    else:
        schema = T.StructType(
            [T.StructField(name, T.StringType()) for name in (*fmt.header, MALFORMED)]
        )
        rows = (
            _csv_reader(table.df.sparkSession, fmt, columnNameOfCorruptRecord=MALFORMED)
            .schema(schema)
            .csv(str(local.absolute()))
        )
    raw = F.col(MALFORMED)
    # Every column is referenced: Spark parses only the columns a query needs, and only a row
    # parsed whole is checked against the header (nor does it allow a query on raw text alone).
    flagged = rows.select(
        raw.alias("raw"),
        _fields(raw, fmt).alias("fields"),
        F.coalesce(*[F.col(f"`{name}`") for name in fmt.header]).alias("first"),
    )
    wanted = len(fmt.header)
    if counted is None or MALFORMED not in table.df.columns:
        counted = (
            flagged.agg(
                F.count("first").alias("rows"),  # references every column (see above)
                F.sum((F.col("fields") > wanted).cast("int")).alias("__more"),
                F.sum((F.col("fields") < wanted).cast("int")).alias("__fewer"),
            )
            .collect()[0]
            .asDict()
        )
    found = RaggedRows(wanted, counted["__more"] or 0, counted["__fewer"] or 0)

    def examples(condition: Column) -> list[str]:
        picked = flagged.where(condition).select("raw", "first").limit(3).collect()
        return [" ".join(r["raw"].split())[:80] for r in picked]

    if found.more:
        found.more_examples = examples(F.col("fields") > wanted)
    if found.fewer:
        found.fewer_examples = examples(F.col("fields") < wanted)
    return found


def is_numeric_type(data_type: T.DataType) -> bool:
    """True for Spark's integer, decimal and floating types."""
    return isinstance(data_type, T.NumericType)


def _column_sql(df: DataFrame, column: str) -> tuple[str, T.DataType]:
    return quoted(column), df.schema[column].dataType


def missing_sql(df: DataFrame, column: str) -> str:
    """SQL text of missing_expr."""
    col, data_type = _column_sql(df, column)
    if isinstance(data_type, (T.DoubleType, T.FloatType)):
        return f"({col} IS NULL OR isnan({col}))"
    if is_numeric_type(data_type):
        return f"({col} IS NULL)"
    text = f"trim(CAST({col} AS STRING))"
    # Lower-casing copies the text: only values that can be a token pay for it.
    starts = sorted(
        {t[:1].lower() for t in MISSING_TOKENS} | {t[:1].upper() for t in MISSING_TOKENS}
    )
    longest = max(len(token) for token in MISSING_TOKENS)
    return (
        f"({col} IS NULL OR (length({text}) <= {longest} "
        f"AND substring({text}, 1, 1) IN ({', '.join(map(string, starts))}) "
        f"AND lower({text}) IN ({', '.join(map(string, MISSING_TOKENS))})))"
    )


def missing_expr(df: DataFrame, column: str) -> Column:
    """True where a value is missing: null, blank, NaN, or a token like 'N/A' or '-'."""
    return F.expr(missing_sql(df, column))


def number_sql(df: DataFrame, column: str) -> str:
    """SQL text of number_expr (one call to the JVM parses it, where Column objects cost one per
    operation)."""
    col, data_type = _column_sql(df, column)
    if is_numeric_type(data_type):
        value = f"CAST({col} AS DOUBLE)"
    else:
        # Plain numbers take the fast cast; only the rest pay for the regular expressions.
        # Quotes go too: '42' and "42" are numbers typed as text, 1'550 a Swiss thousands mark.
        trimmed = f"trim(CAST({col} AS STRING))"
        stripped = f"regexp_replace({trimmed}, {string(NOISE)}, '')"
        text = (
            f"CASE WHEN {stripped} RLIKE {string(THOUSANDS)} "
            f"THEN regexp_replace({stripped}, ',', '') ELSE {stripped} END"
        )
        parsed = (
            f"coalesce(try_cast({col} AS DOUBLE), "
            f"CASE WHEN {text} RLIKE {string(NUMBER)} THEN CAST({text} AS DOUBLE) END)"
        )
        # A failed cast costs Spark an exception (a microsecond and more): text that cannot
        # start a number, such as ids, names and categories, is not tried at all.
        starts = ", ".join(map(string, NUMBER_STARTS))
        value = f"(CASE WHEN substring({trimmed}, 1, 1) IN ({starts}) THEN {parsed} END)"
    return f"(CASE WHEN NOT isnan({value}) AND abs({value}) < {MAX_MAGNITUDE!r} THEN {value} END)"


def number_expr(df: DataFrame, column: str) -> Column:
    """The value as a double, reading '$1,550.00', ' 42 ' and '1 200' too; null if not a number.

    Infinities and values beyond ±1e150 count as not a number: their squares overflow.
    """
    return F.expr(number_sql(df, column))


def file_size(path: str) -> int | None:
    """Bytes of a local file or folder (None for remote locations)."""
    local = _local_path(path)
    if local is None or not local.exists():
        return None
    if local.is_file():
        return local.stat().st_size
    return sum(p.stat().st_size for p in local.rglob("*") if p.is_file())


def sha256_of(path: str) -> str | None:
    """Fingerprint of a local input for the manifest (None for remote locations)."""
    import hashlib

    local = _local_path(path)
    if local is None or not local.is_file():
        return None
    digest = hashlib.sha256()
    with open(local, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def display_name(path: str) -> str:
    """The file name without folders, for messages."""
    return os.path.basename(path.rstrip("/")) or path


def quoted_column(column: str) -> Column:
    """A column by name, whatever characters the name holds."""
    return F.col(f"`{column}`")


def text_expr(df: DataFrame, column: str) -> Column:
    """The value as trimmed text, null when missing; whole numbers lose a trailing '.0'."""
    col = quoted_column(column)
    data_type = df.schema[column].dataType
    if isinstance(data_type, (T.FloatType, T.DoubleType, T.DecimalType)):
        whole = col == F.floor(col)
        text = F.when(whole, col.try_cast("bigint").cast("string")).otherwise(col.cast("string"))
    else:
        text = F.trim(col.cast("string"))
    # Spreadsheets and pandas turn id 17850 into "17850.0"; it is the same customer. The
    # cheap test first: most values have no dot and skip the regular expression.
    text = F.when(text.contains("."), F.regexp_replace(text, r"^(\d+)\.0+$", "$1")).otherwise(text)
    return F.when(~missing_expr(df, column), text)


def _placeholder_id(text: Column) -> Column:
    """True where an id's clean text is one of ID_PLACEHOLDERS (case and spaces ignored)."""
    # Removing spaces and lower-casing copy the text: only values that can be a token pay.
    starts = sorted({c for t in ID_PLACEHOLDERS if t for c in (t[0].lower(), t[0].upper())})
    key = F.lower(F.regexp_replace(text, r"\s+", ""))
    tokens = sorted({t.replace(" ", "") for t in ID_PLACEHOLDERS})
    return F.substring(text, 1, 1).isin(starts) & key.isin(tokens)


def customer_id_expr(df: DataFrame, column: str, missing_ids: Sequence[str] = ()) -> Column:
    """A customer id as clean text, the same in order logs, customer tables and attributes; null
    when missing, a placeholder ('(blank)', 'N/A', 'guest', '0', …) or one of `missing_ids` (ids
    the analyst named as standing for no customer, compared as clean text in any case: '99999'
    is 99999.0, 'walkin' is ' WALKIN ')."""
    text = text_expr(df, column)
    missing = _placeholder_id(text)
    if missing_ids:
        missing = missing | F.lower(text).isin(sorted({_clean_id(i).lower() for i in missing_ids}))
    return F.when(~missing, text)


def _clean_id(value: str) -> str:
    """An id typed by the analyst as text_expr reads it from a file ('17850.0' is 17850)."""
    return re.sub(r"^(\d+)\.0+$", r"\1", value.strip())


def id_as_written(df: DataFrame, column: str) -> Column:
    """A customer id's text as the file writes it, trimmed ('' when empty), to name the
    placeholders that were read as missing ids."""
    return F.coalesce(F.trim(quoted_column(column).cast("string")), F.lit(""))
