"""About: the method, the metrics, the technology (versions read now) and data handling."""

import platform

import streamlit as st

import ui
from segmentation.jobs import workspace_dir
from segmentation.preparation import STAGES

PACKAGES = ("streamlit", "pyspark", "pandas", "pyarrow", "plotly", "scikit-learn")

st.title("About")
st.markdown(
    "This dashboard groups customers into segments with **KMeans clustering on Apache Spark**, "
    "names them in RFM terms (recency, frequency, monetary value) and shows what sets each apart."
)

st.subheader("Method")
st.markdown(
    f"A job runs these stages: {' → '.join(STAGES)}.\n\n"
    "- **Validating**: one pass over the data counts rows, missing and non-numeric values, "
    "negatives, constant columns and duplicate customer ids; problems that make clustering "
    "impossible stop the job with a message, the rest are repaired and reported.\n"
    "- **Preprocessing**: missing values are filled with the column median; outliers outside the "
    "IQR fences (Q1 − 1.5·IQR, Q3 + 1.5·IQR) are capped (or removed, or kept, as chosen); "
    "features with a skewness above 1 and no negative values, such as spend and order counts, "
    "are log-transformed instead of capped (with a few negatives, such as refunds, a signed log); "
    "you can change the choice, and Results lists every repair a run made.\n"
    "- **Scaling**: every feature is standardized to mean 0 and standard deviation 1, so no "
    "feature dominates because of its unit.\n"
    "- **Clustering**: KMeans centres are fitted on a random sample of at most 50,000 customers "
    "(scikit-learn's k-means++ and Lloyd run until the centres settle, the best of four starts, "
    "fixed seed: the same data, seed and k always give the same segments), or, when chosen on "
    "the Upload page, by Spark ML's KMeans over every customer; Spark then assigns every customer "
    "to the nearest "
    "centre and computes every figure over all of them, several k in the same two passes. "
    "Segments are numbered by descending mean spend.\n"
    "- **Profiling**: per segment the mean, median, minimum and maximum of each feature in real "
    "units (after imputation, never capped or log-transformed: that only shapes what KMeans "
    "sees), the centroid's z-scores, the most common categories, and a name with the reason for "
    "it. The median comes from a KLL sketch (rank error about 0.05%); the other figures are "
    "exact.\n"
    "- **Classic RFM**: with Recency, Frequency and Spend every customer gets R, F and M scores "
    "1–5 by quintile (R = 5 the most recent; equal values, equal scores) and the segment of the "
    "R×F grid (Champions, Loyal, At risk, …); a KMeans segment is named by the RFM segment most "
    "of its own customers are in (segments sharing it by the feature that separates them most), "
    "each card says how many of its customers agree, and Results shows how the two overlap.\n"
    "- **Trying several k**: the first k is measured alone and shown as soon as it is ready, the "
    "others follow in two batches; the suggestion comes when every k is measured: the most "
    "detailed k whose silhouette is within 0.02 of the best, or, when the silhouette only falls "
    "as k grows (customers on a continuum, not in groups), the elbow of the sum of squares."
)
st.subheader("Quality figures")
st.markdown(
    "- **Silhouette** (−1 to 1, higher is better): how much closer customers are to their own "
    "segment than to the nearest other one. Computed in Spark over every customer from per-segment "
    "sums (the figure of scikit-learn and Spark's ClusteringEvaluator), with *squared* Euclidean distance, so it reads higher than the Euclidean version.\n"
    "- **Calinski–Harabasz** (higher is better): spread between segments relative to the spread "
    "within them.\n"
    "- **Davies–Bouldin** (0 and up, lower is better): how similar each segment is to its closest "
    "neighbour.\n"
    "- **Within-cluster sum of squares**: the total squared distance of customers to their "
    "segment's centre; it always falls as k grows.\n\n"
    "Spark has no Calinski–Harabasz or Davies–Bouldin; they are computed in Spark from "
    "per-segment aggregates and agree with scikit-learn's. No figure is ever estimated or made up: "
    "when one cannot be computed (e.g. a single segment) it shows as n/a."
)

st.subheader("Technology")
engine = ui.services().engine
info = engine.info if engine.state == "ready" else {}
st.dataframe(
    [{"component": "Python", "version": platform.python_version()}]
    + [{"component": name, "version": found} for name, found in ui.installed_versions(PACKAGES)]
    + [
        {"component": "Spark (engine)", "version": info.get("spark_version", engine.state)},
        {"component": "Java", "version": info.get("java_version", engine.state)},
        {"component": "Runs on", "version": f"{info.get('mode', '?')} · {info.get('master', '?')}"},
    ],
    hide_index=True,
)

st.subheader("Your data")
st.markdown(
    f"Uploaded files and results are kept on this server in the workspace folder "
    f"`{workspace_dir()}` (set `SEGMENTATION_HOME` to move it): uploads under generated names in "
    "`uploads/`, each job's results in `results/<job id>/`, the job history in `jobs.sqlite3`. "
    "They stay until you delete the job on the Job Monitor page, which removes its results and "
    "its uploaded file."
)
