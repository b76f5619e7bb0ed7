"""Customer segmentation with Spark: everything the app does that is not UI (never imports streamlit)."""
