"""Visualization: the segments from every angle, in the same colours and names everywhere."""

import streamlit as st

import ui
from segmentation import charts

st.title("Visualization")
job = ui.pick_job("viz-job")
if job is None:
    st.stop()
k = ui.k_picker(job)
results = ui.results_of(job, k)
segments, sample, features = results.segments, results.sample, results.features
logged = results.manifest.repairs.log_transformed


def show(figure) -> None:
    st.plotly_chart(figure, theme=None, width="stretch")


st.caption(
    f"Charts of individual customers use a stratified sample of {len(sample):,} of "
    f"{results.manifest.rows_out:,} customers; profiles use everyone."
)
sweep = ui.sweep_of(ui.results_folder(job))
tabs = st.tabs(
    ["Sizes", "Profiles", "Distributions", "Customer space", "Categories"]
    + (["Choosing k"] if sweep else [])
)
overview, profiles, distributions, space, categories = tabs[:5]
with overview:
    show(charts.segment_sizes(segments))
with profiles:
    show(charts.profile_heatmap(segments, features))
    show(charts.radar(segments, features))
with distributions:
    kind = st.segmented_control("Plot", ["box", "violin"], default="box", key="dist-kind")
    show(charts.feature_distributions(sample, features, kind=kind or "box", logged=logged))
with space:
    show(charts.pca_scatter(sample, hover=[c for c in [results.roles.get("customer_id")] if c]))
    figure = charts.rfm_scatter_3d(sample, results.roles, logged)
    if figure is None:
        missing = ", ".join(charts.missing_rfm_roles(sample, results.roles))
        st.info(
            f"The 3-D Recency–Frequency–Spend chart needs those three features; missing: {missing}."
        )
    else:
        show(figure)
    show(charts.scatter_matrix(sample, features, logged))
with categories:
    columns = sorted(results.mix["column"].unique()) if len(results.mix) else []
    if not columns:
        st.info("The data has no categorical columns (such as Category or Region) to break down.")
    for column in columns:
        show(charts.categorical_mix(results.mix, segments, column))
if sweep:
    with tabs[5]:
        show(charts.sweep_metrics(sweep.table, sweep.suggested_k))
        names = {
            each: ui.results_of(job, each).segments.set_index("segment")["name"].to_dict()
            for each in sweep.ks
        }
        if len(sweep.splits):
            show(charts.segment_splits(sweep.splits, names, around=results.k))
        else:
            st.info("How segments split from k to k+1 shows once two neighbouring k are measured.")
