"""Customer Segmentation Dashboard: the router and the shared frame (page config, sidebar status)."""

import streamlit as st

import ui

st.set_page_config(page_title="Customer Segmentation", page_icon=":material/groups:", layout="wide")

pages = [
    st.Page(ui.HOME, title="Home", icon=":material/home:", default=True),
    st.Page(ui.UPLOAD, title="Upload", icon=":material/upload:"),
    st.Page(ui.MONITOR, title="Job Monitor", icon=":material/monitoring:"),
    st.Page(ui.RESULTS, title="Results", icon=":material/groups:"),
    st.Page(ui.VISUALIZATION, title="Visualization", icon=":material/insights:"),
    st.Page(ui.ABOUT, title="About", icon=":material/info:"),
]
page = st.navigation(pages)

with st.sidebar:
    ui.engine_status()
    ui.privacy_notice()
ui.clean_up_expired()

page.run()
