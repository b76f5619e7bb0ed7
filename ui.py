"""What the pages share: this process's engine, job store and runner, and a few small widgets."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import streamlit as st

from segmentation.access import (
    ACCESS_SETTING,
    RETENTION_SETTING,
    SHARED_OWNER,
    VISITOR_PREFIX,
    AccessSettings,
    delete_expired,
    new_visitor_token,
    owner_for,
)
from segmentation.comparison import Comparison, compare
from segmentation.errors import EngineError, InputError, SegmentationError
from segmentation.job_runner import JobRunner, run_pipeline_job
from segmentation.job_store import JobStore
from segmentation.jobs import Job, JobState, ModelRef, workspace_dir
from segmentation.loading import LoadOptions, load_customer_table
from segmentation.locations import ROOTS_SETTING
from segmentation.order_log import TRANSACTION_FEATURES, detect_input_kind
from segmentation.order_report import TransactionReport
from segmentation.params import SegmentationParams, missing_id_list
from segmentation.reading import read_table
from segmentation.results import (
    Results,
    Sweep,
    load_results,
    load_sweep,
    names_changed,
    save_segment_names,
    sweep_state,
)
from segmentation.scoring import check_input, load_model
from segmentation.spark_engine import SETTING_NAMES, EngineStarter, engine_failure_reason
from segmentation.uploads import save_table
from segmentation.validation import ValidationReport, validate

HOME = "app_pages/home.py"
UPLOAD = "app_pages/upload.py"
MONITOR = "app_pages/monitor.py"
RESULTS = "app_pages/results.py"
VISUALIZATION = "app_pages/visualization.py"
ABOUT = "app_pages/about.py"
SAMPLE_FILE = Path(__file__).resolve().parent / "sample_data" / "sample_customers.csv"
STATE_ICONS = {
    JobState.QUEUED: "⏳ queued",
    JobState.RUNNING: "▶️ running",
    JobState.SUCCEEDED: "✅ done",
    JobState.FAILED: "❌ failed",
    JobState.CANCELLED: "⏹️ cancelled",
    JobState.INTERRUPTED: "⚠️ interrupted",
}


def installed_versions(names: Sequence[str]) -> list[tuple[str, str]]:
    """The installed version of each package that is installed: the About page shows only
    what it can know, whatever environment the app runs in."""
    found = []
    for name in names:
        try:
            found.append((name, version(name)))
        except PackageNotFoundError:
            continue
    return found


# Settings read from the environment, or from Streamlit secrets of the same names.
APP_SETTINGS = (
    *SETTING_NAMES,
    ACCESS_SETTING,
    RETENTION_SETTING,
    ROOTS_SETTING,
    "SEGMENTATION_HOME",
)


@dataclass
class Services:
    """One engine, job store and runner per process, shared by every browser session."""

    engine: EngineStarter
    store: JobStore
    runner: JobRunner


def _secrets_to_environment() -> None:
    """Streamlit secrets with the Spark settings' names act like environment variables."""
    try:
        secrets = {name: st.secrets[name] for name in APP_SETTINGS if name in st.secrets}
    except Exception:  # no secrets file: nothing to copy
        return
    for name, value in secrets.items():
        os.environ.setdefault(name, str(value))


@st.cache_resource(show_spinner=False)
def services() -> Services:
    """Start the engine in the background and open the job store (once per process)."""
    _secrets_to_environment()
    engine = EngineStarter()
    store = JobStore(workspace_dir())
    runner = JobRunner(
        store, run_pipeline_job(store, engine.session), max_workers=2, spark_provider=engine.session
    )
    return Services(engine, store, runner)


def owner() -> str:
    """Who the current visitor is: everyone shares one history unless SEGMENTATION_ACCESS is
    'per-user'; then a signed-in user, or an anonymous visitor with a private link."""
    settings = AccessSettings.from_env()
    if not settings.per_user:
        return SHARED_OWNER
    email: str | None = None
    with contextlib.suppress(Exception):  # st.user needs authentication to be configured
        claim = st.user.email if st.user.is_logged_in else None
        email = claim if isinstance(claim, str) else None
    token: str | None = st.session_state.get("visitor") or st.query_params.get("visitor")
    try:
        found = owner_for(settings, email, token)
    except SegmentationError:  # first visit, or a mangled link: a new private link
        token = new_visitor_token()
        found = owner_for(settings, email, token)
    if not email:
        assert token is not None  # owner_for accepts no visitor without a valid token
        st.session_state["visitor"] = token
        if st.query_params.get("visitor") != token:
            st.query_params["visitor"] = token  # the address keeps the visitor across reloads
    return found


def privacy_notice() -> None:
    """Sidebar, per-user mode: whose jobs these are and how long anonymous ones are kept."""
    settings = AccessSettings.from_env()
    if not settings.per_user:
        return
    if owner().startswith(VISITOR_PREFIX):
        st.caption(
            f":material/lock: Your jobs are private to this page's address; keep it to come back. "
            f"Jobs and files of visitors who are not signed in are deleted after "
            f"{settings.retention_days:g} days."
        )
    else:
        st.caption(":material/lock: Your jobs are visible to you only.")


@st.cache_resource(ttl=3600, show_spinner=False)
def clean_up_expired() -> int:
    """Delete expired anonymous jobs, at most once an hour per process."""
    return delete_expired(services().store, AccessSettings.from_env())


def start_job(input_path: Path | str, original_name: str, params: SegmentationParams) -> Job:
    """Queue a segmentation job and remember it as the one this visitor follows."""
    svc = services()
    job = svc.store.create(input_path, original_name, params.to_dict(), owner=owner())
    svc.runner.submit(job.id)
    st.session_state["job_id"] = job.id
    return job


def start_sample_job() -> Job:
    """The 'try it with sample data' job: the bundled sample, default settings, k=4."""
    return start_job(SAMPLE_FILE, SAMPLE_FILE.name, SegmentationParams(k=4))


def engine_status() -> None:
    """Sidebar: whether Spark is starting, ready (mode, master, version) or failed (what to do)."""
    if services().engine.state == "starting":
        _engine_status_until_started()
    else:
        _show_engine_status()


@st.fragment(run_every=2.0)
def _engine_status_until_started() -> None:
    """Redrawn every 2 s, so 'starting…' does not stay on screen after the engine is up; then
    one full rerun draws the page without this timer. (Left ticking beside the page's own runs,
    it once left the Upload page without its Start button.)"""
    if services().engine.state != "starting":
        st.rerun()
    _show_engine_status()


def _show_engine_status() -> None:
    engine = services().engine
    if engine.state == "starting":
        st.caption(":material/hourglass_top: Spark engine starting…")
    elif engine.state == "ready":
        info = engine.info
        st.caption(
            f":material/check_circle: Spark {info['spark_version']} ready · {info['mode']} "
            f"· `{info['master']}` · Java {info['java_version']}"
        )
    else:
        st.error(f"Spark engine unavailable: {engine.error}", icon=":material/error:")


def k_text(job: Job) -> str:
    """A job's k for tables: '4', or '2–10' for a sweep."""
    k_range = job.params.get("k_range")
    return f"{k_range[0]}–{k_range[1]}" if k_range else str(job.params.get("k", "?"))


def job_label(job: Job) -> str:
    """How a job is named in pickers: file, k, when (and whether it still runs). Unique per
    job: a picker keeps its choice by label, so two runs of one file in the same minute must
    not read alike."""
    running = " · running" if job.is_active else ""
    when = f"{job.created_at:%Y-%m-%d %H:%M:%S}"
    return f"{job.original_name} · k={k_text(job)} · {when} · #{job.id[:6]}{running}"


def results_folder(job: Job) -> str:
    """Where a job's results are: its finished folder, or the one a running sweep fills."""
    return job.result_dir or str(services().store.result_dir(job.id))


def viewable_jobs() -> list[Job]:
    """This visitor's jobs whose results can be opened, newest first: finished ones, and
    running sweeps once their first k is measured (the others follow as they finish)."""
    return [
        job
        for job in services().store.list(owner=owner())
        if job.state == JobState.SUCCEEDED
        or (job.state == JobState.RUNNING and sweep_of(results_folder(job)) is not None)
    ]


def segmentations() -> list[Job]:
    """This visitor's finished segmentations that new customers can be assigned to (not
    assignments themselves: those place customers in another job's segments)."""
    return [
        job
        for job in services().store.list(owner=owner())
        if job.state == JobState.SUCCEEDED and job.model is None
    ]


def saved_k(job: Job) -> int:
    """Which k of a segmentation to assign to: the only one, or a choice among a sweep's."""
    sweep = sweep_of(results_folder(job))
    if sweep is None:
        return int(job.params.get("k", 0))
    default = job.chosen_k or sweep.suggested_k
    return st.selectbox(
        "Number of segments (k)",
        sweep.ks,
        index=sweep.ks.index(default) if default in sweep.ks else 0,
        format_func=lambda k: k_option(k, sweep, job),
        help="A sweep fitted every k; its customers are placed in the segments of this one.",
        key=f"assign-k-{job.id}",
    )


def k_option(k: int, sweep: Sweep, job: Job) -> str:
    """A k as the pickers list it, marking the suggested and the analyst's chosen k:
    "5 (suggested)", "6 (chosen)"."""
    marks = [
        mark
        for mark, marked in (("suggested", sweep.suggested_k), ("chosen", job.chosen_k))
        if k == marked
    ]
    return f"{k} ({', '.join(marks)})" if marks else str(k)


def model_folder(job: Job, k: int) -> str:
    """The results folder of one k of a job: the job's own, or the k's inside a sweep."""
    sweep = sweep_of(results_folder(job))
    return results_folder(job) if sweep is None else str(sweep.folder(k))


@st.cache_data(show_spinner="Checking the file against the segmentation…", max_entries=32)
def assignment_problem(path: str, folder: str, options: LoadOptions) -> str | None:
    """Why this file cannot be placed in the segmentation of `folder` (None when it can)."""
    try:
        with engine_errors():
            check_input(services().engine.session(), path, load_model(folder), options)
    except InputError as error:  # engine trouble is not cached as the file's fault
        return str(error)
    return None


def start_assignment(
    input_path: Path | str, original_name: str, options: LoadOptions, job: Job, k: int
) -> Job:
    """Queue a job placing a file's customers in the saved segments of `job` (k of a sweep)."""
    folder = model_folder(job, k)
    keep_names_in_folder(results_of(job, k))
    saved = load_model(folder).manifest.params
    params = replace(
        saved,
        k=k,
        k_range=None,
        stability_seeds=0,
        input_kind=options.input_kind,
        date_format=options.date_format,
        reference_date=options.reference_date,
        attributes=options.attributes,
        missing_ids=options.missing_ids,
    )
    svc = services()
    model = ModelRef(job.id, folder, k, job_label(job))
    created = svc.store.create(
        input_path, original_name, {**params.to_dict(), "model": model.to_dict()}, owner=owner()
    )
    svc.runner.submit(created.id)
    st.session_state["job_id"] = created.id
    return created


def comparable_jobs(job: Job) -> list[Job]:
    """The other finished segmentations and assignments a job's customers can be compared with."""
    return [j for j in viewable_jobs() if j.id != job.id and j.state == JobState.SUCCEEDED]


@st.cache_resource(show_spinner="Matching the customers of both with Spark…", max_entries=8)
def _comparison(before: str, after: str, names: tuple[float | None, ...]) -> Comparison:
    with engine_errors():
        return compare(services().engine.session(), Path(before), Path(after))


def keep_names_in_folder(results: Results) -> None:
    """Names given before the results folder kept them (only the job history had them) are
    written there, where assignments and comparisons read them."""
    if results.renamed and names_changed(results.out_dir) is None:
        save_segment_names(results.out_dir, results.renamed)


def compared_k(job: Job, earlier: Job) -> int | None:
    """Which k of an earlier sweep to compare with: the one this assignment used when it is the
    model, else the k the analyst chose there (None: its suggestion)."""
    if job.model and job.model.job_id == earlier.id:
        return job.model.k
    return earlier.chosen_k


def comparison(before: Results, after: Results) -> Comparison:
    """Where `before`'s customers are in `after` (computed again once a segment is renamed)."""
    for results in (before, after):
        keep_names_in_folder(results)
    names = tuple(names_changed(r.out_dir) for r in (before, after))
    return _comparison(str(before.out_dir), str(after.out_dir), names)


def cell_csv(comparison: Comparison, from_segment: str, to_segment: str) -> bytes:
    """The customers behind one cell of a comparison, as CSV to download."""
    with engine_errors():
        table: pd.DataFrame = comparison.cell(from_segment, to_segment).toPandas()
    return table.to_csv(index=False).encode("utf-8")


def pick_job(key: str) -> Job | None:
    """A picker over viewable jobs, defaulting to the one this visitor last followed."""
    jobs = viewable_jobs()
    if not jobs:
        st.info("No finished segmentation yet. Upload a customer table or try the sample data.")
        st.page_link(UPLOAD, label="Upload data", icon=":material/upload:")
        return None
    ids = [j.id for j in jobs]
    wanted = st.session_state.get("job_id")
    index = ids.index(wanted) if wanted in ids else 0
    chosen = st.selectbox("Segmentation", jobs, index=index, format_func=job_label, key=key)
    st.session_state["job_id"] = chosen.id
    return chosen


@st.cache_data(show_spinner=False, max_entries=32)
def _results(result_dir: str, renamed: float | None) -> Results:
    return load_results(result_dir)


@st.cache_data(show_spinner=False, max_entries=32)
def _sweep(result_dir: str, state: float | None) -> Sweep | None:
    return load_sweep(result_dir) if state is not None else None


def sweep_of(result_dir: str) -> Sweep | None:
    """A job's k sweep as far as it is measured, or None for a single segmentation (read again
    whenever a running sweep adds k)."""
    return _sweep(result_dir, sweep_state(result_dir))


def k_picker(job: Job) -> int | None:
    """For a sweep: a k selector over the k measured so far, marking the suggested and the
    chosen k, and the suggestion once every k is measured; None for a single segmentation.

    Moving the selector only browses: Results and Visualization show the same k in this
    session, but the k that assignments and comparisons use changes only with the "Use k = …"
    button (`_k_choice`). A sweep opened while it runs shows its first k; when the suggestion
    arrives the selector moves to it, unless the analyst browsed or chose a k. Switching k only
    reads that k's small result files, which already exist: no Spark job runs.
    """
    sweep = sweep_of(results_folder(job))
    if sweep is None:
        return None
    # The job picker may hand back the job as it was first picked: its chosen k as stored now.
    job = services().store.get(job.id) or job
    ks = sweep.ks
    browsed = st.session_state.get(_browsed_key(job.id))
    default = sweep.suggested_k if sweep.suggested_k in ks else ks[0]
    current = next(k for k in (browsed, job.chosen_k, default) if k in ks)
    if len(ks) > 1:
        # A new widget once the sweep is complete, so that it starts at the suggestion.
        key = f"k-{job.id}-{'complete' if sweep.complete else 'running'}"
        k = st.select_slider(
            "Number of segments (k)",
            options=ks,
            value=current,
            format_func=lambda each: k_option(each, sweep, job),
            key=key,
            on_change=_browse_k,
            args=(job.id, key),
            help="Every k is fitted; switching is instant. Browsing changes no one's k.",
        )
    else:
        k = ks[0]
        st.markdown(f"Number of segments: **k = {k}**")
    if sweep.complete:
        st.caption(plain(f"Suggested k={sweep.suggested_k}: {sweep.manifest.suggestion}"))
    else:
        st.caption(
            plain(f"{sweep.progress_text}. The suggestion comes when every k is measured."),
        )
        _follow(job.id, sweep_state(results_folder(job)))
    _k_choice(job, sweep, k)
    return k


def _k_choice(job: Job, sweep: Sweep, k: int) -> None:
    """Which k assignments and comparisons use, and a button making it the k on screen: an
    explicit choice, so browsing k never changes it for anyone else."""
    in_use = job.chosen_k or sweep.suggested_k
    if in_use is not None:
        st.caption(f"Assignments and comparisons use k = {k_option(in_use, sweep, job)}.")
    if k != in_use:
        st.button(
            f"Use k = {k} for this segmentation",
            key=f"choose-k-{job.id}",
            on_click=_choose_k,
            args=(job.id, k),
            icon=":material/check:",
        )


def _choose_k(job_id: str, k: int) -> None:
    """Keep the chosen k with the job: every page, visit and visitor opens it."""
    services().store.set_chosen_k(job_id, k)


def _browsed_key(job_id: str) -> str:
    return f"browsed-k-{job_id}"


def _browse_k(job_id: str, key: str) -> None:
    """Remember the k the analyst browsed to for this session, so the other page shows it too."""
    st.session_state[_browsed_key(job_id)] = int(st.session_state[key])


@st.fragment(run_every=1.5)
def _follow(job_id: str, seen: float | None) -> None:
    """While a sweep runs, redraw the page when it adds k or finishes."""
    job = services().store.get(job_id)
    if job is None or not job.is_active or sweep_state(results_folder(job)) != seen:
        st.rerun()


def results_of(job: Job, k: int | None = None) -> Results:
    """A job's results (for a sweep: of k, by default the suggested or first measured) with
    the analyst's segment names."""
    sweep = sweep_of(results_folder(job))
    if sweep is None:
        folder = results_folder(job)
    else:
        folder = str(sweep.folder(k or sweep.suggested_k or sweep.ks[0]))
    results = _results(folder, names_changed(Path(folder)))
    stored = services().store.get(job.id)
    assert stored is not None  # the job was just picked from the store's list
    names = stored.segment_names.get(results.k, {})
    return results.with_names(names)


def rename_segments(job: Job, results: Results, names: Mapping[int, str]) -> None:
    """Keep the analyst's segment names in the job history and in the results folder, which
    later assignments to this segmentation read."""
    services().store.set_segment_names(job.id, results.k, names)
    save_segment_names(results.out_dir, names)


def fmt(value: float | None, digits: int = 3) -> str:
    """A metric for display; 'n/a' when it cannot be computed (never a made-up number)."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def plain(text: str) -> str:
    """Show uploaded names and values as text: escape Markdown, LaTeX ($) and :icon: syntax."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", text)


def add_missing_id(key: str, customer_id: str) -> None:
    """Add an id to the comma-separated ids in the text field `key` (a button's callback, run
    before the field is drawn again)."""
    ids = missing_id_list(st.session_state.get(key, ""))
    st.session_state[key] = ", ".join(dict.fromkeys((*ids, customer_id)))


def saved_upload(uploaded) -> Path:
    """Store an uploaded file in the workspace once per upload (reruns reuse it)."""
    saved = st.session_state.setdefault("uploads", {})
    if uploaded.file_id not in saved:
        saved[uploaded.file_id] = save_table(services().store.uploads, uploaded, uploaded.name)
    return saved[uploaded.file_id]


@st.cache_data(show_spinner="Checking the file with Spark…", max_entries=64)
def validation(
    path: str,
    k: int,
    features: tuple[str, ...] | None,
    overrides: tuple[tuple[str, str], ...],
    options: LoadOptions,
) -> tuple[ValidationReport, TransactionReport | None]:
    """The validation report for these settings, and how an order log became customers."""
    with engine_errors():
        table, origin = load_customer_table(services().engine.session(), path, options)
        if origin and not features:
            features = TRANSACTION_FEATURES
        return validate(table, k, features, dict(overrides)), origin


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Turn the engine failing under a page (it crashed or ran out of memory) into an
    EngineError that says what happened, for the page to show like any other error."""
    try:
        yield
    except Exception as exc:
        reason = engine_failure_reason(exc)
        if reason is None:
            raise
        raise EngineError(reason) from exc


@st.cache_data(show_spinner=False, max_entries=64)
def looks_like_order_log(path: str) -> bool:
    """Whether a file's columns look like an order log (to open its options)."""
    try:
        with engine_errors():
            table = read_table(services().engine.session(), path)
    except SegmentationError:  # the validation below reports why the file cannot be read
        return False
    return detect_input_kind(table.columns) == "transactions"


@st.cache_data(show_spinner=False, max_entries=16)
def preview(path: str, rows: int = 20):
    """The first rows of an uploaded table, as read (text columns unparsed)."""
    with engine_errors():
        return read_table(services().engine.session(), path).df.limit(rows).toPandas()


def customers_csv(results: Results) -> bytes:
    """customers.csv for the download button, with the analyst's segment names."""
    buffer = io.BytesIO()
    results.write_customers(buffer)
    return buffer.getvalue()
