"""Home: what the app does, engine status, quick start, recent jobs, sample data."""

import streamlit as st

import ui

st.title("Customer Segmentation Dashboard")
st.markdown(
    "Upload your customer table or order log, or try the sample: Apache Spark cleans it, scales "
    "it and groups "
    "customers into segments with KMeans. You get named segments, honest quality figures and "
    "charts to act on, from a laptop up to a Spark cluster."
)

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Quick start")
    st.markdown(
        "1. **Upload** a CSV or Parquet file with one row per customer (Age, Spend, Recency, "
        "Frequency; other columns are kept) or an order log with one row per order line.\n"
        "2. **Check** the validation report, pick the features and the number of segments, start.\n"
        "3. **Explore** the segments on the Results and Visualization pages and download them.\n"
        "4. **Next month**, assign the new export to the same segments (Upload → Assign to an "
        "existing segmentation) and see who moved on Results → Compare with…"
    )
    if st.button("Try it with sample data", type="primary", icon=":material/play_arrow:"):
        ui.start_sample_job()
        st.switch_page(ui.MONITOR)
    st.page_link(ui.UPLOAD, label="Upload your own data", icon=":material/upload:")
with right:
    st.subheader("Engine")
    ui.engine_status()

st.subheader("Recent jobs")
jobs = ui.services().store.list(owner=ui.owner(), limit=5)
if jobs:
    st.dataframe(
        [
            {
                "file": job.original_name,
                "state": ui.STATE_ICONS[job.state],
                "segments": ui.k_text(job),
                "customers": job.summary.get("rows"),
                "started": job.created_at,
            }
            for job in jobs
        ],
        hide_index=True,
        column_config={"started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
    )
    st.page_link(ui.MONITOR, label="All jobs", icon=":material/monitoring:")
else:
    st.caption("No jobs yet.")
