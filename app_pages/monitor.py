"""Job Monitor: live progress of active jobs, then the history with its actions."""

import streamlit as st

import ui
from segmentation.errors import SegmentationError
from segmentation.jobs import JobState
from segmentation.preparation import STAGES

st.title("Job Monitor")


def stage_lines(job) -> str:
    """Done, current and pending stages with the seconds each took (the current one so far)."""
    spent = job.stage_seconds()
    current = STAGES.index(job.stage) if job.stage in STAGES else -1
    lines = []
    for index, stage in enumerate(STAGES):
        seconds = f" · {spent[stage]:.1f} s" if stage in spent else ""
        if index < current:
            lines.append(f":green[:material/check:] {stage}{seconds}")
        elif index == current:
            lines.append(f":blue[:material/progress_activity:] **{stage}**{seconds}")
        else:
            lines.append(f":gray[:material/radio_button_unchecked: {stage}]")
    return "  \n".join(lines)


def active_job(job) -> None:
    svc = ui.services()
    if job.state == JobState.QUEUED:
        position = svc.runner.queue_position(job.id)
        label = f"{job.original_name}: waiting" + (
            f" (position {position} in the queue)" if position else ""
        )
    else:
        label = f"{job.original_name}: {job.stage or 'starting'} ({job.progress:.0%})"
    messages = svc.store.messages(job.id)
    with st.status(ui.plain(label), state="running", expanded=True):
        st.progress(job.progress)
        st.markdown(stage_lines(job))
        if messages:
            st.caption(ui.plain(f"{messages[-1].ts:%H:%M:%S} · {messages[-1].message}"))
        sweep = ui.sweep_of(ui.results_folder(job)) if job.params.get("k_range") else None
        if sweep is not None:
            st.markdown(ui.plain(sweep.progress_text))
            if st.session_state.get("job_id") == job.id:  # Results opens the job followed
                st.page_link(ui.RESULTS, label="Open the measured k", icon=":material/groups:")
        if st.button("Cancel", key=f"cancel-{job.id}", icon=":material/stop:"):
            svc.runner.cancel(job.id)
            st.rerun(scope="fragment")


def followed_job_outcome() -> None:
    job = ui.services().store.get(st.session_state.get("job_id", ""))
    if job is None or job.owner != ui.owner() or job.is_active:
        return
    if job.state == JobState.SUCCEEDED:
        st.success(
            ui.plain(f"{job.original_name}: done in {job.duration:.1f} s."),
            icon=":material/check_circle:",
        )
        st.page_link(ui.RESULTS, label="Open the results", icon=":material/groups:")
    elif job.state in (JobState.FAILED, JobState.INTERRUPTED):
        st.error(ui.plain(f"{job.original_name}: {job.error}"), icon=":material/error:")


def history() -> None:
    svc = ui.services()
    jobs = svc.store.list(owner=ui.owner())
    if not jobs:
        st.caption("No jobs yet.")
        return
    # What tells jobs apart first (file, state, k, quality, when), so a narrow screen still
    # shows it; the kind and model last.
    rows = [
        {
            "file": job.original_name,
            "state": ui.STATE_ICONS[job.state],
            "k": ui.k_text(job),
            "silhouette": job.summary.get("silhouette"),
            "customers": job.summary.get("rows"),
            "started": job.started_at or job.created_at,
            "duration": job.duration,
            "progress": job.progress,
            "kind": "assignment" if job.model else "segmentation",
            "model": job.model.label if job.model else None,
        }
        for job in jobs
    ]
    table = st.dataframe(
        rows,
        hide_index=True,
        key="history",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "file": st.column_config.TextColumn(width="medium"),
            "k": st.column_config.TextColumn(width="small"),
            "silhouette": st.column_config.NumberColumn(format="%.3f", width="small"),
            "customers": st.column_config.NumberColumn(format="localized", width="small"),
            "started": st.column_config.DatetimeColumn(format="MMM D, HH:mm"),
            "duration": st.column_config.NumberColumn(format="%.1f s", width="small"),
            "progress": st.column_config.ProgressColumn(
                format="percent", min_value=0, max_value=1, width="small"
            ),
            "model": st.column_config.TextColumn(
                help="The saved segmentation an assignment placed its customers in"
            ),
        },
    )
    selected = table.selection.rows
    if not selected:
        st.caption("Select a job to open, retry or delete it.")
        return
    job = jobs[selected[0]]
    open_col, retry_col, delete_col = st.columns(3)
    if open_col.button(
        "Open results", disabled=job.state != JobState.SUCCEEDED, icon=":material/groups:"
    ):
        st.session_state["job_id"] = job.id
        st.switch_page(ui.RESULTS)
    if retry_col.button("Retry", disabled=job.is_active, icon=":material/replay:"):
        try:
            again = svc.store.retry(job.id)
            svc.runner.submit(again.id)
            st.session_state["job_id"] = again.id
        except SegmentationError as error:
            st.error(ui.plain(str(error)))
        st.rerun()
    if delete_col.button("Delete", disabled=job.is_active, icon=":material/delete:"):
        svc.store.delete(job.id)
        st.rerun()
    if job.error:
        st.error(ui.plain(job.error), icon=":material/error:")
    with st.expander("Log"):
        st.text(
            "\n".join(
                f"{m.ts:%H:%M:%S}  {m.stage:<13} {m.message}" for m in svc.store.messages(job.id)
            )
        )


def active_jobs() -> list:
    return [j for j in ui.services().store.list(owner=ui.owner()) if j.is_active]


@st.fragment(run_every=1.0)
def live(running: tuple[str, ...]) -> None:
    """Redrawn every second while jobs are active; once one ends (or another starts) one full
    rerun redraws the outcome and the history, which do not tick."""
    active = active_jobs()
    if tuple(j.id for j in active) != running:
        st.rerun()
    for job in active:
        active_job(job)


st.subheader("Active jobs")
running = tuple(j.id for j in active_jobs())
if running:
    live(running)
else:
    st.caption("No job is running.")
followed_job_outcome()
st.subheader("History")
history()
