"""Upload: a customer table or order log in, a validation report out, then the job's settings
and Start."""

from pathlib import Path

import streamlit as st

import ui
from segmentation.columns import ROLE_LABELS
from segmentation.errors import SegmentationError
from segmentation.loading import INPUT_KINDS, LoadOptions
from segmentation.locations import data_roots, resolve_location
from segmentation.params import (
    FIT_KINDS,
    MAX_FEATURES,
    MAX_K,
    MIN_K,
    OUTLIER_POLICIES,
    SegmentationParams,
    missing_id_list,
)
from segmentation.preparation import skewed_features
from segmentation.validation import FEW_NEGATIVES, SKEWED

NO_COLUMN = "— none —"
KIND_LABELS = {"auto": "Detect", "customers": "Customer table", "transactions": "Order log"}
DATE_CHOICES = [None, "iso", "yyyymmdd", "day-first", "month-first"]
DATE_LABELS = {
    None: "Detect (ask if ambiguous)",
    "iso": "ISO (2024-03-01)",
    "yyyymmdd": "20240301",
    "day-first": "Day first (01/03/2024)",
    "month-first": "Month first (03/01/2024)",
}
OUTLIER_HELP = {
    "cap": "Cap at the IQR fences (Q1 − 1.5·IQR, Q3 + 1.5·IQR): keeps every customer; "
    "log-transformed features are not capped",
    "remove": "Drop customers outside the fences",
    "none": "Leave values as they are",
}
UPLOAD_HELP = (
    "A customer table: one row per customer (Age, Spend, Recency, Frequency, …). An order log: "
    "one row per order line (customer id, order id, date, amount or quantity × unit price), "
    "such as a shop's invoice export."
)
FIT_LABELS = {
    "sample": "Centres from a sample (fast)",
    "full": "Every customer, Spark ML KMeans",
}

st.title("Upload customer data")
limit = st.get_option("server.maxUploadSize")
st.markdown(
    "A **customer table** (one row per customer) or an **order log** (one row per order line: "
    "customer id, date, amount or quantity × unit price; Spark builds the customers), as "
    f"**CSV** (comma, semicolon or tab separated; may be gzip-compressed) or **Parquet**, up to "
    f"**{limit} MB**. Columns Age, Spend, Recency and Frequency are found under common names "
    "(e.g. `total_spend`, `days_since_last_order`); other columns such as Category or Region are "
    "kept and profiled."
)
roots = data_roots()
by_location = (
    bool(roots)
    and st.segmented_control(
        "Data from", ["Upload a file", "A location the cluster reads"], default="Upload a file"
    )
    == "A location the cluster reads"
)
path: Path | str
try:
    if by_location:
        st.caption(ui.plain("Allowed: " + ", ".join(roots)))
        location = st.text_input("Dataset location", placeholder="s3a://bucket/exports/customers/")
        if not location:
            st.stop()
        path, name = resolve_location(location, roots), location.rstrip("/").rsplit("/", 1)[-1]
    else:
        uploaded = st.file_uploader(
            "Customer table or order log",
            type=["csv", "gz", "parquet", "txt", "tsv"],
            help=UPLOAD_HELP,
        )
        if uploaded is None:
            st.stop()
        path, name = ui.saved_upload(uploaded), uploaded.name
except SegmentationError as error:
    st.error(ui.plain(str(error)), icon=":material/error:")
    st.stop()

with st.expander("Customer table or order log", expanded=ui.looks_like_order_log(str(path))):
    kind = (
        st.segmented_control(
            "This file is",
            INPUT_KINDS,
            default="auto",
            key="input-kind",
            format_func=KIND_LABELS.__getitem__,
        )
        or "auto"
    )
    left, middle, right = st.columns(3)
    date_format = left.selectbox("Order dates", DATE_CHOICES, format_func=DATE_LABELS.__getitem__)
    reference = middle.date_input(
        "Count recency to", value=None, help="Default: the day after the last order in the log."
    )
    attributes = right.file_uploader(
        "Customer attributes (optional)",
        type=["csv", "gz", "parquet"],
        help="E.g. Age, Gender, Region per customer id.",
    )
    missing_ids = st.text_input(
        "Ids to treat as missing",
        key="missing-ids",
        placeholder="e.g. 99999, WALKIN",
        help="Customer ids that stand for no customer (a till, guest or test account), comma-"
        "separated. They are left out like '(blank)', 'N/A', 'guest' or '0', which always are.",
    )
load = LoadOptions(
    kind,
    date_format,
    reference.isoformat() if reference else None,
    str(ui.saved_upload(attributes)) if attributes else None,
    missing_id_list(missing_ids),
)
try:
    base, origin = ui.validation(str(path), MIN_K, None, (), load)
except SegmentationError as error:
    st.error(ui.plain(str(error)), icon=":material/error:")
    st.stop()
if origin:
    st.success(
        ui.plain(
            f"Order log: {origin.rows_in:,} lines → {origin.customers:,} "
            f"customers, built with Spark."
        ),
        icon=":material/receipt_long:",
    )

st.subheader("Columns")
st.caption(ui.plain(f"{base.rows:,} rows · {len(base.columns)} columns · {base.source}"))
detected = base.mapping
role_columns = st.columns(len(ROLE_LABELS))
overrides: dict[str, str] = {}
for slot, (role, label) in zip(role_columns, ROLE_LABELS.items(), strict=True):
    options = [NO_COLUMN, *base.columns]
    chosen = slot.selectbox(
        label, options, index=options.index(detected.get(role, NO_COLUMN)), key=f"role-{role}"
    )
    if chosen != detected.get(role, NO_COLUMN):
        overrides[role] = "" if chosen == NO_COLUMN else chosen
mapped = base.remapped(overrides)
for problem in [] if origin else base.missing_roles:
    st.info(ui.plain(problem.message), icon=":material/help:")

ASSIGN = "Assign to an existing segmentation"
task = st.segmented_control(
    "With this file", ["New segmentation", ASSIGN], default="New segmentation", key="task"
)
if task == ASSIGN:
    st.subheader("Assign to an existing segmentation")
    st.caption(
        "Customers are placed in the saved segments as that run would have placed them (its "
        "fills, outlier fences, transforms, scaling, centres and names), without refitting."
    )
    models = ui.segmentations()
    if not models:
        st.info("No finished segmentation yet: run one first, then assign new files to it.")
        st.stop()
    model_job = st.selectbox("Segmentation", models, format_func=ui.job_label, key="assign-to")
    model_k = ui.saved_k(model_job)
    refused = ui.assignment_problem(str(path), ui.model_folder(model_job, model_k), load)
    if refused:
        st.error(ui.plain(refused), icon=":material/error:")
    else:
        st.success("The file has every column the segmentation needs.", icon=":material/check:")
    if st.button(
        "Assign customers", type="primary", disabled=refused is not None, icon=":material/input:"
    ):
        ui.start_assignment(path, name, load, model_job, model_k)
        st.switch_page(ui.MONITOR)
    st.stop()

st.subheader("Segmentation settings")
with st.container(border=True):
    features = st.multiselect(
        "Features to segment on",
        mapped.numeric_columns,
        default=mapped.default_features(),
        help=f"Numeric columns; customers are grouped by these (at most {MAX_FEATURES}).",
        max_selections=MAX_FEATURES,
    )
    left, middle, right = st.columns(3)
    most = min(MAX_K, max(MIN_K + 1, base.rows))
    explore = left.toggle(
        "Try several k and suggest one",
        help="Fits every k in the range on "
        "one prepared table; you can then switch between them instantly.",
    )
    k_range: tuple[int, int] | None
    if explore:
        k_range = left.slider("Range of k", MIN_K, most, (MIN_K, min(10, most)))
        stability = left.number_input(
            "Extra seeds per k (stability check)",
            0,
            5,
            0,
            help="Refit each k with more seeds and report how much "
            "the segments agree (adjusted Rand index).",
        )
        k = k_range[0]
    else:
        k = left.slider("Number of segments (k)", MIN_K, most, min(4, most))
        k_range, stability = None, 0
    fit = left.radio(
        "Fit the segments on",
        FIT_KINDS,
        format_func=FIT_LABELS.__getitem__,
        help="A sample of at most 50,000 customers finds the segments of most tables in "
        "seconds. Every customer (Spark ML, one Spark job per iteration, per k) is slower but "
        "sees segments too small for the sample, and saves a model Spark ML can load.",
    )
    outliers = middle.radio("Outliers", OUTLIER_POLICIES, format_func=OUTLIER_HELP.__getitem__)
    seed = right.number_input(
        "Random seed",
        min_value=0,
        max_value=2**31 - 1,
        value=42,
        help="Same data, seed and k give the same segments.",
    )
    skewed = skewed_features(base.profiles, features, base.rows)
    log_features = st.multiselect(
        "Log-transform (the model sees log(1 + value), or sign(x)·log(1 + |x|) with negatives)",
        features,
        default=skewed,
        help=f"Chosen for you: features with skewness above {SKEWED:g} and no negative values, "
        f"or negatives in at most {FEW_NEGATIVES:.0%} of customers (refunds: they stay below "
        "zero), such as spend and order counts. The log keeps the best customers apart where "
        "capping would give them one value; profiles always show real values.",
    )

try:
    report = (
        ui.validation(str(path), k, tuple(features), tuple(sorted(overrides.items())), load)[0]
        if features
        else None
    )
except SegmentationError as error:
    st.error(ui.plain(str(error)), icon=":material/error:")
    st.stop()

st.subheader("Validation report")
if report is None:  # nothing numeric to choose: say why (e.g. no rows), else what to do
    # Missing columns are hinted above.
    for message in [p.message for p in base.blocking] or ["Choose at least one numeric feature."]:
        st.error(ui.plain(message), icon=":material/error:")
else:
    for problem in report.errors:
        st.error(ui.plain(problem.message), icon=":material/error:")
    dominant = origin.dominant_id if origin else None
    for message in origin.messages() if origin else []:
        if dominant and message == dominant.message():
            st.warning(ui.plain(message), icon=":material/warning:")
            st.button(
                f"Treat '{dominant.customer_id}' as missing",
                on_click=ui.add_missing_id,
                args=("missing-ids", dominant.customer_id),
                icon=":material/person_off:",
            )
        else:
            st.info(ui.plain(message), icon=":material/receipt_long:")
    for problem in report.warnings:
        st.warning(ui.plain(problem.message), icon=":material/warning:")
    if report.ok and not report.warnings:
        st.success("No problems found.", icon=":material/check_circle:")
with st.expander("Column details and preview"):
    st.dataframe(base.column_rows(), hide_index=True)
    st.dataframe(ui.preview(str(path)), hide_index=True)

ready = report is not None and report.ok
if st.button(
    "Start segmentation", type="primary", disabled=not ready, icon=":material/play_arrow:"
):
    params = SegmentationParams(
        k=k,
        features=tuple(features),
        seed=int(seed),
        outliers=outliers,
        # The automatic choice as such, so that the run says it chose for the analyst.
        log_features=None if set(log_features) == set(skewed) else tuple(log_features),
        column_mapping=overrides,
        k_range=k_range,
        stability_seeds=int(stability),
        fit=fit,
        input_kind=load.input_kind,
        date_format=load.date_format,
        reference_date=load.reference_date,
        attributes=load.attributes,
        missing_ids=load.missing_ids,
    )
    ui.start_job(path, name, params)
    st.switch_page(ui.MONITOR)
