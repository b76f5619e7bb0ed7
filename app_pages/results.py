"""Results: quality figures, a card per segment, the profile table, names to edit, downloads."""

import streamlit as st

import ui
from segmentation import charts
from segmentation.errors import SegmentationError
from segmentation.manifest import to_json
from segmentation.profiles import agreement_text

st.title("Segmentation results")
job = ui.pick_job("results-job")
if job is None:
    st.stop()
k = ui.k_picker(job)
results = ui.results_of(job, k)
if job.model:
    st.info(
        ui.plain(
            f"These customers were placed in the segments of {job.model.label} (k={job.model.k}) "
            "without refitting: same fills, fences, scaling, centres and names."
        ),
        icon=":material/input:",
    )
manifest = results.manifest
metrics = manifest.metrics

cols = st.columns(5)
cols[0].metric("Customers", f"{manifest.rows_out:,}")
cols[1].metric("Segments", len(results.segments))
cols[2].metric(
    "Silhouette",
    ui.fmt(metrics.silhouette),
    help="Squared Euclidean silhouette over every customer, −1 to 1: higher means "
    "customers sit closer to their own segment than to the next one.",
)
cols[3].metric(
    "Calinski–Harabasz",
    ui.fmt(metrics.calinski_harabasz, 1),
    help="Between- vs within-segment spread; higher is better.",
)
cols[4].metric(
    "Davies–Bouldin",
    ui.fmt(metrics.davies_bouldin),
    help="Average similarity of each segment to its closest one; lower is better.",
)
told = manifest.told()
for warning in told.warnings:
    st.warning(ui.plain(warning), icon=":material/warning:")
if told.repaired:
    st.info(
        "**What the run repaired**\n\n"
        + "\n".join(f"- {ui.plain(line)}" for line in told.repaired),
        icon=":material/build:",
    )
if told.notes:
    st.info("\n".join(f"- {ui.plain(line)}" for line in told.notes), icon=":material/info:")
if metrics.convergence_warning:
    st.warning(ui.plain(metrics.convergence_warning), icon=":material/warning:")

st.subheader("Segments")
cards = st.columns(min(4, len(results.segments)))
for index, segment in enumerate(results.segments.itertuples()):
    with cards[index % len(cards)].container(border=True):
        st.markdown(f"**{segment.segment} · {ui.plain(segment.name)}**")
        st.markdown(f"{segment.size:,} customers · {segment.share:.0%}")
        st.caption(ui.plain(segment.reason))
        if agreement := agreement_text(segment._asdict()):
            st.caption(ui.plain(agreement))

with st.expander("Rename segments"), st.form("names"):
    names = {
        int(row.segment): st.text_input(f"Segment {row.segment}", value=row.name, max_chars=60)
        for row in results.segments.itertuples()
    }
    if st.form_submit_button("Save names"):
        ui.rename_segments(job, results, names)
        st.rerun()

st.subheader("Profiles")
st.caption("Feature values per segment in real units (missing values filled).")
st.dataframe(
    results.profile_table(),
    hide_index=True,
    column_config={"share": st.column_config.NumberColumn(format="%.1f%%")},
)
with st.expander("What the model saw"):
    st.caption(
        "Each segment's centre as z-scores of the model's inputs: after outlier capping and log "
        "transforms, standardized. These shape the segments; the profiles above describe them."
    )
    st.dataframe(results.model_table(), hide_index=True)

overlap = results.rfm_overlap()
if overlap is not None:
    st.subheader("Segments and classic RFM")
    st.caption(
        "Customers of each segment by their RFM segment (R, F and M scores 1–5 by quintile, "
        "R = 5 the most recent; the R×F grid names the RFM segment). customers.csv carries "
        "each customer's scores."
    )
    st.plotly_chart(charts.rfm_overlap(overlap), theme=None, width="stretch")

st.subheader("Downloads")
left, middle, right = st.columns(3)
left.download_button(
    "Customers with segments (CSV)",
    data=lambda: ui.customers_csv(results),
    file_name=f"customers-segments-k{results.k}-{job.id[:6]}.csv",
    mime="text/csv",
    icon=":material/download:",
    disabled=not results.customers_ready,
    help=None if results.customers_ready else "Written once every k is measured.",
)
middle.download_button(
    "Segment profiles (CSV)",
    data=results.segments.to_csv(index=False),
    file_name=f"segments-k{results.k}-{job.id[:6]}.csv",
    mime="text/csv",
    icon=":material/download:",
)
right.download_button(
    "Manifest (JSON)",
    data=to_json(manifest),
    file_name=f"manifest-{job.id[:6]}.json",
    mime="application/json",
    icon=":material/download:",
)

st.subheader("Compare with…")
st.caption(
    "Another segmentation of the same customers, matched by customer id: who stayed, who moved "
    "between segments, who is new and who is gone."
)
earlier = st.selectbox(
    "Earlier segmentation (before)",
    ui.comparable_jobs(job),
    index=None,
    format_func=ui.job_label,
    placeholder="Choose a segmentation to compare with",
    key="compare-with",
    disabled=not results.customers_ready,
    help=None if results.customers_ready else "Once every k is measured.",
)
if earlier is not None:
    try:
        comparison = ui.comparison(ui.results_of(earlier, ui.compared_k(job, earlier)), results)
    except SegmentationError as error:
        st.error(ui.plain(str(error)), icon=":material/error:")
        st.stop()
    counts = st.columns(4)
    counts[0].metric("Same segment", f"{comparison.same_customers:,}")
    counts[1].metric("Moved", f"{comparison.moved_customers:,}")
    counts[2].metric("New", f"{comparison.new_customers:,}")
    counts[3].metric("Gone", f"{comparison.lost_customers:,}")
    st.markdown("\n".join(f"- {ui.plain(sentence)}" for sentence in comparison.movements()))
    heatmap, flow = st.tabs(["Migration", "Flow"])
    heatmap.plotly_chart(
        charts.migration_heatmap(comparison.migration), theme=None, width="stretch"
    )
    flow.plotly_chart(charts.migration_sankey(comparison.migration), theme=None, width="stretch")
    cell = st.selectbox(
        "Customers behind one cell",
        list(comparison.migration.itertuples(index=False)),
        format_func=lambda c: (
            f"{charts.migration_label(c.from_segment, c.from_name)} → "
            f"{charts.migration_label(c.to_segment, c.to_name)} ({c.customers:,})"
        ),
        key="compare-cell",
    )
    st.download_button(
        "Download these customers (CSV)",
        data=lambda: ui.cell_csv(comparison, cell.from_segment, cell.to_segment),
        file_name=f"moved-{cell.from_segment}-to-{cell.to_segment}-{job.id[:6]}.csv",
        mime="text/csv",
        icon=":material/download:",
    )
